"""Clocks: the one place time comes from. Replay uses SimClock; live mode adds WallClock."""

from __future__ import annotations

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
