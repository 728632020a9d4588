"""The seams of the pipeline. The engine knows only these; runtime.py picks implementations, and
a user's own stage (loaded by reference from a strategy TOML) is checked against them.

Hot-path protocols pass plain floats, preallocated arrays and indices, never a new object per
event (STYLE B0). Layer L1: imports only L0/L1 modules (types, intents, market).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from simulator.instruments import Instrument
from simulator.intents import Intent, OpenOrder
from simulator.market import MarketState
from simulator.types import CancelRequest, Fill, OrderRequest, Side

FeatureVector: TypeAlias = npt.NDArray[np.float64]
"""The feature stage's preallocated float64 vector: decisions see float64; a model runner casts
it to its model's input dtype itself, into its own preallocated input (no allocation)."""
Outputs: TypeAlias = npt.NDArray[np.float64]
"""A model runner's preallocated output vector, rewritten in place on every prediction."""


class Clock(Protocol):
    def now(self) -> int: ...
    def advance_to(self, ts: int) -> None:
        """Move to `ts` (ns); raise InvariantViolation if `ts` is earlier than now()."""


class ColumnBatch(Protocol):
    """What a feature stage reads of a batch of book events (sources.EventBatch is one)."""

    kind: str
    columns: Mapping[str, memoryview]


class FeatureStage(Protocol):
    """Incremental features: O(1) updates, one preallocated vector."""

    names: tuple[str, ...]
    vector: FeatureVector

    @property
    def ready(self) -> bool:
        """Once True, stays True until reset() (the engine relies on it)."""

    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...
    def on_trade(self, ts_recv: int, px: float, sz: float, side: int) -> None: ...
    def on_book(self, ts_recv: int, levels: Any, row: int) -> None:  # noqa: ANN401
        """A book event: `levels` is the feature stage's own per-batch column bundle."""

    def book_columns(self, batch: Any) -> object:  # noqa: ANN401 - a ColumnBatch
        """Build the per-batch column bundle `on_book` takes (once per batch, cold)."""

    def compute(self) -> FeatureVector: ...
    def reset(self) -> None: ...


class UserFeature(Protocol):
    """A user's feature class, mixed with the built-ins by `simulator.features.user`
    (optional: on_trade, on_book, on_status, warmup_trades, batch).

    - `names`: the names of the values it writes, in order (listed in `features.names`).
    - `warmup`: mid updates (quote or book events) before its values are defined.
    - `on_quote(ts_recv, bid_px, bid_sz, ask_px, ask_sz)`: O(1), no allocation per call.
    - `on_trade(ts_recv, px, sz, side)`, `on_book(ts_recv, levels: BookColumns, row)`.
    - `on_status(ts_recv, code)`: a feed status event (types.StatusCode: disconnect, book
      reset, ...) of a live run or a live recording's replay.
    - `write(out, at)`: put its values into out[at], out[at + 1], ... (len(names) of them).
    - `reset()`: forget everything (a new session).
    - `batch(events) -> array (n_events, len(names))`: row i = the values after event i of a
      `session_events` table (the vectorised twin; `train` uses it when present).
    """

    @property
    def names(self) -> Sequence[str]: ...
    @property
    def warmup(self) -> int: ...
    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...
    def write(self, out: npt.NDArray[np.float64], at: int) -> None: ...
    def reset(self) -> None: ...


class ModelRunner(Protocol):
    name: str

    def warm_up(self) -> None: ...
    def predict(self, features: FeatureVector, event_index: int) -> Outputs:
        """The model's outputs for this feature vector, written into the runner's own
        preallocated float64 vector (the same array every call: read it, don't keep it).
        Output 0 of the shipped models is P(mid goes up over the model's horizon)."""

    def reset(self) -> None: ...


class StrategyView(Protocol):
    """What a policy may read when it decides: market, position, cash, equity, its open
    orders, time, the instrument. Read-only: the engine owns every value behind it."""

    @property
    def now(self) -> int:
        """Receive time (ns) of the event being decided on."""

    @property
    def position(self) -> float: ...
    @property
    def cash(self) -> float: ...
    @property
    def equity(self) -> float: ...
    @property
    def bid_px(self) -> float: ...
    @property
    def bid_sz(self) -> float: ...
    @property
    def ask_px(self) -> float: ...
    @property
    def ask_sz(self) -> float: ...
    @property
    def mid(self) -> float: ...
    @property
    def market(self) -> MarketState:
        """The live market object: L1 fields and `depth(side)` for L2 levels (read only)."""

    @property
    def order_in_flight(self) -> bool:
        """True while an order or cancel sent by the pipeline has not reached the venue."""

    @property
    def open_orders(self) -> Sequence[OpenOrder]:
        """Every open order with its state (a snapshot built on access: cold)."""

    @property
    def instrument(self) -> Instrument:
        """The traded symbol's tick, lot and minimum notional (from the venue live, kept in
        the recording for its replay): size in quote currency with
        `instrument.round_qty(notional / mid)`, whole lots as the built-in policies do."""


class Policy(Protocol):
    """The decision stage: model outputs + a read-only view -> order intents.

    Return `NO_INTENTS` (the shared empty tuple) to do nothing. A policy may expose a float
    `target` (the position it aims at after this decision); the engine records it in the
    decisions table when present (NaN otherwise).
    """

    def decide(self, outputs: Outputs, view: StrategyView) -> Sequence[Intent]: ...
    def reset(self) -> None: ...


class RiskView(Protocol):
    now: int
    position: float
    mid: float
    equity: float
    peak_equity: float
    day_start_equity: float
    last_market_ts: int
    model_healthy: bool
    feed_ok: bool


class RiskCheck(Protocol):
    """One pre-trade check. Return 0 to approve; any other value rejects, and names why: a
    member of an IntEnum of the check's own (its `name` is recorded and reported) or of
    types.RejectReason for the built-in checks. `price` is where the order is expected to
    trade: the opposite best for a market order, the limit price for a limit order."""

    def check(self, order: OrderRequest, price: float, state: RiskView) -> int: ...


class RiskGate(Protocol):
    """The whole chain as the engine calls it: a reason code (0 approved) per order."""

    def check(self, order: OrderRequest, price: float, state: RiskView) -> int: ...
    def on_sent(self, ts: int) -> None: ...
    def reason_name(self, code: int) -> str: ...


class Venue(Protocol):
    due_ts: int  # arrival time of the earliest pending order (MAX_TS when none)
    n_resting: int  # resting limit orders; on_market is only called when there are some

    def submit(self, order: OrderRequest) -> None: ...
    def submit_cancel(self, request: CancelRequest) -> None:
        """A cancel or cancel-replace; it reaches the venue with the order latency."""

    def next_due(self) -> int: ...
    def process_due(self, ts: int, market: MarketState, out: list[Fill]) -> int: ...
    def on_market(self, market: MarketState, out: list[Fill]) -> int: ...
    def open_order_list(self) -> list[OpenOrder]: ...
    def side_of(self, order_id: int) -> Side | None:
        """The side of an open order (in flight or resting), None when it is not open."""


class PortfolioLike(Protocol):
    """The one owner of position, cash, equity, peak and drawdown (portfolio.Portfolio)."""

    position: float
    cash: float
    equity: float
    peak_equity: float
    max_drawdown: float

    def on_fill(self, fill: Fill) -> None: ...
    def mark(self, mid: float) -> float: ...
