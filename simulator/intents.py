"""Order intents: what a decision policy asks the engine to do, and what it sees of its orders.

A policy returns a sequence of intents (a shared empty tuple, `NO_INTENTS`, to do nothing: the
common path allocates nothing). The engine turns each intent into a venue order after the risk
chain approved it; cancels and cancel-replaces travel to the venue with the order latency, so a
cancel can arrive after the fill it meant to prevent (the fill then stands).

Values only (L0): frozen, slotted, compared by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeAlias

from simulator.types import Side


@dataclass(frozen=True, slots=True)
class MarketOrder:
    """Take `qty` at the venue now (immediate-or-cancel against the book)."""

    side: Side
    qty: float


@dataclass(frozen=True, slots=True)
class LimitOrder:
    """Buy at `price` or lower / sell at `price` or higher; the rest rests at the venue.

    `post_only`: the venue rejects the order if it would take liquidity on arrival (cross the
    opposite best), so it only ever fills as maker.
    """

    side: Side
    qty: float
    price: float
    post_only: bool = False


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel an open order (in flight or resting) by the id the view shows."""

    order_id: int


@dataclass(frozen=True, slots=True)
class CancelReplace:
    """Replace an open limit order's price and quantity; it keeps its id and its side."""

    order_id: int
    price: float
    qty: float


Intent: TypeAlias = MarketOrder | LimitOrder | Cancel | CancelReplace
NO_INTENTS: Final[tuple[Intent, ...]] = ()
"""Return this to do nothing: one shared tuple, no allocation per event."""


class OrderStatus(IntEnum):
    """Where an open order is, as the pipeline knows it."""

    IN_FLIGHT = 1  # sent, not yet at the venue (order latency)
    RESTING = 2  # a limit order working at the venue
    CANCEL_PENDING = 3  # a cancel or replace is on its way to the venue


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrder:
    """One open order as a policy sees it (a snapshot, built only when asked for)."""

    order_id: int
    side: Side
    qty: float  # the order's quantity
    remaining: float  # not yet filled
    price: float  # the limit price; NaN for a market order
    post_only: bool
    status: OrderStatus
