"""Risk stage: pre-trade checks, each approving an order or naming why not.

Every check is `check(order, price, state) -> reason` (0 = approved; protocols.RiskCheck).
`price` is the price the order is expected to trade at: the opposite best for a market order,
the limit price for a limit order. `state` is the engine's run state (any object with the
`RiskView` fields); checks read it and never write it, and read time only from `state.now`, so
they run the same in replay and live. Rejections are business outcomes: returned and counted,
never raised.
Checks fail closed: a NaN quantity, price or mid is rejected, not waved through.

Hot path (STYLE B0): one call per decided order, no allocation, no dict lookups; the rate
limit keeps a preallocated ring of send times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import ClassVar, Final

from simulator.errors import ConfigError
from simulator.protocols import RiskCheck, RiskView
from simulator.types import OrderRequest, RejectReason

_APPROVED: Final = RejectReason.APPROVED
_NEVER: Final = -(2**63)  # "no order sent yet" in the rate-limit ring


class RiskState:
    """A standalone `RiskView` (tests, tools); the engine may use its own state object."""

    __slots__ = (
        "day_start_equity",
        "equity",
        "feed_ok",
        "last_market_ts",
        "mid",
        "model_healthy",
        "now",
        "peak_equity",
        "position",
    )

    def __init__(
        self,
        *,
        now: int = 0,
        position: float = 0.0,
        mid: float = math.nan,
        equity: float = 0.0,
        peak_equity: float | None = None,
        day_start_equity: float | None = None,
        last_market_ts: int = 0,
        model_healthy: bool = True,
        feed_ok: bool = True,
    ) -> None:
        self.now = now
        self.position = position
        self.mid = mid
        self.equity = equity
        self.peak_equity = equity if peak_equity is None else peak_equity
        self.day_start_equity = equity if day_start_equity is None else day_start_equity
        self.last_market_ts = last_market_ts
        self.model_healthy = model_healthy
        self.feed_ok = feed_ok


def _positive(owner: str, name: str, value: float) -> None:
    if not 0.0 < value < math.inf:  # also rejects NaN
        raise ConfigError(f"{owner}: '{name}' must be a finite number > 0; found {value!r}")


def _positive_int(owner: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{owner}: '{name}' must be an integer > 0; found {value!r}")


def _breaches(before: float, after: float, limit: float) -> bool:
    """True when |after| is over `limit`, unless the order only shrinks the position.

    A pure reduction (same side, smaller) always passes, so a position that is over a limit
    (limit lowered, orders in flight) can still be unwound; a flip to an oversized position
    on the other side does not. NaN `after` counts as a breach.
    """
    abs_after = abs(after)
    if abs_after <= limit:
        return False
    return not (after * before >= 0.0 and abs_after < abs(before))


class MaxOrderSize:
    """Rejects an order whose quantity exceeds `max_qty` (equal passes)."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("max_qty",)

    def __init__(self, max_qty: float) -> None:
        _positive("MaxOrderSize", "max_qty", max_qty)
        self.max_qty = max_qty

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if order.qty <= self.max_qty:
            return _APPROVED
        return RejectReason.MAX_ORDER_SIZE


class MaxPosition:
    """Rejects an order that would leave |position| above `max_abs_position` (equal passes)."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("max_abs_position",)

    def __init__(self, max_abs_position: float) -> None:
        _positive("MaxPosition", "max_abs_position", max_abs_position)
        self.max_abs_position = max_abs_position

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        after = state.position + order.side * order.qty
        if _breaches(state.position, after, self.max_abs_position):
            return RejectReason.MAX_POSITION
        return _APPROVED


class MaxNotional:
    """Rejects an order whose resulting |position| x price exceeds `max_notional`."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("max_notional",)

    def __init__(self, max_notional: float) -> None:
        _positive("MaxNotional", "max_notional", max_notional)
        self.max_notional = max_notional

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        before = state.position * price
        after = (state.position + order.side * order.qty) * price
        if _breaches(before, after, self.max_notional):
            return RejectReason.MAX_NOTIONAL
        return _APPROVED


