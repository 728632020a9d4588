"""Portfolio: position, cash and PnL of one instrument, marked to mid.

Average-cost accounting (no FIFO lots). A fill that adds to the position moves the average
entry price; a fill against the position realises (px - avg_px) x closed qty x sign(position);
a fill that flips the position through zero closes the old side at the fill price and opens
the rest at that same price. Fees are kept apart from realized PnL.

Identity (checked by tests/property/test_accounting_property.py), after any fills and a mark:

    equity = cash + position x mid
           = initial_cash + realized_pnl + unrealized_pnl - fees
    unrealized_pnl = position x (mid - avg_px)

`position` is the plain running sum of signed fill quantities (no snapping to zero), so it
equals the sum the engine or a test computes. `mark` is per event and allocates nothing but
floats; `on_fill` is per fill (rare).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.errors import InvariantViolation
from simulator.types import Fill


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioView:
    """A snapshot of the portfolio's numbers (cold: summaries, reports, risk set-up)."""

    position: float
    cash: float
    avg_px: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    equity: float
    peak_equity: float
    drawdown: float
    max_drawdown: float
    mid: float
    n_fills: int
    volume: float


class Portfolio:
    """Position, cash, realized/unrealized PnL and fees; equity, peak and drawdown per mark."""

    __slots__ = (
        "avg_px",
        "cash",
        "equity",
        "fees",
        "initial_cash",
        "max_drawdown",
        "mid",
        "n_fills",
        "peak_equity",
        "position",
        "realized_pnl",
        "volume",
    )

    def __init__(self, initial_cash: float = 0.0) -> None:
        if not math.isfinite(initial_cash):
            raise InvariantViolation(
                f"Portfolio: initial_cash must be finite; found {initial_cash}"
            )
        self.initial_cash = initial_cash
        self.cash = initial_cash
        self.position = 0.0
        self.avg_px = 0.0  # average entry price of the open position; 0.0 when flat
        self.realized_pnl = 0.0
        self.fees = 0.0
        self.volume = 0.0  # traded quantity, both sides
        self.n_fills = 0
        self.mid = math.nan  # last mid marked
        self.equity = initial_cash
        self.peak_equity = initial_cash
        self.max_drawdown = 0.0  # largest peak_equity - equity seen at a mark (>= 0)

    @property
    def unrealized_pnl(self) -> float:
        """position x (mid - avg_px) at the last mark (0.0 when flat or never marked)."""
        if self.position == 0.0 or self.mid != self.mid:
            return 0.0
        return self.position * (self.mid - self.avg_px)

    @property
    def drawdown(self) -> float:
        return self.peak_equity - self.equity

    def on_fill(self, fill: Fill) -> None:
        """Apply one fill; raise InvariantViolation for a fill no venue may produce."""
        side, qty, px, fee = fill.side, fill.qty, fill.px, fill.fee
        if side not in (1, -1):
            raise InvariantViolation(f"fill {fill.order_id}: side must be +1 or -1; found {side}")
        if not (0.0 < qty < math.inf and 0.0 < px < math.inf and math.isfinite(fee)):
            raise InvariantViolation(
                f"fill {fill.order_id}: qty and px must be finite and > 0 and fee finite; "
                f"found qty={qty}, px={px}, fee={fee}"
            )
        position = self.position
        signed = side * qty
        if position == 0.0 or (position > 0.0) == (side > 0):
            # opening or adding: the average entry price is the size-weighted mean
            new_position = position + signed
            self.avg_px = (abs(position) * self.avg_px + qty * px) / abs(new_position)
        else:
            closed = min(qty, abs(position))
            self.realized_pnl += closed * (px - self.avg_px) * (1.0 if position > 0.0 else -1.0)
            new_position = position + signed
            if qty > closed:  # flipped through zero: the remainder opens at the fill price
                self.avg_px = px
            elif new_position == 0.0:
                self.avg_px = 0.0
        self.position = new_position
        self.cash -= signed * px + fee
        self.fees += fee
        self.volume += qty
        self.n_fills += 1

    def mark(self, mid: float) -> float:
        """Mark to `mid`: update equity, peak and max drawdown; return equity.

        A NaN mid (no two-sided quote) leaves the last mark in place.
        """
        if mid != mid:
            return self.equity
        self.mid = mid
        equity = self.cash + self.position * mid
        self.equity = equity
        if equity > self.peak_equity:
            self.peak_equity = equity
        elif self.peak_equity - equity > self.max_drawdown:
            self.max_drawdown = self.peak_equity - equity
        return equity

    def view(self) -> PortfolioView:
        return PortfolioView(
            position=self.position,
            cash=self.cash,
            avg_px=self.avg_px,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            fees=self.fees,
            equity=self.equity,
            peak_equity=self.peak_equity,
            drawdown=self.drawdown,
            max_drawdown=self.max_drawdown,
            mid=self.mid,
            n_fills=self.n_fills,
            volume=self.volume,
        )
