"""Portfolio accounting identities over random fill sequences (hypothesis).

After any fills and a mark:
  equity == initial_cash + realized_pnl + unrealized_pnl - fees  (cash + position x mid)
  position == the running sum of signed fill quantities
and, for a sequence that ends flat, realized PnL is exactly the trades' net cash flow
(an independent check of the average-cost bookkeeping, whatever the path).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.portfolio import Portfolio
from simulator.types import Fill, Nanos, Side

pytestmark = pytest.mark.property

# prices on a cent grid, quantities on a 0.5 lot grid, fees in [-0.5, 2] (rebates included)
fills = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 40).map(lambda n: n * 0.5),
        st.integers(5_000, 15_000).map(lambda c: c / 100),
        st.integers(-50, 200).map(lambda c: c / 100),
    ),
    max_size=40,
)
mids = st.integers(5_000, 15_000).map(lambda c: c / 100)


def apply(book: Portfolio, sequence) -> float:
    position = 0.0
    for side, qty, px, fee in sequence:
        book.on_fill(
            Fill(
                order_id=1,
                side=side,
                px=px,
                qty=qty,
                fee=fee,
                liquidity="taker",
                ts_event=Nanos(0),
                ts_recv=Nanos(0),
            )
        )
        position += side * qty
    return position


@given(sequence=fills, mid=mids, initial=st.sampled_from([0.0, 10_000.0]))
def test_equity_is_initial_plus_realized_plus_unrealized_minus_fees(sequence, mid, initial):
    book = Portfolio(initial_cash=initial)
    position = apply(book, sequence)
    equity = book.mark(mid)
    assert book.position == position
    assert equity == book.cash + book.position * mid
    expected = initial + book.realized_pnl + book.unrealized_pnl - book.fees
    assert math.isclose(equity, expected, rel_tol=1e-12, abs_tol=1e-6)
    assert book.fees == pytest.approx(sum(fee for *_, fee in sequence), abs=1e-9)
    assert book.max_drawdown >= 0.0
    assert book.peak_equity >= book.equity


@given(sequence=fills)
def test_a_round_trip_realises_exactly_its_net_cash_flow(sequence):
    book = Portfolio()
    position = apply(book, sequence)
    if position != 0.0:  # close it at a fixed price so the sequence ends flat
        closing = Side.SELL if position > 0 else Side.BUY
        sequence = [*sequence, (closing, abs(position), 100.0, 0.0)]
        book = Portfolio()
        apply(book, sequence)
    cash_flow = -sum(side * qty * px for side, qty, px, _ in sequence)
    assert book.position == 0.0
    assert book.avg_px == 0.0
    assert math.isclose(book.realized_pnl, cash_flow, rel_tol=1e-12, abs_tol=1e-6)
