"""The venue's queue-position rules (../shared/QUEUE.md, hftbacktest's NoPartialFillExchange +
RiskAdverseQueueModel), one tiny hand-written tape per rule, then the models and partial fills.

Tapes are applied as the engine applies events: a book row sets the market and calls
`on_market`; a trade sets the last trade (size, aggressor) and calls `on_market`. Orders are
post-only limits with zero latency, accepted at the time they are sent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.execution import FixedLatency, SimVenue, ZeroLatency
from simulator.execution.sim_venue import NoteKind
from simulator.market import MarketState
from simulator.types import CancelRequest, Fill, Nanos, OrderRequest, OrderType, Side


class Tape:
    """A venue, a market and the fills so far; events applied in the engine's way."""

    def __init__(self, queue: str = "risk_averse", *, partial: bool = False, levels: int = 1):
        self.venue = SimVenue(
            latency=ZeroLatency(),
            depth="l2" if levels > 1 else "l1",
            queue=queue,
            queue_power=2.0,
            lot_size=1.0,
            partial_fills=partial,
        )
        self.market = MarketState(levels)
        self.fills: list[Fill] = []
        self.ts = 0
        self._next_id = 1

    def book(self, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> Tape:
        """An L1 row (bid or ask side may be NaN: empty)."""
        self.ts += 1
        m = self.market
        m.bid_px, m.bid_sz, m.ask_px, m.ask_sz, m.ts_recv = bid_px, bid_sz, ask_px, ask_sz, self.ts
        self.venue.on_market(m, self.fills)
        return self

    def levels(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> Tape:
        """An L2 row: (price, size) per level, best first; missing levels are empty."""
        n = self.market.levels
        columns = []
        for i in range(n):
            bid = bids[i] if i < len(bids) else (math.nan, math.nan)
            ask = asks[i] if i < len(asks) else (math.nan, math.nan)
            bid_px, bid_sz, ask_px, ask_sz = (
                np.array([v], dtype=np.float64).data for v in (*bid, *ask)
            )
            columns.append((bid_px, bid_sz, ask_px, ask_sz))
        self.market.book_columns = tuple(columns)
        self.market.book_row = 0
        best_bid = bids[0] if bids else (math.nan, math.nan)
        best_ask = asks[0] if asks else (math.nan, math.nan)
        return self.book(*best_bid, *best_ask)

    def trade(self, px: float, sz: float, aggressor: int) -> Tape:
        self.ts += 1
        m = self.market
        m.last_trade_px, m.last_trade_sz, m.last_trade_side, m.last_trade_ts = (
            px,
            sz,
            aggressor,
            self.ts,
        )
        m.n_trades += 1
        self.venue.on_market(m, self.fills)
        return self

    def post(self, side: Side, price: float, qty: float = 1.0) -> int:
        order_id, self._next_id = self._next_id, self._next_id + 1
        order = OrderRequest(
            order_id=order_id,
            ts_decision=Nanos(self.ts),
            side=side,
            qty=qty,
            order_type=OrderType.LIMIT,
            limit_px=price,
            post_only=True,
        )
        self.venue.submit(order)
        self.venue.process_due(self.ts, self.market, self.fills)
        return order_id

    def cancel(self, order_id: int) -> bool:
        return self.venue.cancel(order_id)

    def filled(self) -> list[tuple[int, float, float]]:
        return [(f.order_id, f.px, f.qty) for f in self.fills]


BUY, SELL = Side.BUY, Side.SELL
BUYER, SELLER = 1, -1  # trade aggressors


# -- QUEUE.md, rule by rule (risk_averse, no partial fills) -------------------------------


def test_accepting_a_crossing_post_only_expires_it():
    tape = Tape().book(100.0, 5.0, 101.0, 5.0)
    tape.post(BUY, 101.0)  # at the best ask: would take
    tape.post(SELL, 100.0)
    assert tape.venue.n_resting == 0
    assert [n.kind for n in tape.venue.notes] == [NoteKind.POST_ONLY_REJECTED] * 2


def test_initial_queue_is_the_displayed_size_and_an_equal_trade_leaves_us_at_the_front():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0)  # behind 30
    tape.trade(100.0, 10.0, SELLER).trade(100.0, 20.0, SELLER)  # 30 traded: at the front
    assert tape.filled() == []
    tape.trade(100.0, 1.0, SELLER)  # the next trade of any size at our price fills us
    assert tape.filled() == [(order, 100.0, 1.0)]
    assert tape.venue.n_resting == 0


def test_a_trade_larger_than_ahead_fills_the_whole_order_without_partial_fills():
    tape = Tape().book(100.0, 3.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0, qty=10.0)
    tape.trade(100.0, 4.0, SELLER)  # one past the 3 ahead: the whole 10 fill
    assert tape.filled() == [(order, 100.0, 10.0)]


def test_without_partial_fills_half_a_lot_past_the_front_fills_the_whole_order():
    # hftbacktest 2.4.4 (checked by tests/crosscheck): NoPartialFillExchange fills once
    # round(ahead / lot) < 0, even when floor(-ahead / lot) = 0 whole lots are executable
    for trade, filled in ((1.4, False), (1.5, True)):
        tape = Tape().book(100.0, 1.0, 101.0, 5.0)
        order = tape.post(BUY, 100.0, qty=3.0)
        tape.trade(100.0, trade, SELLER)  # 0.4 lot past the front rounds to 0; 0.5 to -1
        assert tape.filled() == ([(order, 100.0, 3.0)] if filled else []), trade


def test_float_sizes_leave_a_crumb_that_a_next_lot_still_passes():
    # 0.7 shown as 700 * 0.001 = 0.7000000000000001; trades 0.3 + 0.4 leave 5.6e-17 ahead;
    # one more 0.001 lot makes ahead / lot = -0.99999...: filled (floor would say 0 lots)
    venue = SimVenue(latency=ZeroLatency(), queue="risk_averse", lot_size=0.001,
                     partial_fills=False)  # fmt: skip
    tape = Tape()
    tape.venue = venue
    tape.book(100.0, 1.0, 101.0, 700 * 0.001)
    order = tape.post(SELL, 101.0, qty=0.005)
    for size in (300 * 0.001, 400 * 0.001, 0.001):
        tape.trade(101.0, size, BUYER)
    assert tape.filled() == [(order, 101.0, 0.005)]


def test_a_trade_by_a_buyer_never_fills_our_buy():
    tape = Tape().book(100.0, 3.0, 101.0, 5.0)
    tape.post(BUY, 100.0)
    tape.trade(100.0, 50.0, BUYER).trade(100.0, 50.0, 0)  # wrong aggressor; no aggressor
    assert tape.filled() == []


def test_a_trade_through_our_price_fills_whatever_is_ahead():
    tape = Tape().book(100.0, 500.0, 101.0, 5.0)
    buy = tape.post(BUY, 100.0)
    sell = tape.post(SELL, 101.0)
    tape.trade(99.0, 1.0, SELLER)  # sold below our buy: our level went first
    tape.trade(102.0, 1.0, BUYER)  # bought above our sell
    assert tape.filled() == [(buy, 100.0, 1.0), (sell, 101.0, 1.0)]


def test_book_decreases_are_cancels_behind_us_unless_below_ahead():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0)
    tape.book(100.0, 25.0, 101.0, 5.0)  # ahead min(30, 25) = 25
    tape.book(100.0, 60.0, 101.0, 5.0)  # an increase does not push us back
    tape.trade(100.0, 25.0, SELLER)  # 25 traded: front, not filled
    assert tape.filled() == []
    tape.trade(100.0, 1.0, SELLER)
    assert tape.filled() == [(order, 100.0, 1.0)]


