"""`ticktape stress` on the command line (issue 13 items 13-15, 21): the same PnL and bad-row
policy as replay, cpu contention under a calibrated model, `--json`, the baseline report path."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from tests.factories import quotes, with_value, write


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """5,000 quotes (about 5 s): enough for obi_rule to trade and dirty_feed to inject."""
    from simulator.sources.synthetic import write_synthetic_quotes

    root = tmp_path_factory.mktemp("stress-cli")
    return write_synthetic_quotes(root / "quotes.parquet", 5_000)


def _stress(session, out, *extra):
    return _invoke("stress", str(session), "--strategy", "obi_rule", "--workers", "1",
                   "--out", str(out), *extra)  # fmt: skip


def test_stress_json_is_one_object_and_its_pnl_is_the_replays_net_pnl(session, tmp_path):
    result = _stress(session, tmp_path / "s", "--scenario", "dirty_feed", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    baseline, dirty = found["summary"]
    assert [baseline["scenario"], dirty["scenario"]] == ["calm", "dirty feed"]
    assert found["digest"] == baseline["digest"]
    paths = found["paths"]
    assert paths["baseline_report"] == str(tmp_path / "s" / "calm" / "report.html")
    assert paths["comparison"] == str(tmp_path / "s" / "comparison.parquet")
    manifest = json.loads((tmp_path / "s" / "calm" / "manifest.json").read_text())
    summary = manifest["summary"]
    assert baseline["pnl"] == summary["net_pnl"]  # one PnL: after fees, as replay prints it
    assert summary["net_pnl"] == pytest.approx(summary["final_equity"], abs=1e-9)
    assert summary["net_pnl"] == pytest.approx(
        summary["realized_pnl"] + summary["unrealized_pnl"] - summary["fees"], abs=1e-12
    )
    assert baseline["fees"] == summary["fees"]
    assert baseline["realized_pnl"] == summary["realized_pnl"]

    replayed = _invoke("replay", str(session), "--strategy", "obi_rule", "--out",
                       str(tmp_path / "r"), "--no-report", "--json")  # fmt: skip
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output)["summary"]["net_pnl"] == summary["net_pnl"]


def test_stress_console_prints_the_baseline_report_and_what_was_dropped(session, tmp_path):
    out = tmp_path / "s"
    result = _stress(session, out, "--scenario", "dirty_feed")
    assert result.exit_code == 0, result.output
    assert f"baseline report (with the comparison) {out / 'calm' / 'report.html'}" in result.output
    injected = json.loads((out / "dirty_feed" / "manifest.json").read_text())["summary"]["injected"]
    dropped = injected["quotes: checks.dropped"]
    assert dropped > 0
    assert f"dirty feed: bad rows dropped by the checks (quotes {dropped:,})" in result.output


def test_stress_refuses_a_bad_row_in_the_recording_as_replay_does(tmp_path):
    path = write(with_value(quotes(200), "bid_px", 120, -1.0), tmp_path / "q.parquet")
    replayed = _invoke("replay", str(path), "--strategy", "obi_rule", "--out", str(tmp_path / "r"))
    assert replayed.exit_code == 1
    out = tmp_path / "s"
    stressed = _stress(path, out, "--scenario", "dirty_feed")
    assert stressed.exit_code == 1
    line = stressed.output.strip()
    assert line.startswith(f"DataError: {path} row 120: ")
    assert line == replayed.output.strip()
    assert not out.exists()


def test_cpu_contention_is_not_run_under_a_calibrated_model_and_runs_repeat(session, tmp_path):
    """`--latency calibrated:FILE` keeps its model: cpu contention (which needs measured) is
    listed as not run, and every run that does run gives the same digest twice."""
    measured = tmp_path / "measured"
    args = ("replay", str(session), "--strategy", "obi_rule", "--latency", "measured")
    assert _invoke(*args, "--out", str(measured), "--no-report").exit_code == 0
    model = tmp_path / "cal.parquet"
    assert _invoke("calibrate", str(measured), "-o", str(model)).exit_code == 0
    runs = []
    for name in ("a", "b"):
        result = _stress(session, tmp_path / name, "--scenario", "cpu_contention", "--no-report",
                         "--latency", f"calibrated:{model}", "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.output)["summary"])
    for rows in runs:
        calm, contention = rows
        assert calm["status"] == "ok"
        assert calm["latency_model"] == f"calibrated:{model}"
        assert contention["status"] == (
            f"not run: cpu_contention needs the measured model, not calibrated:{model}"
        )
    assert runs[0][0]["digest"] == runs[1][0]["digest"]


def test_stress_on_a_terminal_shows_a_progress_bar_with_an_eta(session, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=screen, force_terminal=True, width=120))
    result = _stress(session, tmp_path / "s", "--scenario", "dirty_feed", "--no-report")
    assert result.exit_code == 0, result.output
    assert "stress: baseline and scenarios" in screen.getvalue()
    assert "ETA" in screen.getvalue()


def test_a_scenarios_stage_times_under_a_latency_option_are_listed_not_dropped(session, tmp_path):
    slow = tmp_path / "slow.toml"
    slow.write_text(
        '[scenario]\nname = "slow stages"\nseed = 3\n[latency]\nstage_us = {inference = 50}\n'
    )
    result = _stress(session, tmp_path / "s", "--scenario", str(slow), "--no-report",
                     "--latency", "fixed:inference=5", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    calm, stages = json.loads(result.output)["summary"]
    assert calm["latency_model"] == "fixed:inference=5"
    assert stages["status"] == "not run: its stage_us needs its own model; --latency names another"
    without = _stress(session, tmp_path / "t", "--scenario", str(slow), "--no-report", "--json")
    assert json.loads(without.output)["summary"][1]["latency_model"] == "fixed:inference=50.0"
