"""The `ticktape data` commands through click's runner: exit codes and whole output lines."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cli import main
from simulator.errors import DataError
from tests.conftest import BUNDLED_DATA
from tests.factories import quotes, with_value, write

BUNDLED_SESSIONS = [
    "binance/BTCUSDT/2024-08-08",
    "binance/ETHUSDT/2024-08-08",
    "nasdaq/AAPL/2012-06-21",
    "nasdaq/GOOG/2012-06-21",
]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def bundled_copy(tmp_path):
    """The bundled sessions copied aside, so tests never write into the repository."""
    target = tmp_path / "data"
    shutil.copytree(
        BUNDLED_DATA, target, ignore=shutil.ignore_patterns("catalog.duckdb*", "originals")
    )
    return target


def test_ls_json_lists_the_four_bundled_sessions(runner, bundled_copy):
    result = runner.invoke(main, ["data", "ls", "--json", "--data-dir", str(bundled_copy)])
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.output)
    assert [s["session"] for s in sessions] == BUNDLED_SESSIONS
    goog = sessions[3]
    assert goog["rows"] == {
        "book": 147_916,
        "quotes": 45_569,
        "trades": 11_678,
        "orders": 147_916,
    }
    assert goog["levels"] == 10
    assert goog["time_zone"] == "America/New_York"


def test_data_dir_comes_from_the_environment(runner, bundled_copy):
    result = runner.invoke(main, ["data", "ls", "--json"], env={"TICKTAPE_DATA": str(bundled_copy)})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 4


def test_ls_table_shows_each_session(runner, bundled_copy):
    result = runner.invoke(main, ["data", "ls", "--data-dir", str(bundled_copy)])
    assert result.exit_code == 0
    for name in BUNDLED_SESSIONS:
        assert name in result.output


def test_show_prints_statistics_and_first_rows(runner, bundled_copy):
    args = ["data", "show", "nasdaq/GOOG/2012-06-21", "--data-dir", str(bundled_copy)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "quotes: 45,569 rows, 2012-06-21 13:30:00.015" in result.output
    assert "(09:30:00 EDT" in result.output
    assert "mid range: 563.73 - 579.815" in result.output
    assert "levels: 10" in result.output


def test_check_bundled_session_passes(runner, bundled_copy):
    args = ["data", "check", "nasdaq/AAPL/2012-06-21", "--data-dir", str(bundled_copy)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "quotes" in result.output
    assert result.output.count(": OK") == 4  # quotes, trades, book, orders


def test_check_bad_file_lists_problems_and_exits_1(runner, tmp_path):
    bad = with_value(with_value(quotes(20), "bid_sz", 4, -1.0), "ts_recv", 9, 0)
    path = write(bad, tmp_path / "bad.parquet")
    result = runner.invoke(main, ["data", "check", str(path)])
    assert result.exit_code == 1
    assert "20 rows checked: 1 bad_size, 1 unsorted" in " ".join(result.output.split())
    assert "row 4: size is NaN, zero or negative" in result.output
    assert "row 9: ts_recv went backwards" in result.output


def test_check_with_repair_writes_a_clean_file(runner, tmp_path):
    bad = with_value(quotes(20), "ask_px", 4, 1.0)
    path = write(bad, tmp_path / "bad.parquet")
    out = tmp_path / "fixed.parquet"
    result = runner.invoke(
        main, ["data", "check", str(path), "--repair", "drop", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "quotes: repaired 1 rows dropped" in result.output
    again = runner.invoke(main, ["data", "check", str(out)])
    assert again.exit_code == 0
    assert "19 rows checked: OK" in again.output


def test_unknown_session_is_one_red_line_and_exit_1(runner, bundled_copy):
    args = ["data", "show", "nasdaq/MSFT/2012-06-21", "--data-dir", str(bundled_copy)]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("DataError: no session nasdaq/MSFT/2012-06-21 under")
    assert "Traceback" not in result.output


def test_debug_flag_lets_the_traceback_through(runner, tmp_path):
    path = tmp_path / "q.parquet"
    path.write_bytes(b"not parquet")
    result = runner.invoke(main, ["--debug", "data", "check", str(path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, DataError)


def test_corrupt_file_is_named_in_the_one_line(runner, tmp_path):
    path = tmp_path / "q.parquet"
    path.write_bytes(b"PAR1 garbage")
    result = runner.invoke(main, ["data", "check", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("DataError: ")
    assert "q.parquet: not a readable Parquet file" in result.output


def test_malformed_session_name_explains_the_form(runner, bundled_copy):
    result = runner.invoke(main, ["data", "show", "GOOG-2012", "--data-dir", str(bundled_copy)])
    assert result.exit_code == 1
    assert "expected venue/symbol/date, e.g. nasdaq/GOOG/2012-06-21" in result.output


def test_sql_over_the_catalog(runner, bundled_copy):
    query = "SELECT symbol, count(*) AS n FROM trades GROUP BY symbol ORDER BY symbol"
    result = runner.invoke(main, ["data", "sql", query, "--data-dir", str(bundled_copy)])
    assert result.exit_code == 0, result.output
    assert "11678" in result.output
    assert "34990" in result.output