def test_a_deleted_level_puts_us_at_the_front_and_we_stay_there():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0)
    tape.book(99.0, 10.0, 101.0, 5.0)  # our level is gone (the best bid moved below it)
    tape.book(100.0, 80.0, 101.0, 5.0)  # it comes back: still at the front
    tape.trade(100.0, 1.0, SELLER)
    assert tape.filled() == [(order, 100.0, 1.0)]


def test_the_other_side_moving_onto_our_price_fills_us():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0)
    tape.book(99.0, 10.0, 101.0, 5.0)  # our level deleted
    tape.book(99.0, 10.0, 100.0, 7.0)  # the ask falls onto our buy: filled at our price
    assert tape.filled() == [(order, 100.0, 1.0)]


def test_only_the_other_side_moving_towards_us_fills():
    tape = Tape().book(99.0, 10.0, 100.5, 5.0)
    order = tape.post(SELL, 100.0)  # better than the best ask: at the front
    tape.book(99.0, 10.0, 100.0, 5.0)  # the ask side moves, not the bid: nothing
    tape.book(98.0, 10.0, 100.0, 5.0)  # the bid moves away: nothing
    assert tape.filled() == []
    tape.book(100.0, 3.0, 100.5, 5.0)  # the bid rises onto our sell: filled
    assert tape.filled() == [(order, 100.0, 1.0)]


