"""Resting limit orders with a queue position: when the market lets them fill, and how much.

Used by SimVenue when `venue.queue` names a queue model (queue.py); with `none` the venue's
touch rule applies instead. The rules follow hftbacktest's NoPartialFillExchange
(nopfx.rs = hftbacktest/src/backtest/proc/nopartialfillexchange.rs, 2.4.4 tag):

- On acceptance the order gets its queue estimate from the book: the quantity displayed at
  its price on its own side, 0 when the level is empty or the order is better than the best
  (queue.rs:67-74). A level the data cannot show (beyond the recorded depth, or behind the
  best in an L1 session) is unknown: the order queues behind what is there when it first
  shows.
- A book change at the order's price moves the estimate (the model's `on_depth`).
- A trade with an aggressor on the other side (a seller-initiated trade can fill our buys):
  at exactly our price the model's `on_trade` advances us and we fill once something is
  executable (queue.rs is_filled; without partial fills, once round(ahead / lot) < 0);
  strictly through our price (a sell below our buy) we fill whatever is ahead
  (nopfx.rs:123-158). Trades without an aggressor (side 0) fill nothing.
- The other side moving onto our price without a trade (nopfx.rs:242-312, 536-547): when the
  best ask falls (or appears) to our buy price or below, the buy fills at its own price; when
  the best bid rises to our sell or above, the sell fills. Only a move *towards* us counts.
- Fills are at the order's own price, as maker, stamped with the event that caused them.

Partial fills (`venue.partial_fills`, the default): a fill takes what the queue lets execute,
capped by the trade (one trade's quantity is shared by our orders in arrival order: no
liquidity is used twice) or, for the other side moving onto us, by the size displayed at the
new best. Without partial fills (hftbacktest's exchange) every fill is the order's whole
remaining quantity and orders are checked independently, exactly as the reference does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from simulator.execution.queue import QueueModel, QueuePos, executable, passed
from simulator.market import MarketState

UNSEEN = math.inf
"""level_qty of a QueuePos whose level the data has not shown yet."""


class PricedOrder(Protocol):
    """What a matcher reads of a venue's resting order."""

    @property
    def side(self) -> int: ...
    @property
    def limit_px(self) -> float: ...
    @property
    def remaining(self) -> float: ...


class RestingOrder(PricedOrder, Protocol):
    """... and the queue estimate this matcher keeps on it."""

    queue: QueuePos | None


R = TypeVar("R", bound=RestingOrder)


def level_qty(market: MarketState, side: int, price: float) -> float:
    """Displayed quantity at `price` on `side` (+1 bids, -1 asks): 0 when the level is empty
    or better than the best, UNSEEN when the data cannot show it."""
    best = market.bid_px if side > 0 else market.ask_px
    if best != best:  # that side is empty: so is our level
        return 0.0
    if price == best:
        return market.bid_sz if side > 0 else market.ask_sz
    if (price > best) if side > 0 else (price < best):
        return 0.0  # better than the best: nothing is there
    if not market.book_columns:
        return UNSEEN  # an L1 session shows only the best
    shown = 0
    for px, sz in market.depth(-side):  # depth(+1) walks asks: our bids are depth(-1)
        if px == price:
            return sz
        if (px < price) if side > 0 else (px > price):
            return 0.0  # the book skips our price: the level is empty
        shown += 1
    # beyond the deepest level shown: unknown if every recorded level is occupied
    return UNSEEN if shown >= len(market.book_columns) else 0.0


