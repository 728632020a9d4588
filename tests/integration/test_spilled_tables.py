"""The rare tables (orders, fills, rejections, cancels) spilled to the run directory while a
run goes on read back as if they had stayed in memory: the same Parquet tables, summary counts
and digest, across many spill boundaries, and nothing left of the spill."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.clock import SimClock
from simulator.engine import Engine, Pipeline
from simulator.execution import FixedLatency, SimVenue
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.intents import NO_INTENTS, Cancel, LimitOrder, MarketOrder
from simulator.market import MarketState
from simulator.models.rule import RuleRunner
from simulator.portfolio import Portfolio
from simulator.recording import SPILL_DIR, Rejection, RunRecorder, RunTables
from simulator.risk import MaxOrderSize, RiskChain
from simulator.runtime import run_summary
from simulator.sources.recorded import ParquetSource
from simulator.types import Side
from tests.factories import T0, write

EVENTS = 3_000
TABLES = ("orders", "fills", "risk_rejections", "cancels")


class Churn:
    """Every decision does something: buys and sells at market, rests a far limit buy and
    cancels it, and every 7th asks for too much (rejected by MaxOrderSize)."""

    def __init__(self) -> None:
        self.n = 0

    def decide(self, outputs, view):
        self.n += 1
        if self.n % 7 == 0:
            return (MarketOrder(Side.BUY, 10.0),)
        step = self.n % 4
        if step == 1:
            return (MarketOrder(Side.BUY, 1.0),)
        if step == 2:
            return (LimitOrder(Side.BUY, 1.0, 90.0),)
        if step == 3:
            return tuple(Cancel(o.order_id) for o in view.open_orders) or NO_INTENTS
        return (MarketOrder(Side.SELL, 1.0),)

    def reset(self) -> None:
        self.n = 0


def _quotes(tmp_path):
    i = np.arange(EVENTS)
    ts = pa.array(T0 + i * 1_000, pa.int64())
    bid = 100.0 + (i % 13) * 0.01
    table = pa.table({"ts_event": ts, "ts_recv": ts, "bid_px": bid, "bid_sz": np.full(EVENTS, 5.0),
                      "ask_px": bid + 0.02, "ask_sz": np.full(EVENTS, 5.0)})  # fmt: skip
    return write(table, tmp_path / "quotes.parquet")


def _run(path, out_dir, **recorder_options):
    recorder = RunRecorder(out_dir, chunk_rows=256, **recorder_options)
    portfolio = Portfolio()
    features = FeatureBuffer(FeatureConfig(levels=1, features=("l1_imbalance",)))
    engine = Engine(
        clock=SimClock(),
        sources=[ParquetSource(path, kind="quotes")],
        market=MarketState(1),
        pipeline=Pipeline(
            features=features,
            runner=RuleRunner(0),
            policy=Churn(),
            risk=RiskChain([MaxOrderSize(5.0)]),
        ),
        venue=SimVenue(latency=FixedLatency(500, 0), taker_fee_bps=1.0),
        portfolio=portfolio,
        recorder=recorder,
    )
    state = engine.run()
    digest = recorder.close()
    return recorder, run_summary(state, recorder, portfolio, digest)


@pytest.mark.parametrize(("spill_rows", "held"), [(50, 0), (300, 282)])
def test_spilled_tables_read_back_as_the_in_memory_ones_with_the_same_digest(
    tmp_path, spill_rows, held
):
    path = _quotes(tmp_path)
    kept, kept_summary = _run(path, tmp_path / "kept", spill_rows=10**9)
    spilled, spilled_summary = _run(path, tmp_path / "spilled", spill_rows=spill_rows)

    assert kept.tables.spilled == {"orders": 0, "fills": 0, "rejections": 0, "cancels": 0}
    # spilled after 256-event chunks: many boundaries in each table; 300: a rest held at the end
    assert spilled.tables.spilled["orders"] > 1_500
    assert spilled.tables.spilled["rejections"] > 300
    assert spilled.tables.spilled["cancels"] > 500
    assert len(spilled.tables.orders) == held
    assert spilled_summary == kept_summary
    assert kept_summary["n_orders"] > 1_800
    assert kept_summary["n_fills"] > 100
    assert kept_summary["rejections_by_reason"] == {"MAX_ORDER_SIZE": EVENTS // 7}
    for name in TABLES:
        expected = pq.read_table(tmp_path / "kept" / f"{name}.parquet")
        got = pq.read_table(tmp_path / "spilled" / f"{name}.parquet")
        assert got.num_rows > 100, name
        assert got.schema == expected.schema, name
        assert got.equals(expected), name
    assert not (tmp_path / "spilled" / SPILL_DIR).exists()


def test_run_tables_count_spilled_and_held_rows_together():
    def rejection(reason: str) -> Rejection:
        return Rejection(event_index=0, ts=T0, side=1, qty=1.0, reason=reason, reason_code=1)

    tables = RunTables(rejections=[rejection("B"), rejection("A"), rejection("B")])
    assert not tables.holds(4)
    assert tables.holds(3)
    taken = tables.take()
    assert [r.reason for r in taken.rejections] == ["B", "A", "B"]
    assert tables.rejections == []
    assert tables.n_rejections == 3
    tables.rejections.append(rejection("A"))
    tables.rejections.append(rejection("C"))
    tables.rejections.append(rejection("A"))
    assert tables.n_rejections == 6
    assert tables.rejection_counts() == {"A": 3, "B": 2, "C": 1}  # most first, ties by name
