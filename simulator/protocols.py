"""The seams of the pipeline. The engine knows only these; runtime.py picks implementations.

Hot-path protocols pass plain floats, preallocated arrays and indices, never a new object per
event (STYLE B0).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from simulator.market import MarketState
from simulator.sources.recorded import EventBatch
from simulator.types import Fill, OrderRequest, RejectReason


class Clock(Protocol):
    def now(self) -> int: ...
    def advance_to(self, ts: int) -> None:
        """Move to `ts` (ns); raise InvariantViolation if `ts` is earlier than now()."""


class FeatureStage(Protocol):
    """Incremental features: O(1) updates, one preallocated float64 vector (decisions see
    float64; a model runner casts to its model's input dtype itself)."""

    names: tuple[str, ...]
    vector: npt.NDArray[np.float64]

    @property
    def ready(self) -> bool:
        """Once True, stays True until reset() (the engine relies on it)."""

    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...
    def on_trade(self, ts_recv: int, px: float, sz: float, side: int) -> None: ...
    def on_book(self, ts_recv: int, levels: Any, row: int) -> None:  # noqa: ANN401
        """A book event: `levels` is the feature stage's own per-batch column bundle."""

    def book_columns(self, batch: EventBatch) -> object:
        """Build the per-batch column bundle `on_book` takes (once per batch, cold)."""

    def compute(self) -> npt.NDArray[np.float64]: ...
    def reset(self) -> None: ...


class ModelRunner(Protocol):
    name: str

    def warm_up(self) -> None: ...
    def predict(self, features: npt.NDArray[np.float64], event_index: int) -> float:
        """Probability that the mid goes up over the model's horizon, in [0, 1]. `features`
        is float64; a runner whose model takes another dtype casts into its own preallocated
        input (no allocation per call)."""

    def reset(self) -> None: ...


class Sizer(Protocol):
    def target(self, p: float, position: float) -> float:
        """The position wanted after seeing `p` (returning `position` means hold)."""


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


class RiskGate(Protocol):
    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason: ...
    def on_sent(self, ts: int) -> None: ...


class Venue(Protocol):
    due_ts: int  # arrival time of the earliest pending order (MAX_TS when none)
    n_resting: int  # resting limit orders; on_market is only called when there are some

    def submit(self, order: OrderRequest) -> None: ...
    def next_due(self) -> int: ...
    def process_due(self, ts: int, market: MarketState, out: list[Fill]) -> int: ...
    def on_market(self, market: MarketState, out: list[Fill]) -> int: ...


class PortfolioLike(Protocol):
    position: float
    cash: float

    def on_fill(self, fill: Fill) -> None: ...
    def mark(self, mid: float) -> float: ...