class QueueMatcher(Generic[R]):
    """Advances resting orders' queues on each market event and reports their fills.

    `fill(order, quantity, time)` fills at the order's price as maker and returns the quantity
    filled."""

    __slots__ = ("_ask", "_bid", "_book_seen", "_trades_seen", "lot", "model", "partial")

    def __init__(self, model: QueueModel, *, lot: float = 0.0, partial: bool = True) -> None:
        self.model = model
        self.lot = lot
        self.partial = partial
        self._trades_seen = 0
        self._bid = self._ask = math.nan
        self._book_seen: tuple[object, int, int] = ((), -1, -1)  # the last book state applied

    def accept(self, order: R, market: MarketState) -> None:
        """A limit order starts resting: its queue estimate from the book as it is now."""
        displayed = level_qty(market, order.side, order.limit_px)
        order.queue = QueuePos(displayed)
        # what happened before the order rested is not news to it
        self._bid, self._ask = market.bid_px, market.ask_px
        self._trades_seen = market.n_trades
        self._book_seen = (market.book_columns, market.book_row, market.ts_recv)

    def on_market(
        self, orders: Sequence[R], market: MarketState, fill: Callable[[R, float, int], float]
    ) -> bool:
        """Apply the event the market just took (a trade, or a book/quote change) to every
        resting order; return True when anything filled."""
        filled = False
        if market.n_trades != self._trades_seen:
            self._trades_seen = market.n_trades
            filled = self._on_trade(orders, market, fill)
        seen = self._book_seen  # after a trade or an order event the book is as it was
        if (
            market.ts_recv == seen[2]
            and market.book_row == seen[1]
            and (market.book_columns is seen[0])
        ):
            return filled
        self._book_seen = (market.book_columns, market.book_row, market.ts_recv)
        return self._on_book(orders, market, fill) or filled

    def _on_trade(
        self, orders: Sequence[R], market: MarketState, fill: Callable[[R, float, int], float]
    ) -> bool:
        aggressor, px, size = market.last_trade_side, market.last_trade_px, market.last_trade_sz
        if aggressor == 0:
            return False
        # partial fills share the trade: through our price its whole size, at our price what
        # it leaves past the queue (set by the first of our orders it reaches)
        through_left, at_price_left = size, math.inf
        ts, filled = market.last_trade_ts, False
        for order in orders:
            pos = order.queue
            if order.side == aggressor or order.remaining <= 0.0 or pos is None:
                continue
            limit = order.limit_px
            if px < limit if order.side > 0 else px > limit:  # through our price
                qty = min(order.remaining, through_left) if self.partial else order.remaining
                through_left -= qty
            elif px == limit and pos.level_qty != UNSEEN:
                self.model.on_trade(pos, size)
                if not self.partial:  # the whole order, once past the front
                    qty = order.remaining if passed(pos, self.lot) else 0.0
                elif (qty := self._executable(pos)) > 0.0:
                    if at_price_left == math.inf:
                        at_price_left = qty
                    qty = min(qty, at_price_left, order.remaining)
                    at_price_left -= qty
                    pos.ahead = 0.0  # what this trade left past the queue has been taken
            else:
                continue
            if qty > 0.0:
                filled |= fill(order, qty, ts) > 0.0
        return filled

    def _executable(self, pos: QueuePos) -> float:
        if self.lot > 0.0:
            return executable(pos, self.lot)
        return -pos.ahead if pos.ahead < 0.0 else 0.0

    def _on_book(  # noqa: C901 - per event with resting orders: one frame on purpose
        self, orders: Sequence[R], market: MarketState, fill: Callable[[R, float, int], float]
    ) -> bool:
        bid, ask = market.bid_px, market.ask_px
        bid_rose = bid == bid and not (bid <= self._bid)  # NaN before: "there was none"
        ask_fell = ask == ask and not (ask >= self._ask)
        self._bid, self._ask = bid, ask
        model, filled, ts = self.model, False, market.ts_recv
        bid_left, ask_left = market.bid_sz, market.ask_sz
        for order in orders:
            pos = order.queue
            if order.remaining <= 0.0 or pos is None:
                continue
            side, limit = order.side, order.limit_px
            if side > 0 and limit == bid:  # at the best: the common case, no walk
                qty = market.bid_sz
            elif side < 0 and limit == ask:
                qty = market.ask_sz
            else:
                qty = level_qty(market, side, limit)
            if qty != UNSEEN:
                if pos.level_qty == UNSEEN:  # first sight: behind everything shown
                    pos.ahead = pos.level_qty = qty
                elif qty != pos.level_qty:
                    model.on_depth(pos, qty)
            if side > 0 and ask_fell and ask <= limit:
                take = order.remaining if not self.partial else min(order.remaining, ask_left)
                ask_left -= take
            elif side < 0 and bid_rose and bid >= limit:
                take = order.remaining if not self.partial else min(order.remaining, bid_left)
                bid_left -= take
            else:
                continue
            if take > 0.0:
                filled |= fill(order, take, ts) > 0.0
        return filled
