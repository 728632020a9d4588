"""The example's own pre-trade check: no order priced far from the mid (a wide or broken book).
Its rejections are recorded and reported by their name, TOO_FAR_FROM_MID."""

from __future__ import annotations

from enum import IntEnum

from simulator.protocols import RiskView
from simulator.types import OrderRequest


class MidDistanceReason(IntEnum):
    TOO_FAR_FROM_MID = 1


class MidDistance:
    """Reject an order whose expected price (the opposite best for a market order, the limit
    for a limit order) is more than `max_bps` from the mid."""

    def __init__(self, max_bps: float = 5.0) -> None:
        if not max_bps > 0:
            raise ValueError(f"max_bps must be > 0; found {max_bps}")
        self.max_fraction = max_bps / 1e4

    def check(self, order: OrderRequest, price: float, state: RiskView) -> int:
        if abs(price - state.mid) > self.max_fraction * state.mid:
            return MidDistanceReason.TOO_FAR_FROM_MID
        return 0
