"""The pipeline as a server in simulated time: queueing, conflation and queue bounds checked
against hand-computed values; calibrated service times reproducible run after run."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import ConfigError
from simulator.runtime import replay
from simulator.session import resolve_session
from simulator.timing import calibrate, parse_service_model
from tests.conftest import BUNDLED_DATA
from tests.factories import T0, write

US = 1_000


def _session(tmp_path, rows, offsets_ns):
    """Quotes (bid_px, bid_sz, ask_px, ask_sz) at T0 + each offset."""
    ts = pa.array([T0 + o for o in offsets_ns], pa.int64())
    names = ("bid_px", "bid_sz", "ask_px", "ask_sz")
    columns = {
        n: pa.array(v, pa.float64()) for n, v in zip(names, zip(*rows, strict=True), strict=True)
    }
    path = write(pa.table({"ts_event": ts, "ts_recv": ts, **columns}), tmp_path / "q.parquet")
    return resolve_session(str(path), tmp_path)


def _run(tmp_path, session, *sets, name="run"):
    config = apply_overrides(load_strategy("obi_rule"), sets=sets)
    result = replay(session, config, out_dir=tmp_path / name)
    return result, pq.read_table(result.out_dir / "decisions.parquet").to_pylist()


FLAT = (100.00, 5, 100.02, 5)  # obi 0: no trade


def test_events_wait_while_the_pipeline_is_busy(tmp_path):
    session = _session(tmp_path, [FLAT] * 4, [0, 1 * US, 2 * US, 10 * US])
    result, rows = _run(tmp_path, session, 'latency.model="fixed:features=2"')
    # starts 0, 2, 4, 10 µs: waits 0, 1, 2, 0 µs
    assert [r["queue_ns"] for r in rows] == [0, 1 * US, 2 * US, 0]
    assert [r["skip"] for r in rows] == [0, 0, 0, 0]
    assert result.summary["n_skipped"] == result.summary["n_dropped"] == 0


def test_latest_conflation_skips_a_quote_whose_successor_already_arrived(tmp_path):
    session = _session(tmp_path, [FLAT] * 4, [0, 1 * US, 2 * US, 10 * US])
    sets = ('latency.model="fixed:features=2"', 'latency.conflation="latest"')
    result, rows = _run(tmp_path, session, *sets)
    # quote 1 would start at 2 µs, when quote 2 has arrived: skipped; quote 2 starts at once
    assert [r["skip"] for r in rows] == [0, 1, 0, 0]
    assert [r["queue_ns"] for r in rows] == [0, -1, 0, 0]
    assert result.summary["n_skipped"] == 1


def test_a_queue_bound_drops_events_that_find_it_full(tmp_path):
    session = _session(tmp_path, [FLAT] * 4, [0, 500, 1_000, 1_500])
    result, rows = _run(
        tmp_path, session, 'latency.model="fixed:features=2"', "latency.queue_bound=1"
    )
    # quote 1 waits (starts at 2 µs); quotes 2 and 3 find it waiting: dropped
    assert [r["skip"] for r in rows] == [0, 0, 2, 2]
    assert [r["queue_ns"] for r in rows] == [0, 1_500, -1, -1]
    assert result.summary["n_dropped"] == 2


def test_a_slower_pipeline_fills_against_the_market_at_its_decision_time(tmp_path):
    rows = [(100.00, 18, 100.02, 2), (100.00, 5, 100.04, 5), FLAT]  # buy signal, then ask moves
    session = _session(tmp_path, rows, [0, 1 * US, 5 * US])
    fast, _ = _run(tmp_path, session, name="fast")
    slow, _ = _run(tmp_path, session, 'latency.model="fixed:features=2"', name="slow")
    fills = {
        n: pq.read_table(r.out_dir / "fills.parquet").to_pylist()
        for n, r in (("fast", fast), ("slow", slow))
    }
    assert [(f["px"], f["ts_event"]) for f in fills["fast"]] == [(100.02, T0)]
    assert [(f["px"], f["ts_event"]) for f in fills["slow"]] == [(100.04, T0 + 2 * US)]


def test_calibrated_service_times_are_reproducible(tmp_path):
    session = resolve_session("nasdaq/AAPL/2012-06-21", BUNDLED_DATA)
    measured, _ = _run(tmp_path, session, 'latency.model="measured"', name="measured")
    model = calibrate(measured.out_dir, tmp_path / "calibration.parquet")
    sets = (f'latency.model="calibrated:{model}"',)
    first, rows = _run(tmp_path, session, *sets, name="a")
    second, _ = _run(tmp_path, session, *sets, name="b")
    assert first.summary["digest"] == second.summary["digest"]
    assert max(r["queue_ns"] for r in rows) > 0
    third, _ = _run(tmp_path, session, *sets, 'latency.conflation="latest"', name="c")
    assert third.summary["n_skipped"] > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fast", r"latency model 'fast' unknown"),
        ("fixed:feature=2", r"unknown stage\(s\) \['feature'\]"),
        ("fixed:features=two", r"'features=two' is not STAGE=MICROSECONDS"),
        ("calibrated:/no/such.parquet", r"calibration file /no/such.parquet not found"),
    ],
)
def test_bad_latency_models_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_service_model(spec)


@pytest.mark.parametrize(
    "kinds", ['["book", "trades"]', '["quotes", "book", "trades"]'], ids=["book", "quotes+book"]
)
def test_zero_service_time_replays_exactly_as_the_immediate_run(tmp_path, kinds):
    """The step order is written once: the simulated-time scheduler with nothing to wait for
    gives the immediate run's digest (with quotes and book together, a quote updates the top
    and leaves the book's depth to the venue in both)."""
    session = resolve_session("binance/BTCUSDT/2024-08-08", BUNDLED_DATA)
    sets = (f"strategy.kinds={kinds}", 'venue.depth="l2"')
    immediate, _ = _run(tmp_path, session, *sets, name="immediate")
    timed, rows = _run(tmp_path, session, *sets, 'latency.scheduler="pipelined"', name="timed")
    assert immediate.summary["n_fills"] > 0
    assert timed.summary["digest"] == immediate.summary["digest"]
    assert {r["queue_ns"] for r in rows} == {0}  # it ran in simulated time, never waiting
