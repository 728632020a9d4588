"""obi_maker's decision policy, written with the plug-in API like a user's own.

Quotes both sides at the best with post-only limit orders worth `notional` in quote currency:
notional / mid rounded down to the instrument's lot (`view.instrument.round_qty`, the built-in
policies' rounding), so the same strategy quotes whole GOOG shares and fractions of a coin.
The model's output 0 is P(up) (the obi rule runner reports (1 + obi) / 2): when it leans up by
more than `withdraw`, the ask is withdrawn (no selling into a rising book); when it leans down,
the bid. Inventory limit, in quote currency too: no bid that could take position x mid above
`max_inventory_notional`, no ask below -`max_inventory_notional`; no quote while the notional
buys less than one lot or there is no mid. A quote whose price is no longer the best is moved
with a cancel-replace (it keeps its id and joins the back of the new level's queue).

Decisions are cheap when nothing changed: the wanted quotes (prices, or NaN for none) and the
position are compared with the last decision's, and the open orders are read only when they
differ or an order of ours is still on its way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from simulator.intents import (
    NO_INTENTS,
    Cancel,
    CancelReplace,
    Intent,
    LimitOrder,
    OpenOrder,
    OrderStatus,
)
from simulator.protocols import StrategyView
from simulator.types import Side


class ObiMaker:
    """Two-sided post-only quotes at the best, withdrawn against the signal (see module)."""

    __slots__ = (
        "_array",
        "_last_ask",
        "_last_bid",
        "_last_position",
        "_limit",
        "_mid",
        "_out",
        "_size",
        "max_inventory_notional",
        "notional",
        "withdraw",
    )

    def __init__(
        self,
        notional: float = 1000.0,
        withdraw: float = 0.3,  # as strategies/obi_maker.toml
        max_inventory_notional: float = 3000.0,
    ) -> None:
        if not 0.0 < notional < math.inf:
            raise ValueError(f"notional must be a finite number > 0; found {notional!r}")
        if not 0.0 <= withdraw < 0.5:
            raise ValueError(f"withdraw must be in [0, 0.5); found {withdraw!r}")
        if not notional <= max_inventory_notional < math.inf:
            raise ValueError(
                "max_inventory_notional must be >= notional and finite; "
                f"found {max_inventory_notional!r}"
            )
        self.notional = notional
        self.withdraw = withdraw
        self.max_inventory_notional = max_inventory_notional
        # the runner's output vector is reused: read it through a memoryview (faster than
        # numpy indexing), rebuilt only when another array comes
        self._array: npt.NDArray[np.float64] | None = None
        self._out: memoryview = memoryview(b"")
        self.reset()

    def reset(self) -> None:
        self._last_bid = self._last_ask = self._last_position = -1.0  # matches no decision
        self._mid = self._size = self._limit = math.nan  # sized on the first decision

    def decide(self, outputs: npt.NDArray[np.float64], view: StrategyView) -> Sequence[Intent]:
        market = view.market
        bid, ask = market.bid_px, market.ask_px
        if not (bid == bid and ask == ask):  # one side empty: keep what rests
            return NO_INTENTS
        mid = (bid + ask) * 0.5  # the engine's mid, without a property call
        if not mid > 0.0:
            return NO_INTENTS
        if outputs is not self._array:
            self._array, self._out = outputs, outputs.data
        if mid != self._mid:  # sized again only when the mid moved (most events keep it)
            self._mid = mid
            self._size = view.instrument.round_qty(self.notional / mid)
            # the inventory limit as a position: |position| x mid <= max_inventory_notional
            self._limit = self.max_inventory_notional / mid
        p, position, size, limit = self._out[0], view.position, self._size, self._limit
        quoting = size > 0.0  # a notional under one lot quotes nothing
        # the wanted quote prices, 0.0 for none (prices are > 0): plain == compares them
        want_bid = bid if quoting and p >= 0.5 - self.withdraw and position + size <= limit else 0.0
        want_ask = (
            ask if quoting and p <= 0.5 + self.withdraw and position - size >= -limit else 0.0
        )
        if (
            want_bid == self._last_bid
            and want_ask == self._last_ask
            and position == self._last_position
        ) or view.order_in_flight:  # nothing new, or wait for the venue's answer
            return NO_INTENTS
        self._last_bid, self._last_ask, self._last_position = want_bid, want_ask, position
        orders = view.open_orders
        intents = _quote(orders, Side.BUY, want_bid, size) + _quote(
            orders, Side.SELL, want_ask, size
        )
        return intents or NO_INTENTS


def _quote(
    orders: Sequence[OpenOrder], side: Side, price: float, size: float
) -> tuple[Intent, ...]:
    """Intents that leave one quote of `size` at `price` on `side` (none when price is 0)."""
    mine = [o for o in orders if o.side == side and o.status != OrderStatus.CANCEL_PENDING]
    if not mine:
        return (LimitOrder(side, size, price, post_only=True),) if price > 0.0 else ()
    first, extra = mine[0], mine[1:]
    intents: list[Intent] = [Cancel(o.order_id) for o in extra]
    if price <= 0.0:
        intents.append(Cancel(first.order_id))
    elif first.price != price and first.status == OrderStatus.RESTING:
        intents.append(CancelReplace(first.order_id, price, size))
    return tuple(intents)
