"""Issue 11 §4: limit prices go to the venue on the instrument's tick, never more aggressive
than the policy asked (a buy's rounded down, a sell's up), replaces too; a limit price that is
not a finite number > 0 is rejected by name (BAD_PRICE). Through the whole engine and through a
replay of the bundled Binance session with a plug-in policy."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.clock import SimClock
from simulator.config import load_strategy
from simulator.engine import Engine, Pipeline
from simulator.execution import FixedLatency, SimVenue
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.instruments import Instrument
from simulator.intents import NO_INTENTS, CancelReplace, LimitOrder
from simulator.market import MarketState
from simulator.models.rule import RuleRunner
from simulator.portfolio import Portfolio
from simulator.recording import RunRecorder
from simulator.risk import RiskChain
from simulator.runtime import replay
from simulator.session import resolve_session
from simulator.sources.recorded import ParquetSource
from simulator.types import RejectReason, Side
from tests.conftest import BUNDLED_DATA
from tests.factories import T0, write

CENTS = Instrument("X", tick=0.01, lot=1.0, min_notional=0.0)
ROWS = [(100.00, 5.0, 100.05, 5.0)] * 4  # a wide, quiet market: nothing fills


class Script:
    """Decision k returns SCRIPT[k]."""

    def __init__(self) -> None:
        self.n = 0
        self.script = {
            0: (
                LimitOrder(Side.BUY, 1.0, 100.017),  # -> 100.01 (down: not more aggressive)
                LimitOrder(Side.SELL, 1.0, 100.043),  # -> 100.05 (up)
                LimitOrder(Side.BUY, 1.0, 100.02),  # on the tick: unchanged
                LimitOrder(Side.BUY, 1.0, math.nan),  # BAD_PRICE x 5
                LimitOrder(Side.SELL, 1.0, math.inf),
                LimitOrder(Side.BUY, 1.0, 0.0),
                LimitOrder(Side.SELL, 1.0, -100.0),
                LimitOrder(Side.BUY, 1.0, 0.004),  # rounds down to 0
            ),
            2: (
                CancelReplace(1, 100.029, 1.0),  # a buy: -> 100.02
                CancelReplace(2, 100.031, 1.0),  # a sell: -> 100.04
                CancelReplace(3, math.nan, 1.0),  # BAD_PRICE: not sent, the order stays
            ),
        }

    def decide(self, outputs: object, view: object) -> tuple[object, ...]:
        self.n += 1
        return self.script.get(self.n - 1, NO_INTENTS)

    def reset(self) -> None:
        self.n = 0


def test_limit_and_replace_prices_are_put_on_the_tick_and_bad_ones_rejected_by_name(tmp_path):
    ts = pa.array([T0 + k * 1_000 for k in range(len(ROWS))], pa.int64())
    names = ("bid_px", "bid_sz", "ask_px", "ask_sz")
    columns = dict(zip(names, zip(*ROWS, strict=True), strict=True))
    path = write(pa.table({"ts_event": ts, "ts_recv": ts, **columns}), tmp_path / "q.parquet")
    recorder = RunRecorder(tmp_path / "run")
    venue = SimVenue(latency=FixedLatency(500, 0))
    features = FeatureBuffer(FeatureConfig(levels=1, features=("l1_imbalance",)))
    pipeline = Pipeline(
        features=features,
        runner=RuleRunner(0),
        policy=Script(),  # type: ignore[arg-type]
        risk=RiskChain([]),
        instrument=CENTS,
    )
    Engine(
        clock=SimClock(),
        sources=[ParquetSource(path, kind="quotes")],
        market=MarketState(1),
        pipeline=pipeline,
        venue=venue,
        portfolio=Portfolio(),
        recorder=recorder,
    ).run()
    recorder.close()

    run = tmp_path / "run"
    orders = pq.read_table(run / "orders.parquet").to_pylist()
    assert [(o["order_id"], o["side"], o["limit_px"]) for o in orders] == [
        (1, 1, 100.01),
        (2, -1, 100.05),
        (3, 1, 100.02),
    ]
    cancels = pq.read_table(run / "cancels.parquet").to_pylist()
    assert [(c["order_id"], c["new_px"]) for c in cancels] == [(1, 100.02), (2, 100.04)]
    rejections = pq.read_table(run / "risk_rejections.parquet").to_pylist()
    assert [(r["side"], r["reason"], r["reason_code"]) for r in rejections] == [
        *[(side, "BAD_PRICE", RejectReason.BAD_PRICE) for side in (1, -1, 1, -1, 1)],
        (1, "BAD_PRICE", RejectReason.BAD_PRICE),  # the replace of order 3
    ]
    assert {o.order_id: o.price for o in venue.open_order_list()} == {
        1: 100.02,
        2: 100.04,
        3: 100.02,
    }


POLICY = '''
from simulator.intents import NO_INTENTS, LimitOrder
from simulator.types import Side


class Inside:
    """Post one buy 0.3 ticks under mid while flat with nothing open, one sell 0.3 ticks
    over mid while long: prices between the ticks."""

    def decide(self, outputs, view):
        if view.order_in_flight or view.open_orders or not view.mid > 0.0:
            return NO_INTENTS
        if view.position <= 0.0:
            return (LimitOrder(Side.BUY, 0.001, view.mid - 0.003),)
        return (LimitOrder(Side.SELL, view.position, view.mid + 0.003),)

    def reset(self):
        pass
'''


def test_a_replay_puts_a_plugin_policys_limit_prices_on_the_sessions_tick(tmp_path: Path):
    folder = tmp_path / "inside"
    folder.mkdir()
    (folder / "policy.py").write_text(POLICY)
    (folder / "strategy.toml").write_text(
        '[features]\nnames = ["l1_imbalance"]\n[breaker]\nenabled = false\n'
        '[policy]\nclass = "policy.py:Inside"\n[venue]\ndepth = "l1"\n'
    )
    session = resolve_session("binance/BTCUSDT/2024-08-08", BUNDLED_DATA)
    replay(session, load_strategy(str(folder)), out_dir=tmp_path / "run")
    orders = pq.read_table(tmp_path / "run" / "orders.parquet").to_pylist()
    assert len(orders) >= 10
    # each fill settles before the next decision: buy, sell, buy, ... (no second buy on a fill)
    sides = [o["side"] for o in orders]
    assert all(a != b for a, b in pairwise(sides)), sides
    cents = [o["limit_px"] * 100 for o in orders]
    assert all(abs(c - round(c)) < 1e-6 for c in cents), cents[:10]  # 0.01, Binance's tick
