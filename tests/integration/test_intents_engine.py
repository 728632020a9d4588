"""Order intents through the whole engine: a scripted policy posts a limit order and a
post-only one, sees its open orders' states, replaces, cancels too late and closes at market;
the run tables record order types, post-only, cancels and maker/taker fills. Hand-computed."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.clock import SimClock
from simulator.engine import Engine, Pipeline
from simulator.execution import FixedLatency, NoteKind, SimVenue
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.intents import (
    NO_INTENTS,
    Cancel,
    CancelReplace,
    LimitOrder,
    MarketOrder,
)
from simulator.market import MarketState
from simulator.models.rule import RuleRunner
from simulator.portfolio import Portfolio
from simulator.recording import RunRecorder
from simulator.risk import RiskChain
from simulator.sources.recorded import ParquetSource
from simulator.types import Side
from tests.factories import T0, write

ENTRY_NS = 500
#        bid     bid_sz  ask     ask_sz          what happens (orders reach the venue +500 ns)
ROWS = [(100.00, 5.0, 100.02, 5.0),  # 0: post limit buy 2 @ 100.01 and post-only buy @ 100.02
        (100.00, 5.0, 100.02, 5.0),  # 1: #1 rests; the post-only #2 would cross: rejected
        (100.00, 5.0, 100.01, 1.0),  # 2: ask down to 100.01: 1 of #1 fills as maker; replace
        (99.99, 5.0, 100.00, 5.0),   # 3: replaced (1 @ 100.00) at 2.5 µs, fills here; cancel
        (100.00, 5.0, 100.02, 5.0),  # 4: the cancel arrives after the fill; sell 2 at market
        (100.00, 5.0, 100.02, 5.0)]  # 5: nothing  # fmt: skip


class ScriptedPolicy:
    """Decision k returns SCRIPT[k]; every view of its open orders is kept."""

    def __init__(self):
        self.seen: list[tuple[float, list[tuple[int, str]]]] = []
        self.script = {
            0: (LimitOrder(Side.BUY, 2.0, 100.01), LimitOrder(Side.BUY, 1.0, 100.02, True)),
            2: (CancelReplace(1, 100.00, 1.0),),
            3: (Cancel(1),),
            4: (MarketOrder(Side.SELL, 2.0),),
        }

    def decide(self, outputs, view):
        opened = [(o.order_id, o.status.name) for o in view.open_orders]
        self.seen.append((view.position, opened))
        return self.script.get(len(self.seen) - 1, NO_INTENTS)

    def reset(self):
        self.seen.clear()


def test_limit_post_only_replace_cancel_and_market_intents_run_end_to_end(tmp_path):
    ts = pa.array([T0 + k * 1_000 for k in range(len(ROWS))], pa.int64())
    columns = list(zip(*ROWS, strict=True))
    names = ("bid_px", "bid_sz", "ask_px", "ask_sz")
    table = pa.table({"ts_event": ts, "ts_recv": ts, **dict(zip(names, columns, strict=True))})
    path = write(table, tmp_path / "quotes.parquet")
    policy = ScriptedPolicy()
    venue = SimVenue(latency=FixedLatency(ENTRY_NS, 0), taker_fee_bps=1.0)
    portfolio = Portfolio()
    recorder = RunRecorder(tmp_path / "run")
    features = FeatureBuffer(FeatureConfig(levels=1, features=("l1_imbalance",)))
    engine = Engine(
        clock=SimClock(),
        sources=[ParquetSource(path, kind="quotes")],
        market=MarketState(1),
        pipeline=Pipeline(
            features=features, runner=RuleRunner(0), policy=policy, risk=RiskChain([])
        ),
        venue=venue,
        portfolio=portfolio,
        recorder=recorder,
    )
    engine.run()
    recorder.close()

    assert policy.seen == [
        (0.0, []),
        (0.0, [(1, "RESTING")]),  # #2 was refused on arrival
        (1.0, [(1, "RESTING")]),  # 1 of 2 filled here (step 4), settled before the decision
        (2.0, []),  # the replacement filled before this decision (step 4)
        (2.0, []),
        (0.0, []),  # the sell filled at 4.5 µs, on arrival; it settled before this decision
    ]
    orders = pq.read_table(tmp_path / "run" / "orders.parquet").to_pylist()
    assert [(o["order_id"], o["order_type"], o["limit_px"], o["post_only"]) for o in orders] == [
        (1, 1, 100.01, False),
        (2, 1, 100.02, True),
        (3, 0, None, False),
    ]
    fills = pq.read_table(tmp_path / "run" / "fills.parquet").to_pylist()
    shown = [(f["order_id"], f["side"], f["px"], f["qty"], f["liquidity"], f["ts_event"] - T0)
             for f in fills]  # fmt: skip
    assert shown == [
        (1, 1, 100.01, 1.0, "maker", 2_000),
        (1, 1, 100.00, 1.0, "maker", 3_000),
        (3, -1, 100.00, 2.0, "taker", 4_500),
    ]
    cancels = pq.read_table(tmp_path / "run" / "cancels.parquet").to_pylist()
    sent = [(c["order_id"], c["ts_decision"] - T0, c["new_px"], c["new_qty"]) for c in cancels]
    assert sent == [
        (1, 2_000, 100.00, 1.0),
        (1, 3_000, None, None),
    ]
    assert [(n.order_id, n.kind, n.ts - T0) for n in venue.notes] == [
        (2, NoteKind.POST_ONLY_REJECTED, 500),
        (1, NoteKind.CANCEL_TOO_LATE, 3_500),
    ]
    assert portfolio.position == 0.0
    assert math.isclose(portfolio.realized_pnl, 2 * 100.00 - 100.01 - 100.00, abs_tol=1e-9)
    assert math.isclose(portfolio.fees, 200.0 * 1.0 / 1e4)
