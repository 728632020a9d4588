"""Simulated venue: latency-shifted matching, L1 caps, L2 walks, resting limits, fees,
deterministic ordering and outcome counters. Numbers are hand-computed."""

from __future__ import annotations

import math
from array import array

import pytest

from simulator.errors import ConfigError, VenueError
from simulator.execution import FixedLatency, NoteKind, SimVenue, ZeroLatency
from simulator.market import MAX_TS, MarketState
from simulator.types import Fill, Nanos, OrderRequest, OrderType, Side


def quote(market, ts, bid, bid_sz, ask, ask_sz):
    """Apply an L1 quote the way the engine does (in place)."""
    market.ts_recv = ts
    market.bid_px, market.bid_sz, market.ask_px, market.ask_sz = bid, bid_sz, ask, ask_sz
    return market


def _column(value: float) -> memoryview:
    """A one-row float64 column, like the engine's memoryviews over a book batch."""
    return memoryview(array("d", [value]))


def book(ts, bids, asks):
    """A market with one book row: bids/asks are [(px, sz), ...], best first."""
    market = MarketState(levels=len(bids))
    market.book_columns = tuple(
        (_column(bid_px), _column(bid_sz), _column(ask_px), _column(ask_sz))
        for (bid_px, bid_sz), (ask_px, ask_sz) in zip(bids, asks, strict=True)
    )
    market.book_row = 0
    return quote(market, ts, *bids[0], *asks[0])


def order(order_id, side, qty, ts=0, limit_px=None):
    return OrderRequest(
        order_id=order_id,
        ts_decision=Nanos(ts),
        side=side,
        qty=qty,
        order_type=OrderType.MARKET if limit_px is None else OrderType.LIMIT,
        limit_px=limit_px,
    )


def counters_balance(venue):
    c = venue.counters()
    ended = c["filled"] + c["partially_filled"] + c["unfilled"] + c["cancelled"]
    return c["received"] == ended + c["open"]


def test_zero_latency_market_buy_fills_at_the_same_quotes_ask_capped_at_its_size():
    venue = SimVenue(latency=ZeroLatency(), taker_fee_bps=10.0)
    out: list[Fill] = []
    market = quote(MarketState(), 1_000, 100.00, 4.0, 100.02, 3.0)
    venue.submit(order(1, Side.BUY, 5.0, ts=1_000))
    assert venue.next_due() == 1_000
    assert venue.process_due(1_000, market, out) == 1
    (f,) = out
    assert (f.side, f.px, f.qty, f.liquidity) == (Side.BUY, 100.02, 3.0, "taker")
    assert f.fee == pytest.approx(3.0 * 100.02 * 10.0 / 1e4)  # 0.30006
    assert (f.ts_event, f.ts_recv) == (1_000, 1_000)
    assert venue.next_due() == MAX_TS
    (note,) = venue.notes
    assert (note.kind, note.filled_qty, note.unfilled_qty) == (NoteKind.PARTIAL, 3.0, 2.0)
    assert venue.partially_filled == 1


def test_zero_latency_market_sell_fills_at_bid():
    venue = SimVenue(latency=ZeroLatency())
    out: list[Fill] = []
    market = quote(MarketState(), 5, 99.0, 4.0, 99.5, 3.0)
    venue.submit(order(1, Side.SELL, 2.0, ts=5))
    venue.process_due(5, market, out)
    assert [(f.px, f.qty) for f in out] == [(99.0, 2.0)]
    assert venue.filled == 1


def test_fixed_latency_order_meets_the_market_as_it_is_at_arrival():
    venue = SimVenue(latency=FixedLatency(entry_ns=100, response_ns=50))
    out: list[Fill] = []
    market = quote(MarketState(), 1_000, 99.0, 5.0, 100.0, 5.0)
    venue.submit(order(1, Side.BUY, 1.0, ts=1_000))  # decided on the 100.0 ask
    assert venue.next_due() == 1_100
    assert venue.process_due(1_049, market, out) == 0  # engine: before the event at 1050
    quote(market, 1_050, 100.0, 5.0, 101.0, 5.0)  # the ask moves while the order travels
    assert venue.process_due(1_199, market, out) == 1  # engine: before the event at 1200
    (f,) = out
    assert f.px == 101.0
    assert (f.ts_event, f.ts_recv) == (1_100, 1_150)


