"""Portfolio accounting with hand-computed numbers: average cost, a flip through zero, fees,
equity, peak and drawdown."""

from __future__ import annotations

import math

import pytest

from simulator.errors import InvariantViolation
from simulator.portfolio import Portfolio
from simulator.types import Fill, Nanos, Side


def fill(side, qty, px, fee=0.0, order_id=1):
    return Fill(
        order_id=order_id,
        side=side,
        px=px,
        qty=qty,
        fee=fee,
        liquidity="taker",
        ts_event=Nanos(0),
        ts_recv=Nanos(0),
    )


def test_buy_then_sell_through_zero_realises_on_the_closed_part():
    book = Portfolio(initial_cash=10_000.0)

    book.on_fill(fill(Side.BUY, 2.0, 100.0, fee=0.2))
    assert (book.position, book.avg_px) == (2.0, 100.0)
    assert book.cash == pytest.approx(9_799.8)  # 10000 - 200 - 0.2
    assert book.mark(100.5) == pytest.approx(10_000.8)  # 9799.8 + 2 x 100.5
    assert book.unrealized_pnl == pytest.approx(1.0)  # 2 x (100.5 - 100)

    book.on_fill(fill(Side.SELL, 3.0, 101.0, fee=0.303))  # closes 2, opens 1 short at 101
    assert book.position == -1.0
    assert book.avg_px == 101.0
    assert book.realized_pnl == pytest.approx(2.0)  # 2 x (101 - 100)
    assert book.fees == pytest.approx(0.503)
    assert book.cash == pytest.approx(10_102.497)  # 9799.8 + 303 - 0.303

    assert book.mark(102.0) == pytest.approx(10_000.497)  # 10102.497 - 102
    assert book.unrealized_pnl == pytest.approx(-1.0)  # -1 x (102 - 101)
    # equity = initial + realized_pnl + unrealized_pnl - fees = 10000 + 2 - 1 - 0.503
    assert book.equity == pytest.approx(10_000.0 + 2.0 - 1.0 - 0.503)


def test_peak_and_max_drawdown_follow_the_marks():
    book = Portfolio(initial_cash=10_000.0)
    book.on_fill(fill(Side.BUY, 2.0, 100.0, fee=0.2))
    book.mark(100.5)  # 10000.8: new peak
    book.on_fill(fill(Side.SELL, 3.0, 101.0, fee=0.303))
    book.mark(102.0)  # 10000.497
    assert book.drawdown == pytest.approx(0.303)
    book.mark(103.0)  # 9999.497
    assert book.max_drawdown == pytest.approx(1.303)
    book.mark(100.0)  # 10002.497: new peak, drawdown back to 0, max kept
    assert book.peak_equity == pytest.approx(10_002.497)
    assert book.drawdown == 0.0
    assert book.max_drawdown == pytest.approx(1.303)


def test_closing_to_flat_resets_the_average_and_realises_everything():
    book = Portfolio(initial_cash=10_000.0)
    book.on_fill(fill(Side.BUY, 2.0, 100.0, fee=0.2))
    book.on_fill(fill(Side.SELL, 3.0, 101.0, fee=0.303))
    book.on_fill(fill(Side.BUY, 1.0, 100.0))  # short 1 @ 101 bought back at 100: +1
    assert (book.position, book.avg_px) == (0.0, 0.0)
    assert book.realized_pnl == pytest.approx(3.0)
    assert book.mark(50.0) == pytest.approx(10_000.0 + 3.0 - 0.503)  # flat: mid is irrelevant
    assert book.unrealized_pnl == 0.0
    assert (book.n_fills, book.volume) == (3, 6.0)


def test_adding_moves_the_average_entry_price():
    book = Portfolio()
    book.on_fill(fill(Side.SELL, 1.0, 100.0))
    book.on_fill(fill(Side.SELL, 3.0, 104.0))
    assert book.avg_px == pytest.approx(103.0)  # (100 + 312) / 4
    book.on_fill(fill(Side.BUY, 2.0, 101.0))  # closes 2 of a short at 103: +4
    assert book.position == -2.0
    assert book.avg_px == pytest.approx(103.0)
    assert book.realized_pnl == pytest.approx(4.0)


def test_nan_mid_keeps_the_last_mark():
    book = Portfolio(initial_cash=100.0)
    book.on_fill(fill(Side.BUY, 1.0, 10.0))
    assert book.mark(12.0) == pytest.approx(102.0)
    assert book.mark(math.nan) == pytest.approx(102.0)
    assert book.view().mid == 12.0


def test_view_snapshots_the_numbers():
    book = Portfolio(initial_cash=100.0)
    book.on_fill(fill(Side.BUY, 1.0, 10.0, fee=0.5))
    book.mark(11.0)
    view = book.view()
    assert (view.position, view.cash, view.avg_px) == (1.0, 89.5, 10.0)
    assert (view.unrealized_pnl, view.fees, view.equity) == (1.0, 0.5, 100.5)


@pytest.mark.parametrize(
    "bad",
    [
        fill(Side.BUY, 0.0, 100.0),
        fill(Side.BUY, -1.0, 100.0),
        fill(Side.BUY, 1.0, math.nan),
        fill(Side.BUY, 1.0, 100.0, fee=math.inf),
        fill(0, 1.0, 100.0),
    ],
)
def test_impossible_fills_break_an_invariant(bad):
    book = Portfolio()
    with pytest.raises(InvariantViolation, match=r"^fill 1: "):
        book.on_fill(bad)
    assert book.position == 0.0
