"""Order intents at the venue: limit orders resting and filling as maker, post-only refused
when it would cross, cancels and cancel-replaces travelling with the order latency, and a
cancel that arrives after the fill (the fill stands). Numbers are hand-computed."""

from __future__ import annotations

import math

from simulator.execution import FixedLatency, NoteKind, SimVenue
from simulator.intents import OrderStatus
from simulator.market import MarketState
from simulator.types import CancelRequest, Fill, Nanos, OrderRequest, OrderType, Side

ENTRY_NS = 100


def quote(market, ts, bid, bid_sz, ask, ask_sz):
    market.ts_recv = ts
    market.bid_px, market.bid_sz, market.ask_px, market.ask_sz = bid, bid_sz, ask, ask_sz
    return market


def limit(order_id, side, qty, px, ts=0, post_only=False):
    return OrderRequest(
        order_id=order_id,
        ts_decision=Nanos(ts),
        side=side,
        qty=qty,
        order_type=OrderType.LIMIT,
        limit_px=px,
        post_only=post_only,
    )


def cancel(order_id, ts, px=None, qty=None):
    return CancelRequest(order_id=order_id, ts_decision=Nanos(ts), new_px=px, new_qty=qty)


def venue() -> SimVenue:
    return SimVenue(latency=FixedLatency(ENTRY_NS, 0), maker_fee_bps=-1.0, taker_fee_bps=2.0)


def balanced(v: SimVenue) -> bool:
    c = v.counters()
    ended = c["filled"] + c["partially_filled"] + c["unfilled"] + c["cancelled"] + c["rejected"]
    return c["received"] == ended + c["open"]


def test_a_limit_buy_rests_then_fills_as_maker_at_its_price_when_the_ask_comes_down():
    out: list[Fill] = []
    v, market = venue(), quote(MarketState(), 0, 99.0, 5.0, 101.0, 5.0)
    v.submit(limit(1, Side.BUY, 3.0, 100.0, ts=0))
    assert [o.status for o in v.open_order_list()] == [OrderStatus.IN_FLIGHT]
    v.process_due(100, market, out)  # arrives: ask 101 > 100, nothing to take, rests
    assert out == []
    (rest,) = v.open_order_list()
    assert (rest.status, rest.remaining, rest.price) == (OrderStatus.RESTING, 3.0, 100.0)
    v.on_market(quote(market, 200, 99.0, 5.0, 99.5, 2.0), out)  # ask 99.5 <= 100: 2 fill
    v.on_market(quote(market, 300, 99.0, 5.0, 100.0, 4.0), out)  # the last 1
    assert [(f.px, f.qty, f.liquidity, f.ts_event) for f in out] == [
        (100.0, 2.0, "maker", 200),
        (100.0, 1.0, "maker", 300),
    ]
    assert out[0].fee == 100.0 * 2.0 * -1.0 / 1e4  # the maker rebate
    assert v.open_order_list() == []
    assert v.filled == 1
    assert balanced(v)


def test_a_post_only_order_that_would_cross_on_arrival_is_rejected_and_never_takes():
    out: list[Fill] = []
    v = venue()
    market = quote(MarketState(), 0, 99.0, 5.0, 100.0, 5.0)
    v.submit(limit(1, Side.BUY, 1.0, 100.0, post_only=True))  # would take the 100 ask
    v.submit(limit(2, Side.SELL, 1.0, 99.0, post_only=True))  # would hit the 99 bid
    v.submit(limit(3, Side.BUY, 1.0, 99.5, post_only=True))  # joins inside the spread
    v.process_due(100, market, out)
    assert out == []
    assert [(n.order_id, n.kind) for n in v.notes] == [
        (1, NoteKind.POST_ONLY_REJECTED),
        (2, NoteKind.POST_ONLY_REJECTED),
    ]
    (rest,) = v.open_order_list()
    assert (rest.order_id, rest.post_only, rest.status) == (3, True, OrderStatus.RESTING)
    assert v.rejected == 2
    assert balanced(v)


def test_the_same_limit_without_post_only_takes_as_taker():
    out: list[Fill] = []
    v = venue()
    v.submit(limit(1, Side.BUY, 1.0, 100.0))
    v.process_due(100, quote(MarketState(), 0, 99.0, 5.0, 100.0, 5.0), out)
    assert [(f.px, f.liquidity) for f in out] == [(100.0, "taker")]


