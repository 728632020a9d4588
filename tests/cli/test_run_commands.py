"""`ticktape replay` and `ticktape bench` through click: outputs, files and clear errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli import main
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


def _invoke(*args):
    return CliRunner().invoke(main, [*args, "--data-dir", str(BUNDLED_DATA)])


def test_replay_prints_summary_and_writes_the_run(tmp_path):
    out = tmp_path / "run"
    result = _invoke("replay", AAPL, "--strategy", "obi_rule", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"digest {manifest['digest']}" in result.output
    assert "obi_rule on nasdaq/AAPL/2012-06-21: 107,165 events" in result.output
    for stage in ("features", "inference", "decision", "risk", "order", "tick_to_trade"):
        assert stage in result.output


def test_replay_with_a_misspelt_setting_suggests_the_key(tmp_path):
    args = ("replay", AAPL, "--strategy", "obi_rule", "--set", "policy.treshold=0.3")
    result = _invoke(*args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert result.output.strip() == (
        "ConfigError: --set policy.treshold=0.3: unknown key 'policy.treshold'; "
        "did you mean 'policy.threshold'?"
    )


def test_replay_with_a_wrongly_typed_setting_names_the_type(tmp_path):
    args = ("replay", AAPL, "--strategy", "obi_rule", "--set", "policy.threshold=high")
    result = _invoke(*args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "'policy.threshold' must be float (like 0.6); found str 'high'" in result.output


def test_replay_of_an_unknown_strategy_lists_the_known_ones(tmp_path):
    result = _invoke("replay", AAPL, "--strategy", "obi_rul", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "unknown strategy 'obi_rul'; did you mean 'obi_rule'?" in result.output


def test_replay_accepts_a_plain_parquet_path(tmp_path):
    path = BUNDLED_DATA / "nasdaq" / "AAPL" / "2012-06-21" / "quotes.parquet"
    result = _invoke("replay", str(path), "--strategy", "obi_rule", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "107,165 events" in result.output


def test_bench_json_reports_each_case(tmp_path):
    path = BUNDLED_DATA / "nasdaq" / "AAPL" / "2012-06-21" / "quotes.parquet"
    result = _invoke("bench", "--data", str(path), "--strategy", "obi_rule", "--json")
    assert result.exit_code == 0, result.output
    cases = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [c["case"] for c in cases] == ["data", "features", "pipeline"]
    for case in cases:
        assert case["n_events"] == 107_165
        assert case["events_per_s"] > 0
        for key in ("strategy", "data", "load_s", "peak_rss_mb", "stages"):
            assert key in case
    assert cases[2]["stages"]["inference"]["count"] > 0


def test_a_model_needing_trades_on_a_quotes_only_file_is_a_clear_error(tmp_path):
    path = BUNDLED_DATA / "nasdaq" / "AAPL" / "2012-06-21" / "quotes.parquet"
    result = _invoke("replay", str(path), "--strategy", "obi_mlp", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "features include trade features" in result.output
    assert "has no trades (it has quotes)" in result.output


def test_replay_writes_the_report_unless_told_not_to(tmp_path):
    args = ("replay", AAPL, "--strategy", "obi_rule")
    with_report = _invoke(*args, "--out", str(tmp_path / "a"))
    assert with_report.exit_code == 0, with_report.output
    assert (tmp_path / "a" / "report.html").stat().st_size > 100_000
    without = _invoke(*args, "--out", str(tmp_path / "b"), "--no-report")
    assert without.exit_code == 0
    assert not (tmp_path / "b" / "report.html").exists()
    rewritten = CliRunner().invoke(
        main, ["report", str(tmp_path / "b"), "-o", str(tmp_path / "r.html")]
    )
    assert rewritten.exit_code == 0, rewritten.output
    assert f"report written to {tmp_path / 'r.html'} (" in rewritten.output


def test_report_of_an_empty_directory_names_what_is_missing(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "missing manifest.json" in result.output


def test_replay_prints_the_rejections_per_reason_name(tmp_path):
    out = tmp_path / "run"
    sets = ("--set", "risk.max_orders=1", "--set", "risk.rate_window_ms=600000.0")
    result = _invoke("replay", AAPL, "--strategy", "obi_rule", "--out", str(out), *sets)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    by_reason = summary["rejections_by_reason"]
    assert by_reason["ORDER_RATE"] == summary["n_rejections"] > 0
    assert f"rejected: ORDER_RATE {by_reason['ORDER_RATE']:,}" in result.output
    import pyarrow.parquet as pq

    reasons = pq.read_table(out / "risk_rejections.parquet").column("reason").to_pylist()
    assert set(reasons) == {"ORDER_RATE"}
