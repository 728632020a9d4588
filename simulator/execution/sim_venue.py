"""The simulated venue: orders arrive after the entry latency and fill against the market.

Time: the venue runs on the engine's timeline (receive time). An order decided at
`ts_decision` reaches the venue at `ts_decision + entry_ns`; fill reports reach the pipeline
`response_ns` after the match (`Fill.ts_event` = match time, `Fill.ts_recv` = + response).
The venue reads no clock: every time comes in as an argument or a market field.

Order of processing (deterministic): pending orders and cancels sit in one heap keyed
(arrival, order_id, n) with n = 0 for an order and counting up for the cancels sent, so two
orders arriving at the same nanosecond are handled in order_id order and a cancel after its
order. The engine calls
`process_due(ts, market, out)` before applying a market event at `ts` >= arrival (the order
meets the market as it was when it arrived) and, with zero latency, right after the decision.

Matching model (simple, documented; no queue position and no market impact yet):
- Market orders are immediate-or-cancel. "l1": take the opposite best up to its displayed
  size. "l2": walk `market.depth(side)` level by level. What our orders take is gone: a later
  order of ours finds a level reduced by it until the book shows that level with another size
  (the replayed book never shows our own impact; a changed size is the market moving on).
  One Fill per level touched, like a venue's execution reports (the order's VWAP is
  sum(px x qty) / sum(qty) over its fills). An unfilled rest is cancelled by the venue and
  recorded as a `VenueNote`.
- Limit orders: the marketable part fills as taker exactly like a market order capped at the
  limit price; the rest rests (good till cancelled). `on_market` fills a resting buy when the
  best ask <= limit (a sell when the best bid >= limit), at the LIMIT price, as maker, capped
  at the displayed size at the touch; resting orders share that size in arrival order. A
  resting order is matched at most once per market state (keyed by `market.ts_recv`), so a
  quote repeated across trade events, or the quote its taker part already consumed, is not
  used twice; the cost is that a second quote with the very same ts_recv is skipped.
- Post-only limit orders: rejected on arrival (a POST_ONLY_REJECTED note) when they would
  cross the opposite best; otherwise they rest and only ever fill as maker.
- Cancels and cancel-replaces (`submit_cancel`) travel with the same entry latency. On arrival
  a cancel ends the order if it is still open (a CANCELLED note with what had filled); if the
  order has already filled or ended, the cancel is too late (a CANCEL_TOO_LATE note) and the
  fill stands. A replace gives a resting order a new price and open quantity, keeping its id
  and side: it is matched like a new limit order arriving then (its marketable part takes).
- Queue position (`queue` other than "none"): resting orders fill as their queue at their
  price lets them — trades at the price, trades through it, the other side moving onto it —
  by the rules in execution/resting.py and the models in execution/queue.py (hftbacktest's
  risk-averse and probabilistic models), or, with `l3_fifo` on order-level data, at their
  exact FIFO place among the real orders (execution/l3.py); the touch rule above is then
  not used.
- Fees: notional x bps / 1e4, taker or maker bps (a negative maker bps is a rebate).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from simulator.errors import ConfigError, VenueError
from simulator.execution.l3 import L3Matcher, L3Place
from simulator.execution.latency import LatencyModel
from simulator.execution.queue import QueuePos, build_queue_model
from simulator.execution.resting import QueueMatcher
from simulator.intents import OpenOrder, OrderStatus
from simulator.market import MAX_TS, MarketState
from simulator.types import CancelRequest, Fill, Nanos, OrderRequest, OrderType, Side

DEPTHS: Final = ("l1", "l2")


class NoteKind(IntEnum):
    """How an order ended other than fully filled (stored as int8 in run tables)."""

    PARTIAL = 1  # market order partly filled; the venue cancelled the rest
    NO_LIQUIDITY = 2  # market order found nothing to take (empty or NaN opposite side)
    CANCELLED = 3  # cancelled by the pipeline (may have been partly filled before)
    POST_ONLY_REJECTED = 4  # a post-only order would have crossed on arrival
    CANCEL_TOO_LATE = 5  # a cancel or replace arrived after its order filled or ended


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueNote:
    """A record of an order that did not fill completely."""

    ts: Nanos  # venue time of the outcome
    order_id: int
    kind: NoteKind
    filled_qty: float
    unfilled_qty: float


class _Resting:
    """The working rest of a limit order."""

    __slots__ = (
        "limit_px",
        "order",
        "order_id",
        "place",
        "qty",
        "queue",
        "remaining",
        "seen_ts",
        "side",
        "ts_arrival",
    )

    def __init__(self, order: OrderRequest, limit_px: float, remaining: float, ts: int) -> None:
        self.order = order
        self.order_id = order.order_id
        self.side = order.side
        self.qty = order.qty
        self.limit_px = limit_px
        self.remaining = remaining
        self.ts_arrival = ts
        self.seen_ts = ts  # last market ts_recv it was matched against
        self.queue: QueuePos | None = None  # its place at its price, with a queue model
        self.place: L3Place | None = None  # ... or its exact place, with l3_fifo


class SimVenue:
    """Simulated matching for one instrument; see the module docstring for the model.

    Counters (every received order ends in exactly one, or is still open):
    received == filled + partially_filled + unfilled + cancelled + rejected + open_orders;
    cancels that came too late are counted in `cancels_too_late`, replaces in `replaced`.
    """

    __slots__ = (
        "_consumed",
        "_l2",
        "_l3",
        "_latency",
        "_maker_bps",
        "_matcher",
        "_pending",
        "_resting",
        "_seen_ids",
        "_seq",
        "_sink",
        "_taker_bps",
        "_venue_ts",
        "cancelled",
        "cancels_too_late",
        "due_ts",
        "filled",
        "n_resting",
        "notes",
        "partially_filled",
        "received",
        "rejected",
        "replaced",
        "unfilled",
    )

    def __init__(
        self,
        *,
        latency: LatencyModel,
        taker_fee_bps: float = 0.0,
        maker_fee_bps: float = 0.0,
        depth: str = "l1",
        queue: str = "none",
        queue_power: float = 3.0,
        lot_size: float = 0.0,
        partial_fills: bool = True,
    ) -> None:
        if depth not in DEPTHS:
            raise ConfigError(
                f"SimVenue: 'depth' must be 'l1' (opposite best) or 'l2' (walk the book); "
                f"found {depth!r}"
            )
        for name, bps in (("taker_fee_bps", taker_fee_bps), ("maker_fee_bps", maker_fee_bps)):
            if not math.isfinite(bps):
                raise ConfigError(f"SimVenue: '{name}' must be a finite number; found {bps!r}")
        self._latency = latency
        self._taker_bps = taker_fee_bps
        self._maker_bps = maker_fee_bps
        self._l2 = depth == "l2"
        model = build_queue_model(queue, queue_power)
        self._matcher: QueueMatcher[_Resting] | None = (
            None if model is None else QueueMatcher(model, lot=lot_size, partial=partial_fills)
        )
        self._l3: L3Matcher[_Resting] | None = L3Matcher() if queue == "l3_fifo" else None
        self._sink: list[Fill] = []  # the fills list of the on_market call in progress
        # liquidity our orders took, per level (price; bids negated): (the level's size then,
        # quantity taken) — gone until the book shows that level with another size
        self._consumed: dict[float, tuple[float, float]] = {}
        # heap (arrival, order_id, 0 for an order / n-th cancel sent, order or cancel)
        self._pending: list[tuple[int, int, int, OrderRequest | CancelRequest]] = []
        self._seq = 0
        self._resting: list[_Resting] = []  # in arrival order
        # read by the engine on every event instead of calling next_due() / on_market()
        self.due_ts = MAX_TS  # arrival time of the earliest pending order
        self.n_resting = 0  # resting limit orders
        self._seen_ids: set[int] = set()
        self._venue_ts = 0  # latest match time handled; stamps cancel notes
        self.notes: list[VenueNote] = []
        self.received = 0
        self.filled = 0
        self.partially_filled = 0
        self.unfilled = 0
        self.cancelled = 0
        self.rejected = 0
        self.replaced = 0
        self.cancels_too_late = 0

    @property
    def open_orders(self) -> int:
        """Orders in flight to the venue plus resting limit orders."""
        in_flight = sum(1 for *_, item in self._pending if isinstance(item, OrderRequest))
        return in_flight + len(self._resting)

    def open_order_list(self) -> list[OpenOrder]:
        """Every open order with its state, in submission order (cold: built on request)."""
        cancelling = {i.order_id for *_, i in self._pending if isinstance(i, CancelRequest)}
        out: list[OpenOrder] = []
        for *_, item in sorted(self._pending, key=lambda entry: entry[:3]):
            if isinstance(item, OrderRequest):
                status = OrderStatus.CANCEL_PENDING if item.order_id in cancelling else None
                out.append(_open(item, item.qty, status or OrderStatus.IN_FLIGHT))
        for rest in self._resting:
            pending = rest.order_id in cancelling
            status = OrderStatus.CANCEL_PENDING if pending else OrderStatus.RESTING
            out.append(_open(rest.order, rest.remaining, status, rest.limit_px, rest.qty))
        return out

    def side_of(self, order_id: int) -> Side | None:
        """The side of an open order (in flight or resting), None when it is not open."""
        for rest in self._resting:
            if rest.order_id == order_id:
                return rest.side
        for *_, item in self._pending:
            if isinstance(item, OrderRequest) and item.order_id == order_id:
                return item.side
        return None

    def submit(self, order: OrderRequest) -> None:
        """Send `order`; it reaches the venue at ts_decision + entry latency."""
        _validate(order)
        if order.order_id in self._seen_ids:
            raise VenueError(f"order_id {order.order_id} was already submitted; ids must be unique")
        self._seen_ids.add(order.order_id)
        self._push(order.ts_decision, 0, order)
        self.received += 1

    def submit_cancel(self, request: CancelRequest) -> None:
        """Send a cancel or cancel-replace; it reaches the venue after the entry latency."""
        if request.is_replace:
            qty, px = request.new_qty, request.new_px
            if qty is None or not 0.0 < qty < math.inf or px is None or not 0.0 < px < math.inf:
                raise VenueError(
                    f"replace of order {request.order_id}: price and qty must be finite and "
                    f"> 0; found price={px!r}, qty={qty!r}"
                )
        self._seq += 1
        self._push(request.ts_decision, self._seq, request)

    def _push(self, ts_decision: int, n: int, item: OrderRequest | CancelRequest) -> None:
        arrival = ts_decision + self._latency.entry_ns(ts_decision)
        heapq.heappush(self._pending, (arrival, item.order_id, n, item))
        self._sync()

    def next_due(self) -> int:
        """Arrival time of the earliest pending order, or MAX_TS when none."""
        return self.due_ts

    def _sync(self) -> None:
        self.due_ts = self._pending[0][0] if self._pending else MAX_TS
        self.n_resting = len(self._resting)

    def process_due(self, ts: int, market: MarketState, out: list[Fill]) -> int:
        """Match every pending order with arrival <= ts against `market` as it is now.

        Appends fills to `out` and returns how many were appended.
        """
        pending = self._pending
        if not pending or pending[0][0] > ts:
            return 0
        start = len(out)
        while pending and pending[0][0] <= ts:
            arrival, _, _, item = heapq.heappop(pending)
            if isinstance(item, OrderRequest):
                self._arrive(item, arrival, market, out)
            else:
                self._on_cancel(item, arrival, market, out)
        self._sync()
        return len(out) - start

    def on_market(self, market: MarketState, out: list[Fill]) -> int:
        """Fill resting limit orders the current market crosses; return the fills appended."""
        resting = self._resting
        if not resting:
            return 0
        start = len(out)
        matcher = self._matcher or self._l3
        if matcher is not None:
            self._sink = out
            if matcher.on_market(resting, market, self._fill_queued):
                self._resting = [rest for rest in resting if rest.remaining > 0.0]
                self._sync()
            return len(out) - start
        quote_ts = market.ts_recv
        bid_left, ask_left = market.bid_sz, market.ask_sz
        for rest in resting:
            if rest.seen_ts >= quote_ts:  # this market state was already offered to it
                continue
            rest.seen_ts = quote_ts
            if rest.side > 0:
                if market.ask_px <= rest.limit_px and ask_left > 0.0:
                    ask_left -= self._fill_resting(rest, ask_left, quote_ts, out)
            elif market.bid_px >= rest.limit_px and bid_left > 0.0:
                bid_left -= self._fill_resting(rest, bid_left, quote_ts, out)
        if len(out) > start:
            self._resting = [rest for rest in resting if rest.remaining > 0.0]
            self._sync()
        return len(out) - start

    def cancel(self, order_id: int) -> bool:
        """Cancel a pending or resting order at once, at the venue's latest time (a cancel the
        pipeline sends goes through `submit_cancel` and its latency instead).

        Returns False when the order is not open (already filled, ended or unknown): a
        normal race, not an error.
        """
        rest = self._take_open(order_id)
        if rest is None:
            return False
        filled = rest.qty - rest.remaining
        self._note(self._venue_ts, order_id, NoteKind.CANCELLED, filled, rest.remaining)
        self.cancelled += 1
        return True

    def _take_open(self, order_id: int) -> _Resting | None:
        """Remove an open order (in flight or resting) and return what is left of it."""
        for i, (*_, item) in enumerate(self._pending):
            if isinstance(item, OrderRequest) and item.order_id == order_id:
                self._pending.pop(i)
                heapq.heapify(self._pending)
                self._sync()
                return _Resting(item, item.limit_px or math.nan, item.qty, self._venue_ts)
        for i, rest in enumerate(self._resting):
            if rest.order_id == order_id:
                del self._resting[i]
                self._sync()
                return rest
        return None

    def _on_cancel(
        self, request: CancelRequest, ts: int, market: MarketState, out: list[Fill]
    ) -> None:
        """A cancel or replace reaches the venue at `ts`."""
        self._venue_ts = max(self._venue_ts, ts)
        rest = self._take_open(request.order_id)
        if rest is None:  # filled, ended or unknown: too late, whatever filled stands
            self.cancels_too_late += 1
            self._note(ts, request.order_id, NoteKind.CANCEL_TOO_LATE, 0.0, 0.0)
            return
        if not request.is_replace:
            filled = rest.qty - rest.remaining
            self._note(ts, request.order_id, NoteKind.CANCELLED, filled, rest.remaining)
            self.cancelled += 1
            return
        self.replaced += 1
        old = rest.order
        replacement = OrderRequest(
            order_id=old.order_id,
            ts_decision=request.ts_decision,
            side=old.side,
            qty=request.new_qty or 0.0,
            order_type=OrderType.LIMIT,
            limit_px=request.new_px,
            post_only=old.post_only,
        )
        self._arrive(replacement, ts, market, out)

    def counters(self) -> dict[str, int]:
        """Order outcome counts for run summaries (cold)."""
        return {
            "received": self.received,
            "filled": self.filled,
            "partially_filled": self.partially_filled,
            "unfilled": self.unfilled,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "open": self.open_orders,
            "replaced": self.replaced,
            "cancels_too_late": self.cancels_too_late,
        }

    # -- matching (per order: cold, may allocate) ------------------------------------------

    def _arrive(self, order: OrderRequest, ts: int, market: MarketState, out: list[Fill]) -> None:
        self._venue_ts = max(self._venue_ts, ts)
        if order.post_only and _crosses(order, market):
            self.rejected += 1
            self._note(ts, order.order_id, NoteKind.POST_ONLY_REJECTED, 0.0, order.qty)
            return
        remaining = self._take(order, ts, market, out)
        if remaining <= 0.0:
            self.filled += 1
        elif order.limit_px is not None:
            rest = _Resting(order, order.limit_px, remaining, market.ts_recv)
            if self._matcher is not None:
                self._matcher.accept(rest, market)
            elif self._l3 is not None:
                self._l3.accept(rest, market)
            self._resting.append(rest)
        elif remaining < order.qty:
            self.partially_filled += 1
            self._note(ts, order.order_id, NoteKind.PARTIAL, order.qty - remaining, remaining)
        else:
            self.unfilled += 1
            self._note(ts, order.order_id, NoteKind.NO_LIQUIDITY, 0.0, remaining)

    def _take(self, order: OrderRequest, ts: int, market: MarketState, out: list[Fill]) -> float:
        """Take liquidity as taker (capped at the limit price, if any); return the unfilled qty."""
        side, limit = order.side, order.limit_px
        levels: Iterable[tuple[float, float]]
        if self._l2:
            levels = market.depth(side)
        elif side > 0:
            levels = [(market.ask_px, market.ask_sz)]
        else:
            levels = [(market.bid_px, market.bid_sz)]
        remaining, consumed = order.qty, self._consumed
        for px, size in levels:
            if not (px == px and size > 0.0):  # NaN price or empty level: nothing to take
                continue
            if limit is not None and (px > limit if side > 0 else px < limit):
                break
            key = px if side > 0 else -px  # asks a buy takes; bids (negated) a sell takes
            seen = consumed.get(key)
            taken = seen[1] if seen is not None and seen[0] == size else 0.0
            available = size - taken  # what our earlier orders took stays taken until the
            if available <= 0.0:  # book shows that level changed
                continue
            qty = available if available < remaining else remaining
            remaining -= qty
            consumed[key] = (size, taken + qty)
            out.append(self._fill(order.order_id, side, px, qty, False, ts))
            if remaining <= 0.0:
                break
        return remaining

    def _fill_resting(self, rest: _Resting, available: float, ts: int, out: list[Fill]) -> float:
        qty = rest.remaining if rest.remaining <= available else available
        rest.remaining -= qty
        ts = max(ts, rest.ts_arrival)  # a fill never precedes its order's arrival
        self._venue_ts = max(self._venue_ts, ts)
        out.append(self._fill(rest.order_id, rest.side, rest.limit_px, qty, True, ts))
        if rest.remaining <= 0.0:
            self.filled += 1
        return qty

    def _fill_queued(self, rest: _Resting, qty: float, ts: int) -> float:
        """The queue matcher's fill callback (into the fills list of the current call)."""
        return self._fill_resting(rest, qty, ts, self._sink)

    def _fill(self, order_id: int, side: Side, px: float, qty: float, maker: bool, ts: int) -> Fill:
        bps = self._maker_bps if maker else self._taker_bps
        return Fill(
            order_id=order_id,
            side=side,
            px=px,
            qty=qty,
            fee=px * qty * bps / 1e4,
            liquidity="maker" if maker else "taker",
            ts_event=Nanos(ts),
            ts_recv=Nanos(ts + self._latency.response_ns(ts)),
        )

    def _note(self, ts: int, order_id: int, kind: NoteKind, filled: float, unfilled: float) -> None:
        self.notes.append(
            VenueNote(
                ts=Nanos(ts), order_id=order_id, kind=kind, filled_qty=filled, unfilled_qty=unfilled
            )
        )