def test_l2_market_buy_walks_three_levels():
    market = book(
        10,
        bids=[(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)],
        asks=[(100.0, 1.0), (101.0, 2.0), (102.0, 5.0)],
    )
    venue = SimVenue(latency=ZeroLatency(), taker_fee_bps=1.0, depth="l2")
    out: list[Fill] = []
    venue.submit(order(1, Side.BUY, 4.0, ts=10))
    assert venue.process_due(10, market, out) == 3
    assert [(f.px, f.qty) for f in out] == [(100.0, 1.0), (101.0, 2.0), (102.0, 1.0)]
    vwap = sum(f.px * f.qty for f in out) / sum(f.qty for f in out)
    assert vwap == pytest.approx(101.0)  # (100 + 202 + 102) / 4
    assert sum(f.fee for f in out) == pytest.approx(404.0 * 1.0 / 1e4)
    assert venue.filled == 1


def test_l2_market_sell_exhausting_the_book_is_partial():
    market = book(
        10,
        bids=[(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)],
        asks=[(100.0, 1.0), (101.0, 2.0), (102.0, 5.0)],
    )
    venue = SimVenue(latency=ZeroLatency(), depth="l2")
    out: list[Fill] = []
    venue.submit(order(1, Side.SELL, 5.0, ts=10))
    venue.process_due(10, market, out)
    assert [f.px for f in out] == [99.0, 98.0, 97.0]
    assert (venue.notes[0].kind, venue.notes[0].unfilled_qty) == (NoteKind.PARTIAL, 2.0)


def test_l2_limit_takes_up_to_its_price_then_rests():
    market = book(
        10,
        bids=[(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)],
        asks=[(100.0, 1.0), (101.0, 2.0), (102.0, 5.0)],
    )
    venue = SimVenue(latency=ZeroLatency(), depth="l2")
    out: list[Fill] = []
    venue.submit(order(1, Side.BUY, 4.0, ts=10, limit_px=101.0))
    venue.process_due(10, market, out)
    assert [(f.px, f.qty) for f in out] == [(100.0, 1.0), (101.0, 2.0)]
    assert venue.open_orders == 1


def test_limit_rests_then_fills_as_maker_at_its_price_when_crossed():
    venue = SimVenue(latency=FixedLatency(0, 7), taker_fee_bps=5.0, maker_fee_bps=-0.5)
    market = quote(MarketState(), 0, 99.0, 4.0, 100.0, 3.0)
    out: list[Fill] = []
    venue.submit(order(1, Side.BUY, 2.0, ts=0, limit_px=99.5))
    assert venue.process_due(0, market, out) == 0  # not marketable: rests
    assert venue.on_market(market, out) == 0
    quote(market, 10, 99.0, 4.0, 99.4, 1.0)  # the ask crosses the resting bid
    assert venue.on_market(market, out) == 1
    quote(market, 20, 99.0, 4.0, 99.5, 5.0)
    assert venue.on_market(market, out) == 1
    assert [(f.px, f.qty, f.liquidity, f.ts_event, f.ts_recv) for f in out] == [
        (99.5, 1.0, "maker", 10, 17),  # at the limit price, capped at the displayed 1.0
        (99.5, 1.0, "maker", 20, 27),
    ]
    assert out[0].fee == pytest.approx(99.5 * -0.5 / 1e4)  # a rebate
    assert (venue.filled, venue.open_orders) == (1, 0)


def test_resting_sell_fills_when_the_bid_reaches_it():
    venue = SimVenue(latency=ZeroLatency())
    out: list[Fill] = []
    market = quote(MarketState(), 0, 99.0, 4.0, 100.0, 3.0)
    venue.submit(order(1, Side.SELL, 1.0, ts=0, limit_px=100.5))
    venue.process_due(0, market, out)
    quote(market, 5, 100.4, 4.0, 100.6, 3.0)
    assert venue.on_market(market, out) == 0
    quote(market, 6, 100.6, 4.0, 100.7, 3.0)
    assert venue.on_market(market, out) == 1
    assert (out[0].px, out[0].side, out[0].liquidity) == (100.5, Side.SELL, "maker")