def test_an_order_better_than_the_best_starts_at_the_front():
    tape = Tape().book(100.0, 30.0, 102.0, 5.0)
    order = tape.post(BUY, 101.0)  # inside the spread: nothing ahead
    tape.trade(101.0, 1.0, SELLER)
    assert tape.filled() == [(order, 101.0, 1.0)]


def test_a_cancelled_order_cannot_fill_and_a_repost_queues_again():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    first = tape.post(BUY, 100.0)
    tape.trade(100.0, 30.0, SELLER)  # first is at the front now
    assert tape.cancel(first)
    tape.trade(100.0, 5.0, SELLER)
    assert tape.filled() == []  # cancelled: no fill
    tape.book(100.0, 40.0, 101.0, 5.0)
    again = tape.post(BUY, 100.0)  # behind the 40 displayed again
    tape.trade(100.0, 40.0, SELLER)
    assert tape.filled() == []
    tape.trade(100.0, 1.0, SELLER)
    assert tape.filled() == [(again, 100.0, 1.0)]


def test_unseen_levels_queue_behind_what_is_shown_when_they_appear():
    tape = Tape().book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 99.0)  # behind the best in an L1 session: unknown
    tape.trade(99.0, 100.0, SELLER)  # a print at our price before we could see the level
    assert tape.filled() == []
    tape.book(99.0, 12.0, 101.0, 5.0)  # first sight: behind the 12 shown
    tape.trade(99.0, 12.0, SELLER)
    assert tape.filled() == []
    tape.trade(99.0, 1.0, SELLER)
    assert tape.filled() == [(order, 99.0, 1.0)]


def test_l2_levels_give_the_queue_of_a_deeper_order():
    tape = Tape(levels=3).levels([(100.0, 30.0), (99.0, 7.0)], [(101.0, 5.0)])
    order = tape.post(BUY, 99.0)  # second level: behind its 7
    tape.trade(99.0, 7.0, SELLER)
    assert tape.filled() == []
    tape.levels([(100.0, 30.0), (99.5, 2.0)], [(101.0, 5.0)])  # 99 no longer shown: deleted
    tape.trade(99.0, 1.0, SELLER)
    assert tape.filled() == [(order, 99.0, 1.0)]


# -- partial fills and shared liquidity ----------------------------------------------------


def test_partial_fills_take_what_the_trade_left_and_share_it_in_arrival_order():
    tape = Tape(partial=True).book(100.0, 2.0, 101.0, 5.0)
    a = tape.post(BUY, 100.0, qty=3.0)
    b = tape.post(BUY, 100.0, qty=3.0)
    tape.trade(100.0, 6.0, SELLER)  # 4 past the 2 ahead: a takes 3, b the 1 left
    assert tape.filled() == [(a, 100.0, 3.0), (b, 100.0, 1.0)]
    tape.trade(100.0, 1.0, SELLER)  # b is at the front with 2 left: takes 1 more
    assert tape.filled()[-1] == (b, 100.0, 1.0)
    assert tape.venue.n_resting == 1


def test_partial_fill_onto_our_price_is_capped_by_the_size_shown():
    tape = Tape(partial=True).book(99.0, 10.0, 100.5, 5.0)
    order = tape.post(SELL, 100.0, qty=5.0)
    tape.book(100.0, 2.0, 100.5, 5.0)  # the bid rises onto our sell with 2 shown
    assert tape.filled() == [(order, 100.0, 2.0)]


