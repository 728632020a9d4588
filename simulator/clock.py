"""Clocks: the one place time comes from. Replay uses SimClock; live mode adds WallClock."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from simulator.errors import InvariantViolation
from simulator.types import NS_PER_SECOND


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


def next_day_start(ts: int, time_zone: str) -> int:
    """The first nanosecond of the calendar day after the one holding `ts`, in `time_zone`
    (an IANA name such as America/New_York or UTC): the venue's day boundary. Cold."""
    zone = ZoneInfo(time_zone)
    day = datetime.fromtimestamp(ts // NS_PER_SECOND, zone).date() + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return int(start.timestamp()) * NS_PER_SECOND
