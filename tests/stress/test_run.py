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
    scenarios = [str(gap), "model_faults", "dirty_feed", "slow_network", "slow_model"]
    return run_stress(str(session), tmp_path, config, scenarios, tmp_path / out, workers=workers)


def test_stress_runs_are_reproducible_in_parallel_and_in_series(session, tmp_path):
    parallel = _stress(session, tmp_path, "a", workers=2).to_pylist()
    serial = _stress(session, tmp_path, "b", workers=1).to_pylist()
    assert [r["scenario"] for r in parallel] == [
        "calm", "short gap", "model faults", "dirty feed", "slow network", "slow model",
    ]  # fmt: skip
    assert [r["digest"] for r in parallel] == [r["digest"] for r in serial]
    assert len({r["digest"] for r in parallel}) == 6  # every scenario changed the run
    assert (tmp_path / "a" / "comparison.parquet").exists()
    assert pq.read_table(tmp_path / "a" / "comparison.parquet").num_rows == 6


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
    network = rows["slow network"]  # feed and order delays (no service time: nothing queues)
    assert network["status"] == "ok"
    assert network["latency_model"] == "zero"
    assert network["queue_p99_us"] == 0.0


def test_cpu_load_runs_only_with_the_measured_model():
    from simulator.stress.run import unsupported, with_scenario_latency
    from simulator.stress.scenario import load_scenario

    base = load_strategy("obi_rule")
    contention = load_scenario("cpu_contention")  # sets latency.model = "measured" itself
    assert unsupported(contention, with_scenario_latency(base, contention)) == []
    assert unsupported(contention, base) == ["cpu_contention needs the measured model, not zero"]


def test_a_scenarios_latency_lands_in_the_typed_settings():
    from simulator.stress.run import with_scenario_latency
    from simulator.stress.spec import LatencyOverrides, Scenario

    base = load_strategy("obi_rule")
    wanted = LatencyOverrides(stage_us=(("inference", 40.0), ("features", 5.0)), order_us=100,
                              feed_us=3, conflation="latest", queue_bound=8)  # fmt: skip
    scenario = Scenario(name="slow", latency=wanted)
    got = with_scenario_latency(base, scenario)
    assert got.latency.model == "fixed:features=5.0,inference=40.0"
    assert (got.latency.feed_us, got.latency.conflation, got.latency.queue_bound) == (
        3.0, "latest", 8)  # fmt: skip
    assert type(got.latency.feed_us) is float  # the field's type, as a TOML value would be
    assert (got.venue.latency, got.venue.entry_us) == ("fixed", 100.0)
    assert (got.policy, got.risk, got.strategy) == (base.policy, base.risk, base.strategy)
    kept = with_scenario_latency(apply_overrides(base, sets=["latency.model=measured"]),
                                 scenario, keep_model=True)  # fmt: skip
    assert kept.latency.model == "measured"
    assert kept.latency.queue_bound == 8


def test_a_feed_gap_makes_stale_data_reject_orders_until_data_returns(tmp_path):
    """A strategy that keeps trying to buy (its position limit refuses it) while the feed is
    cut 2-5 s in: timer ticks meet stale data inside the gap, fresh data before and after."""
    import pyarrow as pa

    from tests.factories import T0, write

    n = 100  # a quote every 100 ms for 10 s, all with obi +0.8
    ts = pa.array([T0 + i * 100_000_000 for i in range(n)], pa.int64())
    quotes = pa.table({"ts_event": ts, "ts_recv": ts, "bid_px": [100.0] * n, "bid_sz": [18.0] * n,
                       "ask_px": [100.02] * n, "ask_sz": [2.0] * n})  # fmt: skip
    path = write(quotes, tmp_path / "q.parquet")
    gap = tmp_path / "gap.toml"
    gap.write_text(GAP)
    sets = ("strategy.timer_ms=250.0", "risk.stale_after_ms=1000.0", "risk.max_position=0.5")
    config = apply_overrides(load_strategy("obi_rule"), sets=sets)
    run_stress(str(path), tmp_path, config, [str(gap)], tmp_path / "out", workers=1)
    rejected = pq.read_table(tmp_path / "out" / "short_gap" / "risk_rejections.parquet").to_pylist()
    stale = [(r["ts"] - T0) / 1e9 for r in rejected if r["reason"] == "STALE_DATA"]
    fresh = [(r["ts"] - T0) / 1e9 for r in rejected if r["reason"] == "MAX_POSITION"]
    assert stale  # during the outage, from 1 s after the last quote
    assert min(stale) > 2.9
    assert max(stale) < 5.0
    assert any(t < 2.0 for t in fresh)
    assert any(t >= 5.0 for t in fresh)  # and the stale rejections stop when data is back


def test_model_faults_trip_the_breaker_and_it_recovers(session, tmp_path):
    config = apply_overrides(load_strategy("obi_mlp"))
    run_stress(str(session), tmp_path, config, ["model_faults"], tmp_path / "out", workers=1)
    switches = pq.read_table(tmp_path / "out" / "model_faults" / "breaker_switches.parquet")
    states = switches.column("state").to_pylist()
    assert {"open", "half_open", "closed"} <= set(states)


def test_calibrated_stress_runs_are_bit_identical(session, tmp_path):
    from simulator.runtime import replay
    from simulator.session import resolve_session
    from simulator.timing import calibrate

    measured = apply_overrides(load_strategy("obi_mlp"), sets=('latency.model="measured"',))
    run = replay(resolve_session(str(session), tmp_path), measured, out_dir=tmp_path / "m")
    model = calibrate(run.out_dir, tmp_path / "cal.parquet")
    config = apply_overrides(
        load_strategy("obi_mlp"), sets=(f'latency.model="calibrated:{model}"',)
    )
    scenarios = ["model_faults", "slow_model", "dirty_feed"]
    first = run_stress(str(session), tmp_path, config, scenarios, tmp_path / "a", workers=2)
    second = run_stress(str(session), tmp_path, config, scenarios, tmp_path / "b", workers=1)
    assert first.column("digest").to_pylist() == second.column("digest").to_pylist()
    assert min(first.column("queue_p99_us").to_pylist()) > 0


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