class MinNotional:
    """Rejects an order whose qty x price is under the instrument's `min_notional` (equal
    passes; a NaN product is rejected). Closing orders too: the venue refuses them alike."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("min_notional",)

    def __init__(self, min_notional: float) -> None:
        _positive("MinNotional", "min_notional", min_notional)
        self.min_notional = min_notional

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        px = price if order.limit_px is None else order.limit_px
        if order.qty * px >= self.min_notional:
            return _APPROVED
        return RejectReason.MIN_NOTIONAL


class PriceCollar:
    """Rejects an order priced more than `max_bps` away from mid (equal passes).

    The price is the limit price of a limit order, else the expected fill (`price`). With no
    mid (NaN) the collar cannot be evaluated and rejects.
    """

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("max_bps",)

    def __init__(self, max_bps: float) -> None:
        _positive("PriceCollar", "max_bps", max_bps)
        self.max_bps = max_bps

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        px = price if order.limit_px is None else order.limit_px
        mid = state.mid
        gap = px - mid if px >= mid else mid - px
        # |px - mid| / mid * 1e4 <= max_bps, multiplied out: exact at round-number boundaries
        if gap * 1e4 <= self.max_bps * mid:
            return _APPROVED
        return RejectReason.PRICE_COLLAR


class OrderRateLimit:
    """At most `max_orders` sent orders in any window of `window_ns` (an order sent at t
    counts for now in [t, t + window_ns)).

    Only sent orders count: the chain calls `on_sent` once every check approved. The ring
    holds the last `max_orders` send times; the slot about to be overwritten is the oldest.
    """

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("_next", "_sent", "max_orders", "window_ns")

    def __init__(self, max_orders: int, window_ns: int) -> None:
        _positive_int("OrderRateLimit", "max_orders", max_orders)
        _positive_int("OrderRateLimit", "window_ns", window_ns)
        self.max_orders = max_orders
        self.window_ns = window_ns
        self._sent = [_NEVER] * max_orders
        self._next = 0

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if state.now - self._sent[self._next] < self.window_ns:
            return RejectReason.ORDER_RATE
        return _APPROVED

    def on_sent(self, ts: int) -> None:
        self._sent[self._next] = ts
        self._next = (self._next + 1) % self.max_orders


class StaleData:
    """Rejects when the last market update is older than `max_age_ns` (equal passes)."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ("max_age_ns",)

    def __init__(self, max_age_ns: int) -> None:
        _positive_int("StaleData", "max_age_ns", max_age_ns)
        self.max_age_ns = max_age_ns

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if state.now - state.last_market_ts <= self.max_age_ns:
            return _APPROVED
        return RejectReason.STALE_DATA


class KillSwitch:
    """Trips when drawdown from peak >= `max_drawdown` or the day's loss >= `daily_loss`, and
    then rejects every order for the rest of the run (latched: no automatic re-arm).

    The day's loss counts from `state.day_start_equity`, which the engine resets at the venue's
    midnight in the session's time zone (a 24/7 crypto session spans several days).

    It rejects risk-reducing orders too: flattening after a trip is an operator decision.
    `update(state)` lets the engine evaluate it on marks, not only when an order is checked.
    """

    __slots__ = ("cause", "daily_loss", "max_drawdown", "tripped_at")

    def __init__(self, max_drawdown: float = math.inf, daily_loss: float = math.inf) -> None:
        for name, value in (("max_drawdown", max_drawdown), ("daily_loss", daily_loss)):
            if not value > 0.0:  # inf allowed: that limit is off
                raise ConfigError(f"KillSwitch: '{name}' must be > 0 (or inf); found {value!r}")
        self.max_drawdown = max_drawdown
        self.daily_loss = daily_loss
        self.tripped_at: int | None = None
        self.cause = ""  # "max_drawdown" or "daily_loss" once tripped

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    def update(self, state: RiskView) -> bool:
        """Evaluate the limits now; return True when tripped (now or earlier)."""
        if self.tripped_at is not None:
            return True
        if state.peak_equity - state.equity >= self.max_drawdown:
            self.cause = "max_drawdown"
        elif state.day_start_equity - state.equity >= self.daily_loss:
            self.cause = "daily_loss"
        else:
            return False
        self.tripped_at = state.now
        return True

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if self.update(state):
            return RejectReason.KILL_SWITCH
        return _APPROVED


