"""The example's policy: a maker that joins the best bid on a strong P(up), cancels when the
signal fades or the bid moves away, and exits a long as maker at the best ask (following the
ask with cancel-replace), or at market when P(down) is strong (a stop). It buys `notional` in
quote currency: notional / mid rounded down to the instrument's lot (`view.instrument`), so
the same file trades whole shares and fractions of a coin.

It is a demonstration, not a recommendation: a cancel can arrive after the fill it meant to
prevent, and the stop decides on the position it sees, so the run can show what such races do
(an exit filled just before the stop sold again leaves a small short)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.intents import (
    NO_INTENTS,
    Cancel,
    CancelReplace,
    Intent,
    LimitOrder,
    MarketOrder,
    OpenOrder,
    OrderStatus,
)
from simulator.protocols import StrategyView
from simulator.types import Side


class JoinTheBest:
    """outputs = [p_up, p_down] (the model's two outputs, named in [model] outputs)."""

    def __init__(
        self, enter: float = 0.56, leave: float = 0.52, stop: float = 0.6, notional: float = 1000.0
    ) -> None:
        if not 0.5 <= leave <= enter < 1.0:
            raise ValueError(f"expected 0.5 <= leave <= enter < 1; found {leave}, {enter}")
        if not notional > 0.0:
            raise ValueError(f"notional must be > 0; found {notional}")
        self.enter, self.leave, self.stop, self.notional = enter, leave, stop, notional
        self.working = False  # an order of ours may be open: only then read open_orders (cold)

    def decide(self, outputs: np.ndarray, view: StrategyView) -> Sequence[Intent]:
        if view.order_in_flight:
            return NO_INTENTS
        if self.working:
            orders = view.open_orders
            if orders:
                return self.manage(orders[0], outputs, view)
            self.working = False  # filled or cancelled
        p_up, p_down = outputs[0], outputs[1]
        if view.position <= 0.0:
            mid = view.mid
            if p_up > self.enter and mid > 0.0:  # `>`: no mid (NaN), nothing to size by
                # in quote currency: notional / mid in whole lots (under one lot: no order)
                qty = view.instrument.round_qty(self.notional / mid)
                if qty > 0.0:
                    self.working = True
                    return (LimitOrder(Side.BUY, qty, view.bid_px, post_only=True),)
            return NO_INTENTS
        if p_down > self.stop:
            return (MarketOrder(Side.SELL, view.position),)
        self.working = True
        return (LimitOrder(Side.SELL, view.position, view.ask_px, post_only=True),)

    def manage(self, order: OpenOrder, outputs: np.ndarray, view: StrategyView) -> Sequence[Intent]:
        """One working order: keep it, cancel it, or move it to the new best."""
        if order.status != OrderStatus.RESTING:
            return NO_INTENTS
        if order.side == Side.BUY:
            if outputs[0] < self.leave or order.price < view.bid_px:
                return (Cancel(order.order_id),)
            return NO_INTENTS
        if outputs[1] > self.stop:
            return (Cancel(order.order_id),)  # then the stop sells at market
        if order.price > view.ask_px:
            return (CancelReplace(order.order_id, view.ask_px, order.remaining),)
        return NO_INTENTS

    def reset(self) -> None:
        self.working = False
