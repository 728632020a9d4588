"""A circuit breaker around a model runner: errors or slow calls switch to a fallback runner.

States: closed (the primary answers) -> open after `max_violations` consecutive violations
(the fallback answers) -> half-open once `cooldown_ns` of clock time has passed (the primary
is tried once) -> closed on success, open again on failure. A violation is an exception from
the primary or, when a budget is set, a primary call slower than `latency_budget_ns`
(measured with perf_counter_ns, so runs with a budget are not reproducible; without one the
breaker is deterministic). Every switch is recorded as a `BreakerSwitch`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from simulator.errors import InvariantViolation, ModelError
from simulator.protocols import ModelRunner

BreakerState = Literal["open", "half_open", "closed"]


class TimeSource(Protocol):
    """Anything that tells simulated time (SimClock, WallClock, a test's fake)."""

    def now(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSwitch:
    """One change of breaker state, at clock time `ts`, while handling event `event_index`."""

    ts: int
    event_index: int
    state: BreakerState
    reason: str  # "exception: <type>", "latency <n> ns > budget", "cool-down elapsed", "recovered"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerCounts:
    """How a session's predictions were served."""

    calls: int
    primary_calls: int
    fallback_calls: int
    violations: int
    exceptions: int
    slow_calls: int
    trips: int  # switches to "open", re-opens from half-open included


class CircuitBreaker:
    """A ModelRunner that serves `primary` while it is healthy and `fallback` while it is not."""

    __slots__ = (
        "_budget_ns",
        "_calls",
        "_clock",
        "_consecutive",
        "_cooldown_ns",
        "_exceptions",
        "_fallback_calls",
        "_max_violations",
        "_opened_at",
        "_predict_primary",
        "_primary_calls",
        "_slow_calls",
        "_state",
        "fallback",
        "name",
        "primary",
        "switches",
    )

    def __init__(
        self,
        primary: ModelRunner,
        fallback: ModelRunner,
        *,
        clock: TimeSource,
        latency_budget_ns: int | None,
        max_violations: int,
        cooldown_ns: int,
    ) -> None:
        if max_violations < 1:
            raise ModelError(f"breaker: max_violations is {max_violations}; expected >= 1")
        if cooldown_ns < 0 or (latency_budget_ns is not None and latency_budget_ns <= 0):
            raise ModelError(
                f"breaker: cooldown_ns is {cooldown_ns} and latency_budget_ns is "
                f"{latency_budget_ns}; expected cooldown_ns >= 0 and a positive budget or None"
            )
        self.primary = primary
        self.fallback = fallback
        self._predict_primary = primary.predict  # bound once: predict() runs per event
        self.name = f"breaker({primary.name}|{fallback.name})"
        self._clock = clock
        self._budget_ns = latency_budget_ns
        self._max_violations = max_violations
        self._cooldown_ns = cooldown_ns
        self.switches: list[BreakerSwitch] = []
        self._clear()

    def _clear(self) -> None:
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._opened_at = 0
        self._calls = self._primary_calls = self._fallback_calls = 0
        self._exceptions = self._slow_calls = 0
        self.switches.clear()

    @property
    def is_open(self) -> bool:
        """True while the fallback answers (not while half-open: then the primary is on trial)."""
        return self._state == "open"

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def counts(self) -> BreakerCounts:
        return BreakerCounts(
            calls=self._calls,
            primary_calls=self._primary_calls,
            fallback_calls=self._fallback_calls,
            violations=self._exceptions + self._slow_calls,
            exceptions=self._exceptions,
            slow_calls=self._slow_calls,
            trips=sum(1 for s in self.switches if s.state == "open"),
        )

    def warm_up(self) -> None:
        # Untimed on purpose: warm-up exists so that first-call latency never trips the breaker.
        self.primary.warm_up()
        self.fallback.warm_up()

    def reset(self) -> None:
        """A new session: both runners reset, the breaker closed, its records and counts cleared
        (collect `switches` and `counts` first), so a session never depends on the one before."""
        self.primary.reset()
        self.fallback.reset()
        self._clear()

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        self._calls += 1
        if self._state == "closed" and self._budget_ns is None:
            # The per-event path: closed, no latency budget. Only exceptions can violate.
            self._primary_calls += 1
            try:
                p = self._predict_primary(features, event_index)
            except InvariantViolation:
                raise  # a broken invariant stops the run; it is not a model fault
            except Exception as e:  # broad on purpose: any fault of model code is what this is for
                return self._on_exception(e, features, event_index)
            if self._consecutive:
                self._consecutive = 0
            return p
        return self._guarded(features, event_index)

    def _guarded(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        """predict() while open or half-open, or with a latency budget to watch."""
        if self._state == "open":
            if self._clock.now() - self._opened_at < self._cooldown_ns:
                self._fallback_calls += 1
                return self.fallback.predict(features, event_index)
            self._switch("half_open", event_index, "cool-down elapsed")
        self._primary_calls += 1
        budget = self._budget_ns
        start = time.perf_counter_ns() if budget is not None else 0
        try:
            p = self._predict_primary(features, event_index)
        except InvariantViolation:
            raise
        except Exception as e:  # broad on purpose, as in predict()
            return self._on_exception(e, features, event_index)
        if budget is not None:
            elapsed = time.perf_counter_ns() - start
            if elapsed > budget:
                # The answer came, only late: serve it, but count the violation.
                self._slow_calls += 1
                self._violation(event_index, f"latency {elapsed} ns > budget")
                return p
        if self._consecutive:
            self._consecutive = 0
        if self._state == "half_open":
            self._switch("closed", event_index, "recovered")
        return p

    def _on_exception(
        self, error: Exception, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        """The primary raised: count the violation and let the fallback answer this event."""
        self._exceptions += 1
        self._violation(event_index, f"exception: {type(error).__name__}")
        self._fallback_calls += 1
        return self.fallback.predict(features, event_index)

    def _violation(self, event_index: int, reason: str) -> None:
        self._consecutive += 1
        if self._state == "half_open" or self._consecutive >= self._max_violations:
            self._switch("open", event_index, reason)

    def _switch(self, state: BreakerState, event_index: int, reason: str) -> None:
        now = self._clock.now()
        if state == "open":
            self._opened_at = now
            self._consecutive = 0
        self._state = state
        self.switches.append(
            BreakerSwitch(ts=now, event_index=event_index, state=state, reason=reason)
        )