def _crosses(order: OrderRequest, market: MarketState) -> bool:
    """Would this limit order take liquidity now (reach the opposite best)?"""
    limit = order.limit_px if order.limit_px is not None else math.nan
    if order.side > 0:
        return market.ask_sz > 0.0 and market.ask_px <= limit
    return market.bid_sz > 0.0 and market.bid_px >= limit


def _open(
    order: OrderRequest,
    remaining: float,
    status: OrderStatus,
    price: float | None = None,
    qty: float | None = None,
) -> OpenOrder:
    px = order.limit_px if price is None else price
    return OpenOrder(
        order_id=order.order_id,
        side=order.side,
        qty=order.qty if qty is None else qty,
        remaining=remaining,
        price=math.nan if px is None else px,
        post_only=order.post_only,
        status=status,
    )


def _validate(order: OrderRequest) -> None:
    """Orders come from the engine: a malformed one is a bug, raised as VenueError (the
    message is built only then: this runs once per order)."""
    if not 0.0 < order.qty < math.inf:
        raise VenueError(
            f"order {order.order_id}: qty must be a finite number > 0; found {order.qty!r}"
        )
    if order.side not in (Side.BUY, Side.SELL):
        raise VenueError(
            f"order {order.order_id}: side must be Side.BUY or Side.SELL; found {order.side!r}"
        )
    if order.order_type == OrderType.LIMIT:
        px = order.limit_px
        if px is None or not 0.0 < px < math.inf:
            raise VenueError(
                f"order {order.order_id}: a limit order needs a finite limit_px > 0; found {px!r}"
            )
        return
    if order.post_only:
        raise VenueError(f"order {order.order_id}: post_only needs a limit order")
    if order.limit_px is not None:
        raise VenueError(
            f"order {order.order_id}: a market order must not carry limit_px "
            f"(found {order.limit_px!r}); send order_type=OrderType.LIMIT to cap the price"
        )
