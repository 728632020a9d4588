"""The replay engine end to end: hand-computed scripted sessions, an independent vectorised
check of obi_rule on the bundled GOOG day, and determinism across runs and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA, REPO
from tests.factories import T0, write

GOOG = "nasdaq/GOOG/2012-06-21"


def _quotes(rows):
    """A quote table from (bid_px, bid_sz, ask_px, ask_sz) rows, 1 µs apart."""
    ts = pa.array([T0 + i * 1_000 for i in range(len(rows))], pa.int64())
    columns = dict(
        zip(("bid_px", "bid_sz", "ask_px", "ask_sz"), zip(*rows, strict=True), strict=True)
    )
    return pa.table(
        {
            "ts_event": ts,
            "ts_recv": ts,
            **{k: pa.array(v, pa.float64()) for k, v in columns.items()},
        }
    )


def _run(tmp_path, session, strategy="obi_rule", sets=(), name="run"):
    config = apply_overrides(load_strategy(strategy), sets=sets)
    return replay(session, config, out_dir=tmp_path / name)


def test_scripted_session_fills_fees_and_pnl_by_hand(tmp_path):
    rows = [
        (100.00, 1, 100.02, 1),  # obi 0: nothing
        (100.00, 18, 100.02, 2),  # obi +0.8 > 0.6, flat: buy 2 at the ask 100.02
        (100.01, 5, 100.03, 5),  # obi 0: hold
        (100.05, 2, 100.07, 18),  # obi -0.8, long: sell 2 at the bid 100.05
        (100.05, 2, 100.07, 18),  # obi -0.8, flat: nothing (long-only)
    ]
    path = write(_quotes(rows), tmp_path / "scripted.parquet")
    sets = ("policy.size=2.0", "policy.lot=1.0", "venue.taker_fee_bps=10.0")
    result = _run(tmp_path, resolve_session(str(path), tmp_path), sets=sets)
    fills = pq.read_table(result.out_dir / "fills.parquet").to_pylist()
    assert [(f["side"], f["px"], f["qty"]) for f in fills] == [(1, 100.02, 2.0), (-1, 100.05, 2.0)]
    fee_buy, fee_sell = 100.02 * 2 * 10 / 1e4, 100.05 * 2 * 10 / 1e4
    assert [f["fee"] for f in fills] == pytest.approx([fee_buy, fee_sell])
    summary = result.summary
    assert summary["realized_pnl"] == pytest.approx((100.05 - 100.02) * 2)
    assert summary["fees"] == pytest.approx(fee_buy + fee_sell)
    assert summary["final_position"] == 0.0
    assert summary["n_events"] == 5
    assert summary["n_orders"] == 2
    decisions = pq.read_table(result.out_dir / "decisions.parquet")
    assert decisions.column("position").to_pylist() == [0.0, 2.0, 2.0, 0.0, 0.0]
    assert decisions.column("order_id").to_pylist() == [-1, 1, -1, 2, -1]


def test_fixed_order_latency_fills_against_the_quote_at_arrival(tmp_path):
    rows = [
        (100.00, 9, 100.02, 1),  # buy decided here...
        (
            100.00,
            9,
            100.04,
            1,
        ),  # ...1 µs later the ask moved: with 1.5 µs latency it is not yet here
        (
            100.00,
            9,
            100.06,
            1,
        ),  # arrival at +1.5 µs: the venue sees the market as of this quote's predecessor
    ]
    path = write(_quotes(rows), tmp_path / "late.parquet")
    sets = ("venue.latency='fixed'", "venue.entry_us=1.5")
    result = _run(tmp_path, resolve_session(str(path), tmp_path), sets=sets)
    fills = pq.read_table(result.out_dir / "fills.parquet").to_pylist()
    assert [(f["px"], f["ts_event"]) for f in fills] == [(100.04, T0 + 1_500)]


def _obi_rule_reference(quotes: pa.Table, threshold: float, size: float):
    """obi_rule written independently: (row, side, price) fills, final cash and position."""
    columns = ("bid_px", "bid_sz", "ask_px", "ask_sz")
    rows = list(zip(*(quotes.column(c).to_pylist() for c in columns), strict=True))
    fills = _obi_rule_loop(rows, threshold, size)
    cash = sum(-side * px * size for _, side, px in fills)
    position = sum(side for _, side, _ in fills) * size
    return fills, cash, position


def test_obi_rule_on_goog_equals_an_independent_vectorised_computation(tmp_path):
    session = resolve_session(GOOG, BUNDLED_DATA)
    result = _run(tmp_path, session)
    quotes = pq.read_table(session.files["quotes"])
    expected, cash, position = _obi_rule_reference(quotes, 0.6, 1.0)
    fills = pq.read_table(result.out_dir / "fills.parquet")
    assert fills.num_rows == len(expected) > 1000
    assert fills.column("side").to_pylist() == [side for _, side, _ in expected]
    assert fills.column("px").to_pylist() == [px for _, _, px in expected]
    ts = quotes.column("ts_recv").to_pylist()
    assert fills.column("ts_event").to_pylist() == [ts[row] for row, _, _ in expected]
    last_mid = (quotes.column("bid_px")[-1].as_py() + quotes.column("ask_px")[-1].as_py()) / 2
    summary = result.summary
    assert summary["final_position"] == position
    assert summary["realized_pnl"] + summary["unrealized_pnl"] == pytest.approx(
        cash + position * last_mid
    )


def _integer_size_quotes(
    n: int, seed: int, unit: float = 1.0
) -> list[tuple[float, float, float, float]]:
    """Quotes with sizes in whole `unit`s, many of them at obi +-0.6 (80/20, 4/1, ...): with
    whole shares 0.6 in float64 (0.6000000238 in float32); with unit 0.1, 0.8/0.2 gives
    0.6000000000000001 in float64, one rounding step above, which 1 + obi rounds away."""
    rng = np.random.default_rng(seed)
    at_threshold = [(80, 20), (20, 80), (4, 1), (1, 4), (160, 40), (40, 160), (8, 2), (2, 8)]
    rows = []
    bid_ticks = 10_000
    for _ in range(n):
        bid_ticks += int(rng.integers(-1, 2))
        ask_ticks = bid_ticks + int(rng.integers(1, 4))
        if rng.random() < 0.4:
            bid_sz, ask_sz = at_threshold[int(rng.integers(len(at_threshold)))]
        else:
            bid_sz, ask_sz = (int(v) for v in rng.integers(1, 200, size=2))
        rows.append((bid_ticks / 100, bid_sz * unit, ask_ticks / 100, ask_sz * unit))
    return rows


def _obi_rule_loop(rows, threshold: float, size: float) -> list[tuple[int, int, float]]:
    """obi_rule as a user would write it in plain float64 Python: (event, side, price) fills.

    A market order takes the touch; what it took is gone until the quote shows that price with
    another size (the replayed book never shows our own impact), so an order may find nothing."""
    fills = []
    position = 0.0
    taken: dict[float, tuple[float, float]] = {}  # price (bids negated) -> (size seen, taken)
    for i, (bid, bid_sz, ask, ask_sz) in enumerate(rows):
        obi = (bid_sz - ask_sz) / (bid_sz + ask_sz)
        if obi > threshold and position == 0.0:
            side, px, key, shown = 1, ask, ask, ask_sz
        elif obi < -threshold and position > 0.0:
            side, px, key, shown = -1, bid, -bid, bid_sz
        else:
            continue
        seen, before = taken.get(key, (shown, 0.0))
        left = shown - (before if seen == shown else 0.0)
        if left < size:  # whole units: never more than the touch shows, so none left at all
            continue
        taken[key] = (shown, (before if seen == shown else 0.0) + size)
        fills.append((i, side, px))
        position = size if side > 0 else 0.0
    return fills


@pytest.mark.parametrize(("seed", "unit"), [(1, 1.0), (2, 1.0), (3, 0.1)])
def test_obi_rule_with_integer_sizes_fills_exactly_as_a_float64_loop(tmp_path, seed, unit):
    rows = _integer_size_quotes(3_000, seed, unit)
    path = write(_quotes(rows), tmp_path / "integer_sizes.parquet")
    sets = (f"policy.size={unit}", f"policy.lot={unit}")  # never more than the touch shows
    result = _run(tmp_path, resolve_session(str(path), tmp_path), sets=sets)
    expected = _obi_rule_loop(rows, 0.6, unit)
    fills = pq.read_table(result.out_dir / "fills.parquet").to_pylist()
    found = [((f["ts_event"] - T0) // 1_000, f["side"], f["px"]) for f in fills]
    assert found == expected
    near = sum(abs((b - a) / (b + a) - 0.6) < 1e-15 for _, b, _, a in rows)
    assert near > 500  # the threshold itself (or one rounding step off) is hit many times
    assert len(expected) > 100


def test_manifest_carries_summary_config_and_data_hashes(tmp_path):
    result = _run(tmp_path, resolve_session(GOOG, BUNDLED_DATA))
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    for key in (
        "n_events",
        "n_orders",
        "n_fills",
        "realized_pnl",
        "fees",
        "final_position",
        "max_drawdown",
        "digest",
    ):
        assert key in manifest["summary"]
    assert manifest["summary"]["n_events"] == 45_569
    assert manifest["digest"] == manifest["summary"]["digest"]
    assert manifest["config"]["policy"]["threshold"] == 0.6
    assert len(next(iter(manifest["data_files"].values()))) == 64
    for name in ("decisions", "orders", "fills", "equity", "risk_rejections", "latency_histograms"):
        assert (result.out_dir / f"{name}.parquet").exists()


def test_digest_is_identical_in_process_and_in_a_subprocess_with_another_hash_seed(tmp_path):
    session = resolve_session(GOOG, BUNDLED_DATA)
    first = _run(tmp_path, session, name="a").summary["digest"]
    second = _run(tmp_path, session, name="b").summary["digest"]
    assert first == second
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = tmp_path / "c"
    command = [sys.executable, "-m", "cli", "replay", GOOG, "--strategy", "obi_rule",
               "--out", str(out), "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True)
    third = json.loads((out / "manifest.json").read_text())["summary"]["digest"]
    assert third == first


def test_a_different_threshold_changes_the_digest(tmp_path):
    session = resolve_session(GOOG, BUNDLED_DATA)
    base = _run(tmp_path, session, name="a").summary["digest"]
    other = _run(tmp_path, session, sets=("policy.threshold=0.5",), name="b").summary["digest"]
    assert base != other


def test_failing_model_trips_the_breaker_to_the_rule_and_every_switch_is_recorded(tmp_path):
    signals = tmp_path / "signals.npy"
    np.save(signals, np.full(2_000, 0.5))  # serves 2,000 events, then raises for every later one
    sets = ("model.kind='precomputed'", f"model.path='{signals}'", "breaker.cooldown_ms=60000.0")
    session = resolve_session("nasdaq/AAPL/2012-06-21", BUNDLED_DATA)
    result = _run(tmp_path, session, strategy="obi_mlp", sets=sets)
    switches = pq.read_table(result.out_dir / "breaker_switches.parquet").to_pylist()
    assert switches[0]["state"] == "open"
    assert switches[0]["reason"].startswith("exception: ModelError")
    assert switches[0]["event_index"] >= 2_000
    assert {s["state"] for s in switches} == {"open", "half_open"}
    assert result.summary["breaker_trips"] == sum(s["state"] == "open" for s in switches) > 1
    decisions = pq.read_table(result.out_dir / "decisions.parquet")
    assert decisions.num_rows == result.summary["n_events"] == 118_497 + 34_990  # book + trades


def test_model_strategy_digest_is_identical_across_runs(tmp_path):
    session = resolve_session("nasdaq/AAPL/2012-06-21", BUNDLED_DATA)
    first = _run(tmp_path, session, strategy="obi_mlp", name="a").summary
    second = _run(tmp_path, session, strategy="obi_mlp", name="b").summary
    assert first["digest"] == second["digest"]
    assert first["n_orders"] == second["n_orders"] > 0


def test_timer_ticks_let_the_stale_data_check_reject_during_a_gap_and_recover(tmp_path):
    rows = [(100.00, 18, 100.02, 2)] * 2  # obi +0.8: obi_rule wants to buy...
    table = _quotes(rows)
    late = _quotes([(100.00, 18, 100.04, 2)])  # ...and after a 10 s outage still does
    late = late.set_column(1, "ts_recv", pa.array([T0 + 10_000_000_000], pa.int64()))
    late = late.set_column(0, "ts_event", pa.array([T0 + 10_000_000_000], pa.int64()))
    path = write(pa.concat_tables([table, late]), tmp_path / "gap.parquet")
    sets = ("strategy.timer_ms=1000.0", "risk.stale_after_ms=2000.0", "risk.max_position=0.5")
    result = _run(tmp_path, resolve_session(str(path), tmp_path), sets=sets)
    decisions = pq.read_table(result.out_dir / "decisions.parquet").to_pylist()
    seconds = [round((d["ts_recv"] - T0) / 1e9, 3) for d in decisions]
    reasons = [d["reject"] for d in decisions]
    kinds = [d["kind"] for d in decisions]
    assert kinds == [0, 3, 0] + [3] * 9 + [0, 3]  # quotes and ticks, quote first on a tie
    assert seconds == [0.0, 0.0, 0.0, *range(1, 10), 10.0, 10.0]
    max_position, stale = 2, 6  # RejectReason values
    # fresh data: only the position limit refuses; 3-9 s into the gap the data is stale
    assert reasons == [max_position] * 5 + [stale] * 7 + [max_position] * 2
    assert result.summary["n_rejections"] == 14
    assert result.summary["n_orders"] == 0