def test_a_cancel_travels_with_the_order_latency_and_ends_the_resting_order():
    out: list[Fill] = []
    v, market = venue(), quote(MarketState(), 0, 99.0, 5.0, 101.0, 5.0)
    v.submit(limit(1, Side.BUY, 3.0, 100.0, ts=0))
    v.process_due(100, market, out)
    v.submit_cancel(cancel(1, ts=150))  # reaches the venue at 250
    assert v.due_ts == 250
    assert [o.status for o in v.open_order_list()] == [OrderStatus.CANCEL_PENDING]
    v.on_market(quote(market, 200, 99.0, 5.0, 100.0, 1.0), out)  # still working: 1 fills
    v.process_due(250, market, out)
    assert [(f.qty, f.ts_event) for f in out] == [(1.0, 200)]
    note = v.notes[-1]
    assert (note.kind, note.ts, note.filled_qty, note.unfilled_qty) == (
        NoteKind.CANCELLED,
        250,
        1.0,
        2.0,
    )
    v.on_market(quote(market, 300, 99.0, 5.0, 99.0, 9.0), out)  # gone: no more fills
    assert len(out) == 1
    assert v.cancelled == 1
    assert balanced(v)


def test_a_cancel_arriving_after_the_fill_is_too_late_and_the_fill_stands():
    out: list[Fill] = []
    v, market = venue(), quote(MarketState(), 0, 99.0, 5.0, 101.0, 5.0)
    v.submit(limit(1, Side.BUY, 2.0, 100.0, ts=0))
    v.process_due(100, market, out)
    v.submit_cancel(cancel(1, ts=150))  # sent before the fill, arrives at 250, after it
    v.on_market(quote(market, 200, 99.0, 5.0, 100.0, 9.0), out)  # fills all 2 at 200
    v.process_due(250, market, out)
    assert [(f.qty, f.px, f.ts_event) for f in out] == [(2.0, 100.0, 200)]
    assert (v.notes[-1].kind, v.notes[-1].ts) == (NoteKind.CANCEL_TOO_LATE, 250)
    assert (v.filled, v.cancelled, v.cancels_too_late) == (1, 0, 1)
    assert balanced(v)


def test_a_cancel_replace_moves_a_resting_order_keeping_its_id_and_side():
    out: list[Fill] = []
    v, market = venue(), quote(MarketState(), 0, 99.0, 5.0, 101.0, 5.0)
    v.submit(limit(7, Side.BUY, 3.0, 99.5, ts=0))
    v.process_due(100, market, out)
    v.submit_cancel(cancel(7, ts=200, px=99.8, qty=2.0))
    v.process_due(300, market, out)  # replaced at 300: 2 at 99.8, still below the ask
    (rest,) = v.open_order_list()
    assert (rest.order_id, rest.side, rest.price, rest.remaining) == (7, Side.BUY, 99.8, 2.0)
    v.submit_cancel(cancel(7, ts=400, px=101.0, qty=2.0))  # replaced through the ask: takes
    v.process_due(500, market, out)
    assert [(f.order_id, f.px, f.qty, f.liquidity) for f in out] == [(7, 101.0, 2.0, "taker")]
    assert v.open_order_list() == []
    assert (v.replaced, v.filled, v.received) == (2, 1, 1)
    assert balanced(v)


def test_open_orders_show_market_orders_in_flight_with_no_price():
    v = venue()
    v.submit(OrderRequest(order_id=1, ts_decision=Nanos(0), side=Side.SELL, qty=1.0))
    (o,) = v.open_order_list()
    assert (o.status, o.side, o.remaining) == (OrderStatus.IN_FLIGHT, Side.SELL, 1.0)
    assert math.isnan(o.price)


def test_fills_are_fill_values():
    out: list[Fill] = []
    v = venue()
    v.submit(limit(1, Side.SELL, 1.0, 99.0))
    v.process_due(100, quote(MarketState(), 0, 99.0, 1.0, 100.0, 1.0), out)
    assert (out[0].side, out[0].liquidity) == (Side.SELL, "taker")
