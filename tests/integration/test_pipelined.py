"""The simulated-time scheduler part, one server versus pipelined stages, hand-computed.

Quotes arrive every 10 µs; fixed service times: features 10, inference 20, decision 5 µs
(risk and order 0). The policy sends a market order on the first and the fourth event.

One server (the whole pipeline busy 35 µs per event):
  event  arrives  starts  done   queue
  0       0        0       35     0
  1      10       35       70    25
  2      20       70      105    50
  3      30      105      140    75     -> orders dated 35 and 140 µs
Pipelined (features | inference | decision, each its own server):
  event  features   inference        decision   queue (waits between stages)
  0       0-10       10-30            30-35      0
  1      10-20       30-50 (waits 10) 50-55     10
  2      20-30       50-70 (waits 20) 70-75     20
  3      30-40       70-90 (waits 30) 90-95     30     -> orders dated 35 and 95 µs
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.clock import SimClock
from simulator.engine import Engine, Pipeline
from simulator.engine_live import RecordedStamp
from simulator.engine_timed import SimulatedTime, TimeModel
from simulator.execution import SimVenue, ZeroLatency
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.market import MarketState
from simulator.models.rule import RuleRunner
from simulator.portfolio import Portfolio
from simulator.recording import RunRecorder
from simulator.risk import RiskChain
from simulator.sources.recorded import ParquetSource
from simulator.timing import parse_service_model
from simulator.types import Side
from tests.factories import T0, write

US = 1_000
SERVICE = "fixed:features=10,inference=20,decision=5,risk=0,order=0"


class OrdersOnFirstAndFourth:
    def __init__(self):
        self.n = 0

    def decide(self, outputs, view):
        self.n += 1
        return (MarketOrder(Side.BUY, 1.0),) if self.n in (1, 4) else NO_INTENTS

    def reset(self):
        self.n = 0


def _run(tmp_path, pipelined: bool, stamp=None):
    n = 4
    ts = pa.array([T0 + k * 10 * US for k in range(n)], pa.int64())
    table = pa.table({"ts_event": ts, "ts_recv": ts, "bid_px": [100.0] * n, "bid_sz": [5.0] * n,
                      "ask_px": [100.01] * n, "ask_sz": [5.0] * n})  # fmt: skip
    name = "pipelined" if pipelined else "server"
    path = write(table, tmp_path / f"{name}.parquet")
    model = TimeModel(service=parse_service_model(SERVICE), pipelined=pipelined)
    features = FeatureBuffer(FeatureConfig(levels=1, features=("l1_imbalance",)))
    engine = Engine(
        clock=SimClock(),
        sources=[ParquetSource(path, kind="quotes")],
        market=MarketState(1),
        pipeline=Pipeline(
            features=features,
            runner=RuleRunner(0),
            policy=OrdersOnFirstAndFourth(),
            risk=RiskChain([]),
        ),
        venue=SimVenue(latency=ZeroLatency()),
        portfolio=Portfolio(),
        recorder=RunRecorder(tmp_path / name),
        scheduler=SimulatedTime(model),
        stamp=stamp,
    )
    engine.run()
    engine.recorder.close()
    decisions = pq.read_table(tmp_path / name / "decisions.parquet")
    orders = pq.read_table(tmp_path / name / "orders.parquet")
    queue_us = [q // US for q in decisions.column("queue_ns").to_pylist()]
    dated_us = [(t - T0) // US for t in orders.column("ts_decision").to_pylist()]
    return queue_us, dated_us


@pytest.mark.parametrize(
    ("pipelined", "queue_us", "dated_us"),
    [(False, [0, 25, 50, 75], [35, 140]), (True, [0, 10, 20, 30], [35, 95])],
    ids=["one-server", "pipelined"],
)
def test_stage_timing_is_as_hand_computed(tmp_path, pipelined, queue_us, dated_us):
    assert _run(tmp_path, pipelined) == (queue_us, dated_us)


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-server", "pipelined"])
def test_recorded_decision_times_combine_with_simulated_time(tmp_path, pipelined):
    """The two parts compose: the scheduler still queues the events as above, the stamp
    dates the orders (at the times recorded for events 0 and 3)."""
    recorded = {0: T0 + 7 * US, 3: T0 + 200 * US}
    queue_us, dated_us = _run(tmp_path, pipelined, RecordedStamp(recorded))
    assert queue_us == ([0, 10, 20, 30] if pipelined else [0, 25, 50, 75])
    assert dated_us == [7, 200]