class ModelHealth:
    """Rejects while the model is unhealthy (e.g. the circuit breaker is open)."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ()

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if state.model_healthy:
            return _APPROVED
        return RejectReason.MODEL_HEALTH


class FeedHealth:
    """Rejects while the live feed is down: disconnected, or the local book is resyncing
    after a gap (the status events that say so are recorded, so replays reject alike)."""

    pure: ClassVar[bool] = True  # check() only reads (RiskChain.dry_check)
    __slots__ = ()

    def check(self, order: OrderRequest, price: float, state: RiskView) -> RejectReason:
        if state.feed_ok:
            return _APPROVED
        return RejectReason.FEED_DOWN


USER_REASON_BASE: Final = 64
"""Codes of user reasons start here (built-in RejectReason codes stay below; int8 columns)."""


class RiskChain:
    """Runs checks in order and returns the first rejection's code (or 0, approved).

    A check's non-zero answer (compared by value: a plain 0 approves) is a built-in
    RejectReason, or a reason of a user check: a member of the check's own IntEnum, recorded
    by its name, or a plain int, recorded as `<CheckClass>_<value>`. User reasons get codes
    from USER_REASON_BASE up, in the order they first occur. `counts[code]` counts outcomes per
    code (APPROVED included). Call `on_sent(ts)` after an approved order was actually sent:
    only then does it count against the rate limit.
    """

    __slots__ = ("_checks", "_names", "_on_sent", "_pure", "_user_codes", "counts")

    def __init__(self, checks: Sequence[RiskCheck]) -> None:
        self._checks = tuple(checks)
        # checks that track sent orders (the rate limit), found once so that the hot path
        # does no getattr per order
        found = (getattr(c, "on_sent", None) for c in self._checks)
        self._on_sent: tuple[Callable[[int], None], ...] = tuple(f for f in found if f is not None)
        # checks whose class declares (not inherits) that check() only reads
        self._pure = tuple(c for c in self._checks if vars(type(c)).get("pure") is True)
        self.counts: dict[int, int] = dict.fromkeys(map(int, RejectReason), 0)
        self._names: dict[int, str] = {int(r): r.name for r in RejectReason}
        self._user_codes: dict[tuple[int, int], int] = {}  # (check index, its value) -> code

    @property
    def checks(self) -> tuple[RiskCheck, ...]:
        return self._checks

    def check(self, order: OrderRequest, price: float, state: RiskView) -> int:
        for index, check in enumerate(self._checks):
            reason = check.check(order, price, state)
            if reason != 0:
                code = int(reason) if type(reason) is RejectReason else self._user(index, reason)
                self.counts[code] += 1
                return code
        self.counts[0] += 1
        return 0

    def dry_check(self, order: OrderRequest, price: float, state: RiskView) -> None:
        """The checks whose class declares `pure` (check() only reads) on `order`, answers
        unused, nothing counted; the others (the kill switch latches, a user check may keep
        state) are skipped: the live keep-warm pass (`LiveEngine.dry_act`)."""
        for check in self._pure:
            check.check(order, price, state)

    def _user(self, index: int, reason: int) -> int:
        """The code of a user check's reason, named on first sight (cold: rejections only)."""
        key = (index, int(reason))
        code = self._user_codes.get(key)
        if code is None:
            code = USER_REASON_BASE + len(self._user_codes)
            if code > 127:
                raise ConfigError("risk: more than 64 distinct user rejection reasons")
            name = reason.name if isinstance(reason, Enum) else None
            check = type(self._checks[index]).__name__
            self._names[code] = name or f"{check}_{int(reason)}"
            self._user_codes[key] = code
            self.counts[code] = 0
        return code

    def reason_name(self, code: int) -> str:
        """The name of a reason code returned by check()."""
        return self._names[code]

    def on_sent(self, ts: int) -> None:
        for on_sent in self._on_sent:
            on_sent(ts)

    def rejections(self) -> dict[str, int]:
        """Rejection counts by reason name, for run summaries (cold)."""
        return {self._names[code]: n for code, n in self.counts.items() if code != 0}
