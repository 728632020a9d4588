"""Clocks: the one place time comes from. Replay uses SimClock; live mode adds WallClock."""

from __future__ import annotations

import time

from simulator.errors import InvariantViolation


class SimClock:
    """Simulated time: the receive time of the event being processed. Never goes backwards."""

    __slots__ = ("_now",)

    def __init__(self, start: int = 0) -> None:
        self._now = start

    def now(self) -> int:
        return self._now

    def advance_to(self, ts: int) -> None:
        if ts < self._now:
            raise InvariantViolation(
                f"SimClock: time went backwards ({ts} < {self._now}); sources must be ordered"
            )
        self._now = ts


class WallClock:
    """Live time. `now()` is the receive time of the event being processed, exactly like
    SimClock, so every stage that reads the clock (risk, the breaker's cool-down) sees the
    same time in live and in its replay; `wall_ns()` is the real time, read only to stamp
    frames on receipt and decisions when they are made (both are recorded)."""

    __slots__ = ("_now",)

    def __init__(self) -> None:
        self._now = 0

    def now(self) -> int:
        return self._now

    def advance_to(self, ts: int) -> None:
        if ts < self._now:
            raise InvariantViolation(f"WallClock: event time went backwards ({ts} < {self._now})")
        self._now = ts

    @staticmethod
    def wall_ns() -> int:
        return time.time_ns()
