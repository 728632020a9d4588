"""`ticktape stress`: seeded scenario runs side by side with the baseline, reproducibly."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import main
from simulator.config import apply_overrides, load_strategy
from simulator.sources.synthetic import write_synthetic_session
from simulator.stress.run import run_stress

GAP = """
[scenario]
name = "short gap"
seed = 1
[[transform]]
kind = "gap"
start_s = 2.0
duration_s = 3.0
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """20k generated quotes (about 20 s) plus trades: a session every scenario fits into."""
    return write_synthetic_session(tmp_path_factory.mktemp("syn") / "session", 20_000)


def _stress(session, tmp_path, out, workers):
    gap = tmp_path / "gap.toml"
    gap.write_text(GAP)
    config = apply_overrides(load_strategy("obi_mlp"), sets=("strategy.timer_ms=500.0",))
    scenarios = [str(gap), "model_faults", "dirty_feed", "slow_network"]
    return run_stress(str(session), tmp_path, config, scenarios, tmp_path / out, workers=workers)


def test_stress_runs_are_reproducible_in_parallel_and_in_series(session, tmp_path):
    parallel = _stress(session, tmp_path, "a", workers=2).to_pylist()
    serial = _stress(session, tmp_path, "b", workers=1).to_pylist()
    assert [r["scenario"] for r in parallel] == [
        "calm", "short gap", "model faults", "dirty feed", "slow network",
    ]  # fmt: skip
    assert [r["digest"] for r in parallel] == [r["digest"] for r in serial]
    assert len({r["digest"] for r in parallel[:4]}) == 4  # every scenario changed the run
    assert (tmp_path / "a" / "comparison.parquet").exists()
    assert pq.read_table(tmp_path / "a" / "comparison.parquet").num_rows == 5


def test_stress_rows_count_what_each_scenario_did(session, tmp_path):
    rows = {r["scenario"]: r for r in _stress(session, tmp_path, "c", workers=1).to_pylist()}
    calm, gap, faults, dirty = (
        rows[n] for n in ("calm", "short gap", "model faults", "dirty feed")
    )
    assert calm["pnl_vs_baseline"] == 0.0
    assert gap["n_events"] < calm["n_events"]
    assert json.loads(gap["injected"])["quotes: gap #1.removed"] > 0
    assert faults["breaker_trips"] > 0
    assert json.loads(faults["faults"])["model_exception.injected"] > 0
    injected = json.loads(dirty["injected"])
    caught = sum(v for k, v in injected.items() if k.endswith("checks.dropped"))
    assert caught > 0  # bad ticks were dropped by the contract checks, never traded on
    assert (
        dirty["n_events"]
        == calm["n_events"]
        + injected.get("quotes: duplicate #2.added", 0)
        + (injected.get("trades: duplicate #2.added", 0))
        - caught
    )
    assert rows["slow network"]["status"].startswith("not run: needs simulated-time latency")


def test_latency_spikes_are_not_run_without_the_time_model():
    from simulator.stress.run import unsupported
    from simulator.stress.scenario import load_scenario

    assert unsupported(load_scenario("slow_model")) == ["inference_latency"]
    assert unsupported(load_scenario("dirty_feed")) == []


def test_stress_cli_prints_the_comparison(session, tmp_path):
    out = tmp_path / "cli"
    args = ["stress", str(session), "--strategy", "obi_rule", "--scenario", "dirty_feed",
            "--workers", "1", "--out", str(out), "--data-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "stress comparison" in result.output
    assert "dirty feed" in result.output
    assert f"comparison written to {out / 'comparison.parquet'}" in result.output
    page = (out / "calm" / "report.html").read_text()  # the baseline's report compares them
    assert "Stress scenarios" in page
    assert "<summary>dirty feed (ok)</summary>" in page
    assert (out / "dirty_feed" / "report.html").exists()
