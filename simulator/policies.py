"""Decision stage: the built-in policies, from model outputs to order intents.

A policy (protocols.Policy) reads the model's output vector and a read-only view and returns
order intents. The two built-ins are target-position policies: a sizing rule gives the position
wanted after seeing p = outputs[0] (returning `position` unchanged means hold), and the policy
sends `target - position` as one market order when that difference is worth at least half a
lot and no order is in flight. `threshold` sizes by confidence (ThresholdSizer); `obi_rule` is
the long-only order-book-imbalance rule (LongOnlyRuleSizer).

The rules read no clock and keep no per-call state, so the same objects run in replay and live;
`decide` allocates nothing unless it sends (STYLE B0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from simulator.errors import ConfigError
from simulator.intents import NO_INTENTS, Intent, MarketOrder
from simulator.protocols import StrategyView
from simulator.types import Side

# Absorbs binary rounding before the floor, so 0.3 / 0.1 (= 2.9999999999999996) counts as 3 lots.
_LOT_EPSILON = 1e-9


def _require(ok: bool, owner: str, name: str, value: float, expected: str) -> None:
    """Raise ConfigError naming the field unless `ok` (comparisons are False for NaN)."""
    if not ok:
        raise ConfigError(f"{owner}: '{name}' must be {expected}; found {value!r}")


class ThresholdSizer:
    """Symmetric threshold filter plus confidence-scaled size.

    |p - 0.5| <= threshold: hold (return `position`). Otherwise the confidence
    c = (|p - 0.5| - threshold) / (0.5 - threshold), in (0, 1], gives
    size = max_position * c**exponent, rounded DOWN to a multiple of `lot`, with the sign of
    p - 0.5. Just past the threshold the size rounds to 0, i.e. a flat target: a weak signal
    closes the position rather than holding it. p outside [0, 1] counts as full confidence;
    a NaN p holds.
    """

    __slots__ = ("_inv_span", "exponent", "lot", "max_position", "threshold")

    def __init__(
        self, threshold: float, max_position: float, lot: float, exponent: float = 1.0
    ) -> None:
        owner = "ThresholdSizer"
        _require(0.0 <= threshold < 0.5, owner, "threshold", threshold, "in [0, 0.5)")
        _require(0.0 < max_position < math.inf, owner, "max_position", max_position, "> 0")
        _require(0.0 < lot < math.inf, owner, "lot", lot, "> 0")
        _require(0.0 < exponent < math.inf, owner, "exponent", exponent, "> 0")
        if lot > max_position:
            raise ConfigError(
                f"ThresholdSizer: 'lot' ({lot}) is larger than 'max_position' ({max_position}); "
                "every target would round to 0 — lower lot or raise max_position"
            )
        self.threshold = threshold
        self.max_position = max_position
        self.lot = lot
        self.exponent = exponent
        self._inv_span = 1.0 / (0.5 - threshold)  # precomputed: one multiply per call

    def target(self, p: float, position: float) -> float:
        edge = p - 0.5
        distance = edge if edge >= 0.0 else -edge
        if not distance > self.threshold:  # `not >` so that a NaN p also holds
            return position
        confidence = (distance - self.threshold) * self._inv_span
        if confidence > 1.0:
            confidence = 1.0
        scaled: float = confidence**self.exponent  # float ** float is typed Any (may be complex)
        lots = math.floor(self.max_position * scaled / self.lot + _LOT_EPSILON)
        size = lots * self.lot
        return size if edge > 0.0 else -size


class LongOnlyRuleSizer:
    """The order-book-imbalance rule as a sizer: buy `size` when flat, sell to flat when long.

    obi > threshold and flat -> target `size`; obi < -threshold and long -> target 0;
    otherwise hold. "Long" means position > size * 1e-9, so float residue from fills does not
    count as a position; a (never expected) short position is treated as flat and bought back.

    `target_obi` reads the imbalance itself (the rule runner's signal output): the float64
    comparison a user's own code makes. `target` reads p = (1 + obi) * 0.5, for a runner that
    gives only p: reading obi back as 2p - 1 is not exact (obi 0.6 from sizes 80/20 came back
    as 0.6000000000000001 and bought at threshold 0.6), so the thresholds are mapped into p
    with the runner's own arithmetic; p is monotone in obi, so p never passes unless obi does,
    but an obi up to one rounding step (2.2e-16) above the threshold does not pass in p
    (obi 0.6000000000000001, from sizes 0.8/0.2, does in float64).
    """

    __slots__ = ("_buy_above", "_long_above", "_sell_below", "size", "threshold")

    def __init__(self, threshold: float, size: float) -> None:
        owner = "LongOnlyRuleSizer"
        _require(0.0 <= threshold < 1.0, owner, "threshold", threshold, "in [0, 1)")
        _require(0.0 < size < math.inf, owner, "size", size, "> 0")
        self.threshold = threshold
        self.size = size
        self._long_above = size * _LOT_EPSILON
        self._buy_above = (1.0 + threshold) * 0.5  # the runner's p at obi == threshold
        self._sell_below = (1.0 + -threshold) * 0.5  # ... and at obi == -threshold

    def target(self, p: float, position: float) -> float:
        is_long = position > self._long_above
        if p > self._buy_above and not is_long:
            return self.size
        if p < self._sell_below and is_long:
            return 0.0
        return position

    def target_obi(self, obi: float, position: float) -> float:
        is_long = position > self._long_above
        if obi > self.threshold and not is_long:
            return self.size
        if obi < -self.threshold and is_long:
            return 0.0
        return position


class TargetPolicy:
    """A policy from a sizing rule `target(x, position) -> position wanted`, x = outputs[at]
    (p by default; see the module docstring). `target` holds the latest wanted position
    (recorded per decision)."""

    __slots__ = ("_array", "_at", "_half_lot", "_rule", "_view", "target")

    def __init__(self, rule: Callable[[float, float], float], lot: float, at: int = 0) -> None:
        _require(0.0 < lot < math.inf, type(self).__name__, "lot", lot, "> 0")
        self._rule = rule
        self._at = at
        self._half_lot = lot * 0.5
        self.target = math.nan
        # a memoryview of the runner's (reused) output vector reads a float ~3x faster than
        # numpy indexing; rebuilt only when another array comes (a breaker's fallback)
        self._array: npt.NDArray[np.float64] | None = None
        self._view: Any = memoryview(b"")

    def decide(self, outputs: npt.NDArray[np.float64], view: StrategyView) -> Sequence[Intent]:
        if outputs is not self._array:
            self._bind(outputs)
        position = view.position
        target = self.target = self._rule(self._view[0], position)
        delta = target - position
        half = self._half_lot
        if (delta >= half or -delta >= half) and not view.order_in_flight:
            return (MarketOrder(Side.BUY if delta > 0 else Side.SELL, abs(delta)),)
        return NO_INTENTS

    def _bind(self, outputs: npt.NDArray[np.float64]) -> None:
        """Read output `at` as item 0 of a memoryview (cold: once per output array)."""
        if outputs.shape[-1] <= self._at:
            raise ConfigError(
                f"{type(self).__name__} reads output {self._at} but the model gives "
                f"{outputs.shape[-1]} output(s)"
            )
        self._array, self._view = outputs, outputs.data[self._at :]

    def reset(self) -> None:
        self.target = math.nan


class ThresholdPolicy(TargetPolicy):
    """`threshold`: ThresholdSizer on P(up) = outputs[0], market orders to the target.

    `decide` inlines ThresholdSizer.target (same arithmetic, same bits; tests compare them):
    a second Python call per event would cost ~10% of a light pipeline's event (STYLE B0).

    With `max_notional` > 0 the size at full confidence is also at most max_notional / mid,
    rounded DOWN to the lot (quote-currency sizing: the same strategy trades whole shares of an
    equity and fractions of a coin); a NaN or non-positive mid then holds. Order quantities
    are rounded down to the lot.

    With `min_notional` > 0 (the instrument's minimum order value) an order worth less than it
    at the price it would take (qty x ask for a buy, qty x bid for a sell: what the MIN_NOTIONAL
    risk check reads) is not sent: the venue would refuse it, and chasing small target changes
    asked for one on almost every event. Each one not sent is counted in `n_under_minimum`.
    """

    copy_safe: ClassVar[bool] = True
    """`decide` writes nothing but this object's own attributes: a shallow copy decides
    without changing the policy (a live run does so while idle, to keep the code warm:
    live/session.py `SymbolRun.dry_pass`)."""

    __slots__ = (
        "_exponent",
        "_inv_span",
        "_lot",
        "_max_notional",
        "_max_position",
        "_min_notional",
        "_threshold",
        "n_under_minimum",
        "sizer",
    )

    def __init__(
        self,
        threshold: float,
        max_position: float,
        lot: float,
        exponent: float = 1.0,
        max_notional: float = 0.0,
        min_notional: float = 0.0,
    ) -> None:
        self.sizer = sizer = ThresholdSizer(threshold, max_position, lot, exponent)
        for name, value in (("max_notional", max_notional), ("min_notional", min_notional)):
            _require(0.0 <= value < math.inf, "ThresholdPolicy", name, value, ">= 0")
        super().__init__(sizer.target, lot)
        self._threshold, self._max_position = sizer.threshold, sizer.max_position
        self._lot, self._exponent, self._inv_span = sizer.lot, sizer.exponent, sizer._inv_span
        self._max_notional, self._min_notional = max_notional, min_notional
        self.n_under_minimum = 0

    def decide(self, outputs: npt.NDArray[np.float64], view: StrategyView) -> Sequence[Intent]:
        if outputs is not self._array:
            self._bind(outputs)
        position = view.position
        edge = self._view[0] - 0.5
        distance = edge if edge >= 0.0 else -edge
        threshold = self._threshold
        if not distance > threshold:  # `not >` so that a NaN p also holds
            self.target = position
            return NO_INTENTS
        confidence = (distance - threshold) * self._inv_span
        if confidence > 1.0:
            confidence = 1.0
        scaled: float = confidence**self._exponent
        lot = self._lot
        max_position = self._max_position
        if self._max_notional > 0.0:
            mid = view.mid
            if not mid > 0.0:  # no price to size by (NaN too): hold
                self.target = position
                return NO_INTENTS
            cap = math.floor(self._max_notional / mid / lot + _LOT_EPSILON) * lot
            if cap < max_position:
                max_position = cap
        size = math.floor(max_position * scaled / lot + _LOT_EPSILON) * lot
        target = self.target = size if edge > 0.0 else -size
        delta = target - position
        if view.order_in_flight:
            return NO_INTENTS
        qty = math.floor((delta if delta >= 0.0 else -delta) / lot + _LOT_EPSILON) * lot
        if qty > 0.0:
            if self._under_minimum(qty, delta > 0, view):  # a call only when sending
                return NO_INTENTS
            return (MarketOrder(Side.BUY if delta > 0 else Side.SELL, qty),)
        return NO_INTENTS

    def _under_minimum(self, qty: float, buy: bool, view: StrategyView) -> bool:
        """True (and counted) when the order is worth less than the minimum notional at the
        price it takes; `not >=`: a NaN price is under it too, as in the risk check."""
        minimum = self._min_notional
        if minimum > 0.0 and not qty * (view.ask_px if buy else view.bid_px) >= minimum:
            self.n_under_minimum += 1
            return True
        return False

    def reset(self) -> None:
        self.target = math.nan
        self.n_under_minimum = 0


class ObiRulePolicy(TargetPolicy):
    """`obi_rule`: LongOnlyRuleSizer on the imbalance at `obi_output` (the rule runner's
    signal: exact float64 comparisons), or, when None, on p = outputs[0] = (1 + obi) / 2.

    `decide` inlines the sizer's rule (same comparisons; tests compare them): a second Python
    call per event would cost ~10% of this light pipeline's event (STYLE B0).

    With `max_notional` > 0 a buy is also at most max_notional / mid, rounded DOWN to the lot
    (quote-currency sizing, as the threshold policy's); a NaN or non-positive mid then holds,
    and a cap under one lot buys nothing. The sell to flat is never capped.

    With `min_notional` > 0 (the instrument's minimum order value) a long position worth less
    than it counts as flat: the venue would refuse to sell it (MIN_NOTIONAL), so the rule
    buys on top of it rather than asking to sell it on every event.
    """

    copy_safe: ClassVar[bool] = True
    """`decide` writes nothing but this object's own attributes: a shallow copy decides
    without changing the policy (a live run does so while idle, to keep the code warm:
    live/session.py `SymbolRun.dry_pass`)."""

    __slots__ = ("_buy_above", "_long_above", "_lot", "_max_notional", "_min_notional",
                 "_sell_below", "_size", "sizer")  # fmt: skip

    def __init__(
        self,
        threshold: float,
        size: float,
        lot: float,
        *,
        obi_output: int | None = None,
        max_notional: float = 0.0,
        min_notional: float = 0.0,
    ) -> None:
        self.sizer = sizer = LongOnlyRuleSizer(threshold, size)
        for name, value in (("max_notional", max_notional), ("min_notional", min_notional)):
            _require(0.0 <= value < math.inf, "ObiRulePolicy", name, value, ">= 0")
        if obi_output is None:
            super().__init__(sizer.target, lot)
            self._buy_above, self._sell_below = sizer._buy_above, sizer._sell_below
        else:
            super().__init__(sizer.target_obi, lot, obi_output)
            self._buy_above, self._sell_below = sizer.threshold, -sizer.threshold
        self._long_above, self._size = sizer._long_above, sizer.size
        self._lot, self._max_notional, self._min_notional = lot, max_notional, min_notional

    def decide(self, outputs: npt.NDArray[np.float64], view: StrategyView) -> Sequence[Intent]:
        if outputs is not self._array:
            self._bind(outputs)
        position = view.position
        x = self._view[0]
        is_long = position > self._long_above
        if is_long and self._min_notional > 0.0 and position * view.mid < self._min_notional:
            is_long = False  # dust the venue would not take (a NaN mid: long, as before)
        if x > self._buy_above and not is_long:
            target = self._size
            if self._max_notional > 0.0:
                mid = view.mid
                if not mid > 0.0:  # no price to size by (NaN too): hold
                    self.target = position
                    return NO_INTENTS
                lot = self._lot
                cap = math.floor(self._max_notional / mid / lot + _LOT_EPSILON) * lot
                if cap < target:
                    target = cap
        elif x < self._sell_below and is_long:
            target = 0.0
        else:  # hold: the target is the position, nothing to send
            self.target = position
            return NO_INTENTS
        self.target = target
        delta = target - position
        half = self._half_lot
        if (delta >= half or -delta >= half) and not view.order_in_flight:
            return (MarketOrder(Side.BUY if delta > 0 else Side.SELL, abs(delta)),)
        return NO_INTENTS