# -- the probabilistic models --------------------------------------------------------------


@pytest.mark.parametrize("queue", ["prob_power", "prob_log"])
def test_probabilistic_queues_advance_on_cancels_and_fill_sooner(queue):
    def fills_after_cancels(model: str) -> list[tuple[int, float, float]]:
        tape = Tape(model).book(100.0, 30.0, 101.0, 5.0)
        tape.post(BUY, 100.0)
        tape.book(100.0, 40.0, 101.0, 5.0)  # 10 join behind us
        tape.book(100.0, 20.0, 101.0, 5.0)  # 20 cancelled: some of it was ahead of us
        tape.trade(100.0, 20.0, SELLER)
        return tape.filled()

    assert fills_after_cancels("risk_averse") == []  # 20 still ahead: front, not filled
    assert fills_after_cancels(queue) == [(1, 100.0, 1.0)]  # fewer than 20 ahead: filled
    assert fills_after_cancels(queue) == fills_after_cancels(queue)  # deterministic


def test_queue_none_keeps_the_touch_rule():
    tape = Tape("none").book(100.0, 30.0, 101.0, 5.0)
    order = tape.post(BUY, 100.0)
    tape.trade(100.0, 500.0, SELLER)  # no queue model: trades do not fill
    assert tape.filled() == []
    tape.book(99.0, 10.0, 100.0, 4.0)  # the ask reaches the limit: filled at the limit
    assert tape.filled() == [(order, 100.0, 1.0)]


# -- shared liquidity for taking orders, and cancels racing fills ---------------------------


def _market_order(order_id: int, side: Side, qty: float, ts: int = 0) -> OrderRequest:
    return OrderRequest(order_id=order_id, ts_decision=Nanos(ts), side=side, qty=qty)


def test_what_a_market_order_took_is_gone_until_the_level_changes():
    tape = Tape("none").book(100.0, 30.0, 101.0, 5.0)
    venue, market, fills = tape.venue, tape.market, tape.fills
    venue.submit(_market_order(1, BUY, 4.0))
    venue.submit(_market_order(2, BUY, 4.0))  # the same ask: only 1 of its 5 is left
    venue.process_due(tape.ts, market, fills)
    assert tape.filled() == [(1, 101.0, 4.0), (2, 101.0, 1.0)]
    tape.book(100.0, 31.0, 101.0, 5.0)  # another row, the ask level unchanged: still taken
    venue.submit(_market_order(3, BUY, 1.0, tape.ts))
    venue.process_due(tape.ts, market, fills)
    assert len(tape.filled()) == 2
    tape.book(100.0, 31.0, 101.0, 6.0)  # the level changed: the book says what is there now
    venue.submit(_market_order(4, BUY, 2.0, tape.ts))
    venue.process_due(tape.ts, market, fills)
    assert tape.filled()[-1] == (4, 101.0, 2.0)


def test_a_cancel_travelling_with_the_latency_arrives_after_the_fill_and_the_fill_stands():
    venue = SimVenue(latency=FixedLatency(10, 0), queue="risk_averse", partial_fills=False)
    tape = Tape()
    tape.venue = venue
    tape.book(100.0, 3.0, 101.0, 5.0)
    order = OrderRequest(order_id=1, ts_decision=Nanos(tape.ts), side=BUY, qty=1.0,
                         order_type=OrderType.LIMIT, limit_px=100.0, post_only=True)  # fmt: skip
    venue.submit(order)
    venue.process_due(tape.ts + 10, tape.market, tape.fills)  # rests behind 3 at ts + 10
    tape.ts += 10
    venue.submit_cancel(CancelRequest(order_id=1, ts_decision=Nanos(tape.ts)))  # lands at +10
    tape.trade(100.0, 4.0, SELLER)  # before the cancel lands: filled
    venue.process_due(tape.ts + 10, tape.market, tape.fills)
    assert tape.filled() == [(1, 100.0, 1.0)]
    assert venue.notes[-1].kind == NoteKind.CANCEL_TOO_LATE
    assert venue.cancels_too_late == 1
