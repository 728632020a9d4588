"""Queue position of a resting limit order: how much is queued ahead of it at its price.

The models follow hftbacktest (the reference users compare against), read from its source:
`queue.rs` = hftbacktest/src/backtest/models/queue.rs, `nopfx.rs` =
hftbacktest/src/backtest/proc/nopartialfillexchange.rs (line numbers of the 2.4.4 tag).

- `risk_averse` (RiskAdverseQueueModel, queue.rs:67-95):
  * on acceptance, ahead = the quantity displayed at the order's price on its own side, or 0
    when there is no level there (an order better than the best starts at the front);
  * a book change at our price: ahead = min(ahead, new quantity) — a decrease is a cancel
    *behind* us unless the level shrinks below ahead; an increase never pushes us back; a
    deleted level puts us at the front;
  * a trade at exactly our price: ahead -= trade size; the order is executable once ahead is
    negative (a trade equal to ahead leaves us at the front, unfilled).
- `prob_power` / `prob_log` (ProbQueueModel, queue.rs:160-217): trades as above, and a level
  decrease not explained by the trades counted since the last book change (chg = prev - new -
  traded) advances ahead by the probability that the cancelled quantity was in front of us:
  with front = ahead and back = prev - front, p = f(back) / (f(back) + f(front)), and
  ahead' = min(front - (1 - p) * chg + min(back - p * chg, 0), new). `prob_power` uses
  f(x) = x**n (PowerProbQueueFunc), `prob_log` f(x) = log(1 + x) (LogProbQueueFunc). An
  increase of the level only caps ahead at the new quantity. These are expectations, not
  draws: nothing random, so the same tape always gives the same fills.
- `none`: no queue at all; a resting order fills when the opposite best reaches its price
  (the venue's touch rule).

How much is executable: floor(-ahead / lot) lots once round(ahead / lot) < 0 (queue.rs
`is_filled`). With partial fills off (hftbacktest's NoPartialFillExchange) the whole order
fills as soon as round(ahead / lot) < 0 (`passed`), even when that is less than one whole lot
(ahead -0.5 lot fills, -0.4 does not; so does a float crumb like ahead / lot = -0.99999...):
what hftbacktest 2.4.4 does, measured by tests/crosscheck against the real package.

`l3_fifo` needs no estimate (order-level data gives the exact place): see `l3.py`.
"""

from __future__ import annotations

import math
from typing import Protocol

from simulator.errors import ConfigError
from simulator.types import QUEUE_MODELS


class QueuePos:
    """One resting order's queue estimate (mutable, one per order: allocated at acceptance)."""

    __slots__ = ("ahead", "level_qty", "traded")

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead  # quantity estimated in front of us at our price
        self.level_qty = ahead  # the level's displayed quantity when last seen
        self.traded = 0.0  # trade quantity at our price since the last book change

    def __repr__(self) -> str:
        return f"QueuePos(ahead={self.ahead!r}, level_qty={self.level_qty!r})"


class QueueModel(Protocol):
    """Advances a resting order's QueuePos on trades and book changes at its price."""

    name: str

    def on_trade(self, pos: QueuePos, qty: float) -> None: ...
    def on_depth(self, pos: QueuePos, new_qty: float) -> None: ...


class RiskAverseQueue:
    """hftbacktest's RiskAdverseQueueModel: only trades advance us; cancels are behind us."""

    __slots__ = ()
    name = "risk_averse"

    def on_trade(self, pos: QueuePos, qty: float) -> None:
        pos.ahead -= qty

    def on_depth(self, pos: QueuePos, new_qty: float) -> None:
        pos.level_qty = new_qty
        if new_qty < pos.ahead:
            pos.ahead = new_qty


class ProbQueue:
    """hftbacktest's ProbQueueModel with a power or a log weighting (see the module docstring)."""

    __slots__ = ("_power", "name")

    def __init__(self, name: str, power: float = 3.0) -> None:
        if name not in ("prob_power", "prob_log"):
            raise ConfigError(f"ProbQueue: unknown model {name!r}")
        if name == "prob_power" and not 0.0 < power < math.inf:
            raise ConfigError(f"venue.queue_power must be a finite number > 0; found {power!r}")
        self.name = name
        self._power = power

    def probability(self, front: float, back: float) -> float:
        """The chance that a cancel came from behind us, given front and back quantities.

        IEEE arithmetic as in the reference (Rust f64): front may be negative after trades,
        where a log or a fractional power is NaN, and the estimate then falls back to the
        level's new quantity (see on_depth)."""
        if self.name == "prob_power":
            f_back, f_front = _powf(back, self._power), _powf(front, self._power)
        else:
            f_back, f_front = _ln_1p(back), _ln_1p(front)
        prob = _divide(f_back, f_back + f_front)
        return 1.0 if math.isinf(prob) else prob

    def on_trade(self, pos: QueuePos, qty: float) -> None:
        pos.ahead -= qty
        pos.traded += qty

    def on_depth(self, pos: QueuePos, new_qty: float) -> None:
        prev = pos.level_qty
        pos.level_qty = new_qty
        change = prev - new_qty - pos.traded
        pos.traded = 0.0  # the trades are now reflected in the level's quantity
        if change < 0.0:  # an increase: front unchanged, capped by the level
            if new_qty < pos.ahead:
                pos.ahead = new_qty
            return
        front = pos.ahead
        back = prev - front
        prob = self.probability(front, back)
        if prob != prob:  # the reference's estimate is NaN, and NaN.min(new) is new
            pos.ahead = new_qty
            return
        behind_left = back - prob * change
        estimate = front - (1.0 - prob) * change + (behind_left if behind_left < 0.0 else 0.0)
        pos.ahead = estimate if estimate < new_qty else new_qty


def _powf(x: float, n: float) -> float:
    """Rust's f64::powf: a negative base with a fractional exponent is NaN (not complex)."""
    if x >= 0.0 or n == math.floor(n):
        return float(x**n)
    return math.nan


def _ln_1p(x: float) -> float:
    """Rust's (1.0 + x).ln(): -inf at -1, NaN below."""
    if x > -1.0:
        return math.log1p(x)
    return -math.inf if x == -1.0 else math.nan


def _divide(a: float, b: float) -> float:
    """IEEE division: x/0 is +-inf, 0/0 and NaN/0 are NaN (Python would raise)."""
    if b != 0.0:
        return a / b
    if a == 0.0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def executable(pos: QueuePos, lot: float) -> float:
    """Quantity the queue lets execute now (0 while anything is still ahead): queue.rs is_filled."""
    if _round_half_away(pos.ahead / lot) < 0.0:
        return math.floor(-pos.ahead / lot) * lot
    return 0.0


def passed(pos: QueuePos, lot: float) -> bool:
    """Has a trade reached past the front of the queue (round(ahead / lot) < 0; with no lot
    size, ahead < 0)? Without partial fills that fills the whole order."""
    if lot > 0.0:
        return _round_half_away(pos.ahead / lot) < 0.0
    return pos.ahead < 0.0


def _round_half_away(x: float) -> float:
    """Rust's f64::round (halves away from zero), not Python's round (halves to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def build_queue_model(name: str, power: float = 3.0) -> QueueModel | None:
    """The model named in `venue.queue`; None for `none` and for `l3_fifo` (handled apart)."""
    if name in ("none", "l3_fifo"):
        return None
    if name == "risk_averse":
        return RiskAverseQueue()
    if name in ("prob_power", "prob_log"):
        return ProbQueue(name, power)
    raise ConfigError(f"venue.queue '{name}' unknown; expected one of {', '.join(QUEUE_MODELS)}")
