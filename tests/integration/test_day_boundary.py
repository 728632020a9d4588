"""The daily-loss limit counts from the venue's midnight in the session's time zone (issue 13
item 16): a loss spread over two venue days stays under the limit, the same loss in one day
trips the kill switch."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from simulator.clock import SimClock, next_day_start
from simulator.engine import Engine, Pipeline
from simulator.execution import SimVenue, ZeroLatency
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.market import MarketState
from simulator.models.rule import RuleRunner
from simulator.portfolio import Portfolio
from simulator.recording import RunRecorder
from simulator.risk import KillSwitch, RiskChain
from simulator.sources.recorded import ParquetSource
from simulator.types import NS_PER_SECOND, RejectReason, Side
from tests.factories import write

# New York midnight of 2024-01-02 is 05:00 UTC; two quotes before it, two after
MIDNIGHT_NY = int(datetime(2024, 1, 2, 5, tzinfo=UTC).timestamp()) * NS_PER_SECOND
TIMES = [MIDNIGHT_NY + s * NS_PER_SECOND for s in (-2, -1, 1, 2)]
#         bid    ask       equity after (long 1 bought at 100.00)
QUOTES = [(99.99, 100.00),  # -0.005
          (97.99, 98.00),   # -2.005: the New York day ends 2.005 down
          (95.99, 96.00),   # a new day, starting at -2.005; -4.005 after this quote
          (95.99, 96.00)]  # the sell: 2.0 down today, 4.005 since the start  # fmt: skip


class BuyThenSell:
    def __init__(self):
        self.n = 0

    def decide(self, outputs, view):
        self.n += 1
        if self.n == 1:
            return (MarketOrder(Side.BUY, 1.0),)
        if self.n == 4:
            return (MarketOrder(Side.SELL, 1.0),)
        return NO_INTENTS

    def reset(self):
        self.n = 0


def _run(tmp_path, time_zone):
    bid, ask = zip(*QUOTES, strict=True)
    ts = pa.array(TIMES, pa.int64())
    table = pa.table({"ts_event": ts, "ts_recv": ts, "bid_px": bid, "bid_sz": [5.0] * 4,
                      "ask_px": ask, "ask_sz": [5.0] * 4})  # fmt: skip
    path = write(table, tmp_path / f"{time_zone.replace('/', '_')}.parquet")
    recorder = RunRecorder(tmp_path / time_zone.replace("/", "_"))
    features = FeatureBuffer(FeatureConfig(levels=1, features=("l1_imbalance",)))
    risk = RiskChain([KillSwitch(daily_loss=3.0)])
    engine = Engine(
        clock=SimClock(),
        sources=[ParquetSource(path, kind="quotes")],
        market=MarketState(1),
        pipeline=Pipeline(features=features, runner=RuleRunner(0), policy=BuyThenSell(), risk=risk),
        venue=SimVenue(latency=ZeroLatency()),
        portfolio=Portfolio(),
        recorder=recorder,
        time_zone=time_zone,
    )
    state = engine.run()
    recorder.close()
    return state, recorder.tables


def test_the_days_loss_restarts_at_the_venues_midnight(tmp_path):
    state, tables = _run(tmp_path, "America/New_York")
    assert state.day_start_equity == pytest.approx(-2.005)
    assert tables.rejections == []
    assert [f.side for f in tables.fills] == [Side.BUY, Side.SELL]


def test_in_a_time_zone_where_it_is_one_day_the_same_loss_trips_the_kill_switch(tmp_path):
    state, tables = _run(tmp_path, "Asia/Tokyo")  # 14:00 in Tokyo: no boundary crossed
    assert state.day_start_equity == 0.0
    assert [r.reason for r in tables.rejections] == [RejectReason.KILL_SWITCH.name]
    assert [f.side for f in tables.fills] == [Side.BUY]


@pytest.mark.parametrize(
    ("time_zone", "expected"),
    [("UTC", "2024-01-03T00:00:00+00:00"), ("America/New_York", "2024-01-02T05:00:00+00:00")],
)
def test_next_day_start_is_the_next_local_midnight(time_zone, expected):
    ts = MIDNIGHT_NY - NS_PER_SECOND  # 04:59:59 UTC on 2024-01-02
    start = next_day_start(ts, time_zone)
    assert datetime.fromtimestamp(start // NS_PER_SECOND, UTC).isoformat() == expected