def test_marketable_limit_takes_then_does_not_reuse_the_same_quote():
    venue = SimVenue(latency=ZeroLatency())
    out: list[Fill] = []
    market = quote(MarketState(), 0, 99.0, 4.0, 100.0, 3.0)
    venue.submit(order(1, Side.BUY, 5.0, ts=0, limit_px=101.0))
    venue.process_due(0, market, out)
    assert [(f.px, f.qty, f.liquidity) for f in out] == [(100.0, 3.0, "taker")]
    assert venue.on_market(market, out) == 0  # e.g. a trade event: the quote is unchanged
    quote(market, 1, 99.0, 4.0, 100.5, 10.0)
    assert venue.on_market(market, out) == 1
    assert (out[-1].px, out[-1].qty, out[-1].liquidity) == (101.0, 2.0, "maker")


def test_two_orders_arriving_at_the_same_ts_are_handled_by_order_id():
    venue = SimVenue(latency=FixedLatency(100, 0))
    out: list[Fill] = []
    market = quote(MarketState(), 0, 99.0, 4.0, 100.0, 3.0)
    venue.submit(order(7, Side.BUY, 1.0, ts=10))
    venue.submit(order(3, Side.SELL, 1.0, ts=10))
    venue.submit(order(9, Side.BUY, 1.0, ts=5))  # arrives first despite the larger id
    venue.process_due(110, market, out)
    assert [(f.order_id, f.ts_event) for f in out] == [(9, 105), (3, 110), (7, 110)]


def test_outcome_counters_and_notes():
    venue = SimVenue(latency=FixedLatency(10, 0))
    out: list[Fill] = []
    market = quote(MarketState(), 0, math.nan, math.nan, 100.0, 3.0)
    venue.submit(order(1, Side.BUY, 5.0, ts=1))  # partial: the 2 that order 3 left of 3
    venue.submit(order(2, Side.SELL, 1.0, ts=0))  # no bid: unfilled
    venue.submit(order(3, Side.BUY, 1.0, ts=0))  # arrives first: filled
    venue.submit(order(4, Side.BUY, 1.0, ts=0, limit_px=90.0))  # rests, then cancelled
    venue.submit(order(5, Side.BUY, 1.0, ts=50))  # cancelled while in flight
    venue.process_due(11, market, out)
    assert venue.cancel(4) is True
    assert venue.cancel(5) is True
    assert venue.cancel(3) is False  # already filled: not an error
    assert venue.counters() == {
        "received": 5,
        "filled": 1,
        "partially_filled": 1,
        "unfilled": 1,
        "cancelled": 2,
        "rejected": 0,
        "open": 0,
        "replaced": 0,
        "cancels_too_late": 0,
    }
    assert counters_balance(venue)
    assert [(n.order_id, n.kind, n.filled_qty, n.unfilled_qty) for n in venue.notes] == [
        (2, NoteKind.NO_LIQUIDITY, 0.0, 1.0),
        (1, NoteKind.PARTIAL, 2.0, 3.0),
        (4, NoteKind.CANCELLED, 0.0, 1.0),
        (5, NoteKind.CANCELLED, 0.0, 1.0),
    ]
    assert venue.next_due() == MAX_TS


def test_malformed_orders_and_config_are_errors():
    venue = SimVenue(latency=ZeroLatency())
    venue.submit(order(1, Side.BUY, 1.0))
    with pytest.raises(VenueError, match=r"^order_id 1 was already submitted"):
        venue.submit(order(1, Side.BUY, 1.0))
    with pytest.raises(VenueError, match=r"^order 2: qty must be a finite number > 0"):
        venue.submit(order(2, Side.BUY, 0.0))
    with pytest.raises(VenueError, match=r"^order 3: a limit order needs a finite limit_px"):
        venue.submit(
            OrderRequest(
                order_id=3, ts_decision=Nanos(0), side=Side.BUY, qty=1.0, order_type=OrderType.LIMIT
            )
        )
    with pytest.raises(VenueError, match=r"^order 4: a market order must not carry limit_px"):
        venue.submit(
            OrderRequest(order_id=4, ts_decision=Nanos(0), side=Side.BUY, qty=1.0, limit_px=100.0)
        )
    with pytest.raises(ConfigError, match=r"^SimVenue: 'depth' must be 'l1' .* found 'L2'"):
        SimVenue(latency=ZeroLatency(), depth="L2")
    with pytest.raises(ConfigError, match=r"^SimVenue: 'maker_fee_bps'"):
        SimVenue(latency=ZeroLatency(), maker_fee_bps=math.nan)
    with pytest.raises(ConfigError, match=r"^FixedLatency: 'entry_ns' must be an integer"):
        FixedLatency(1.5, 0)  # type: ignore[arg-type]
