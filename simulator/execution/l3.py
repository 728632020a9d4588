"""Exact FIFO queue position of our resting orders among the real orders (order-level data).

With LOBSTER's message file imported as the `orders` kind, every visible change of the book is an
order event with an id, so the queue in front of a simulated order needs no estimate (the
`l3_fifo` model; hftbacktest's L3FIFOQueueModel keeps whole FIFO vectors, this keeps only what
decides our place):

- On acceptance at price P (side S), everything displayed at P is in front of us: ahead = the
  level's visible size. Orders added at P afterwards queue behind us (their ids are kept).
- A partial cancel or a delete of an order in front of us lowers ahead by its size; of an order
  behind us, changes nothing.
- A visible execution at P of an order in front of us lowers ahead by its size. An execution of
  an order *behind* us means the aggressor went through our place first: we fill
  min(our remaining, executed size) — exactly what a FIFO matching engine would have given us.
  So does an execution at a price beyond ours (a sell aggressor trading below our buy).
- A new order on the other side priced through ours would have matched us on arrival: we fill
  min(remaining, its size) at our price.
- Hidden executions (LOBSTER type 5), cross trades (6) and halts (7) do not touch the visible
  queue. Our fills take nothing out of the real book (no market impact), as in every replay
  simulator; what one of our orders took, a later one of ours at the same place cannot take
  again (`consumed` per event).

LOBSTER event types: 1 new, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden
execution, 6 cross trade, 7 halt. Direction is the side of the *resting* order (+1 buy limit
order, -1 sell limit order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Generic, Protocol, TypeVar

from simulator.execution.resting import UNSEEN, PricedOrder, level_qty
from simulator.market import MarketState

NEW: Final = 1
CANCEL: Final = 2
DELETE: Final = 3
EXECUTE: Final = 4


class L3Place:
    """One simulated resting order's exact place at its price level."""

    __slots__ = ("ahead", "behind", "price", "side")

    def __init__(self, side: int, price: float, displayed: float) -> None:
        self.side = side
        self.price = price
        self.ahead = displayed  # visible quantity in front of us, exact
        self.behind: set[int] = set()  # real order ids that arrived at our price after us

    def on_order_event(
        self, event: int, order_id: int, size: float, price: float, direction: int
    ) -> float:
        """Apply one real order event; return how much of our order it executes (before capping
        at our remaining quantity and at what our other orders already took)."""
        if direction == self.side:
            if price == self.price:
                return self._same_level(event, order_id, size)
            if event == EXECUTE and (price < self.price if self.side > 0 else price > self.price):
                return size  # the aggressor traded through our price: our level went first
            return 0.0
        if event == NEW and (price <= self.price if self.side > 0 else price >= self.price):
            return size  # a real order crossing our price would have matched us on arrival
        return 0.0

    def _same_level(self, event: int, order_id: int, size: float) -> float:
        if event == NEW:
            self.behind.add(order_id)
            return 0.0
        behind = order_id in self.behind
        if event in (CANCEL, DELETE):
            if behind:
                if event == DELETE:
                    self.behind.discard(order_id)
            else:
                self.ahead = max(self.ahead - size, 0.0)
            return 0.0
        if event != EXECUTE:
            return 0.0
        if behind:  # FIFO: the aggressor reached orders behind us, so it went through us
            return size
        # an order in front of us executed: it was there, so it was counted in ahead
        self.ahead = max(self.ahead - size, 0.0)
        return 0.0


class L3Resting(PricedOrder, Protocol):
    """A venue's resting order with the exact place the L3 matcher keeps on it."""

    place: L3Place | None


L = TypeVar("L", bound=L3Resting)


class L3Matcher(Generic[L]):
    """The `l3_fifo` queue at the venue: each resting order's L3Place follows the order
    events (the `orders` kind) the market reports; fills are at the order's price, as maker.

    An order's place starts from the book when it rests (the visible size at its price is in
    front of it; a level the book cannot show is taken at its first sight). One event's
    quantity is shared by our orders in arrival order: what one took, another cannot."""

    __slots__ = ("_events_seen",)

    def __init__(self) -> None:
        self._events_seen = 0

    def accept(self, order: L, market: MarketState) -> None:
        displayed = level_qty(market, order.side, order.limit_px)
        order.place = L3Place(order.side, order.limit_px, displayed)
        self._events_seen = market.n_order_events  # earlier events are not news to it

    def on_market(
        self,
        orders: Sequence[L],
        market: MarketState,
        fill: Callable[[L, float, int], float],
    ) -> bool:
        """Apply the order event the market just took, if any; return True when filled."""
        for order in orders:  # a level the book could not show, seen for the first time
            place = order.place
            if place is not None and place.ahead == UNSEEN:
                shown = level_qty(market, order.side, order.limit_px)
                if shown != UNSEEN:
                    place.ahead = shown
        if market.n_order_events == self._events_seen:
            return False
        self._events_seen = market.n_order_events
        event, order_id, size = market.order_event, market.order_id, market.order_sz
        px, side, ts = market.order_px, market.order_side, market.order_ts
        left, filled = size, False
        for order in orders:
            place = order.place
            if place is None or order.remaining <= 0.0 or place.ahead == UNSEEN:
                continue
            executed = place.on_order_event(event, order_id, size, px, side)
            qty = min(executed, left, order.remaining)
            if qty > 0.0:
                left -= qty
                filled |= fill(order, qty, ts) > 0.0
        return filled
