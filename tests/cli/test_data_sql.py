"""`ticktape data sql`: the README's query on every call, read-only, a damaged catalog rebuilt."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from click.testing import CliRunner

from cli import main
from tests.conftest import BUNDLED_DATA

README_QUERY = "SELECT symbol, count(*), avg(ask_px - bid_px) FROM quotes GROUP BY symbol"


@pytest.fixture
def data_dir(tmp_path):
    target = tmp_path / "data"
    shutil.copytree(BUNDLED_DATA / "nasdaq", target / "nasdaq")
    return target


def sql(data_dir, query):
    return CliRunner().invoke(main, ["data", "sql", query, "--data-dir", str(data_dir)])


def sessions(data_dir):
    result = CliRunner().invoke(main, ["data", "ls", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return [s["session"] for s in json.loads(result.output)]


def test_readme_query_works_on_every_call(data_dir):
    for _ in range(3):  # the first call builds the catalog, the later ones reuse it
        result = sql(data_dir, README_QUERY)
        assert result.exit_code == 0, result.output
        assert "GOOG" in result.output
        assert "AAPL" in result.output
        assert "2 row(s)" in result.output


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("DROP TABLE sessions", "DROP"),
        ("INSERT INTO sessions SELECT * FROM sessions", "INSERT"),
        ("CREATE TABLE t (a INTEGER)", "CREATE"),
        ("COPY sessions TO '{out}'", "COPY"),
        ("ATTACH '{out}' AS other", "ATTACH"),
    ],
)
def test_statements_that_change_anything_are_refused(data_dir, tmp_path, statement, kind):
    out = tmp_path / "written.csv"
    sql(data_dir, README_QUERY)  # the catalog file exists and is current
    result = sql(data_dir, statement.format(out=out))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"DataError: data sql is read-only: {kind} statements are refused; "
        "use SELECT, WITH, DESCRIBE, SHOW or SUMMARIZE"
    ]
    assert not out.exists()
    assert sessions(data_dir) == ["nasdaq/AAPL/2012-06-21", "nasdaq/GOOG/2012-06-21"]


def test_a_statement_hidden_after_a_select_is_refused(data_dir):
    result = sql(data_dir, "SELECT 1; DROP TABLE sessions")
    assert result.exit_code == 1
    assert "one statement at a time; found 2" in result.output
    assert len(sessions(data_dir)) == 2


def test_a_syntax_error_is_one_line(data_dir):
    result = sql(data_dir, "SELEC 1")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("DataError: SQL query failed: Parser Error: syntax error at or")


def test_a_catalog_with_a_dropped_table_is_rebuilt(data_dir):
    sql(data_dir, README_QUERY)
    con = duckdb.connect(str(data_dir / "catalog.duckdb"))
    con.execute("DROP TABLE sessions")
    con.execute("DROP VIEW quotes")
    con.close()
    assert len(sessions(data_dir)) == 2
    result = sql(data_dir, README_QUERY)
    assert result.exit_code == 0, result.output


def test_a_damaged_catalog_file_is_rebuilt(data_dir):
    (data_dir / "catalog.duckdb").write_bytes(b"not a database" * 100)
    result = sql(data_dir, README_QUERY)
    assert result.exit_code == 0, result.output
    assert "2 row(s)" in result.output
    duckdb.connect(str(data_dir / "catalog.duckdb"), read_only=True).close()  # a real one again
