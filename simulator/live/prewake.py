"""Waking the network thread before a periodic stream's next frame.

At 1x a frame comes every ~30 ms; a thread that slept in epoll_wait meanwhile runs it on a core
that was idle (caches, branch predictors, the core's idle state): ~1.5x what it costs on a core
that was awake, even with the keep-warm passes (`--busy-poll`, which never sleeps, spends a
whole core on that). Some streams are periodic: Binance's depth@100ms sends a diff every 100 ms
(±~1 ms in the bundled recording, ±~3 ms against `feed serve` on a loaded host). For those,
`Arrivals` forecasts the next frame (the period's running mean on a phase-locked grid), and
`PrewakeSelector` polls epoll without sleeping from `LEAD_S` before that time to `GRACE_S`
after it, so most of that stream's frames find the thread awake, like `--busy-poll`, for
~7 ms per 100 ms of one core; inside the window the keep-warm passes run every 0.25 ms, as
with `--busy-poll`. Only a stream whose period is at least `MIN_PERIOD_S` and steady
(mean absolute deviation under `STEADY` of it) is forecast: a faster one would keep the thread
spinning most of the time, an irregular one (trades, bookTicker) cannot be forecast.
"""

from __future__ import annotations

import math
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

LEAD_S: Final = 0.003
"""Polling starts this long before the forecast frame."""
GRACE_S: Final = 0.004
"""... and ends this long after it (a late frame: the feed server, the host)."""
MIN_PERIOD_S: Final = 0.07
"""Streams forecast: period at least this long, so the polling is ~10% of the time at most."""
STEADY: Final = 0.05
"""A stream is periodic while the mean absolute deviation of its gaps is under this share of
its period."""
WARMUP: Final = 8
"""Gaps seen before a stream is forecast."""
_GAIN: Final = 0.1  # the period's and the deviation's running means
_LOCK: Final = 0.2  # how far each frame pulls the grid toward it
_FAST: Final = MIN_PERIOD_S / 2  # a gap this short: the stream is not forecast


@dataclass(slots=True)
class _Cadence:
    """One stream's arrivals: last frame, running period and deviation, the grid."""

    last: float
    period: float = 0.0
    deviation: float = 0.0
    grid: float = 0.0
    gaps: int = 0
    due: float = math.inf


@dataclass(slots=True)
class PrewakeStats:
    windows: int = 0  # polling windows entered
    frames_in_window: int = 0  # selects that returned events while polling in a window

    def as_dict(self) -> dict[str, int]:
        return {"windows": self.windows, "frames_in_window": self.frames_in_window}


class Arrivals:
    """When the next frame of a periodic stream is due: `note` each market-data frame's
    arrival (time.monotonic()); `due` is the earliest forecast (inf: none). Written by the
    network thread only (the hand-off), read by its selector."""

    __slots__ = ("_streams", "due")

    def __init__(self) -> None:
        self._streams: dict[str, _Cadence] = {}
        self.due = math.inf

    def note(self, stream: str, now: float) -> None:
        cadence = self._streams.get(stream)
        if cadence is None:
            self._streams[stream] = _Cadence(last=now)
            return
        gap, cadence.last = now - cadence.last, now
        if gap < _FAST and cadence.due == math.inf:  # no period here: little work per frame
            cadence.gaps = 0  # (at high rates quotes come microseconds apart)
            return
        if cadence.gaps == 0:
            cadence.period, cadence.grid = gap, now
        else:
            error = gap - cadence.period
            cadence.period += _GAIN * error
            cadence.deviation += _GAIN * (abs(error) - cadence.deviation)
            grid = cadence.grid + cadence.period
            grid += _LOCK * (now - grid)  # phase-locked: one late frame moves it a little
            cadence.grid = grid if abs(now - grid) < cadence.period else now
        cadence.gaps += 1
        period, was = cadence.period, cadence.due
        steady = cadence.gaps >= WARMUP and cadence.deviation < STEADY * period
        cadence.due = cadence.grid + period if steady and period >= MIN_PERIOD_S else math.inf
        if cadence.due != was:
            due = math.inf
            for each in self._streams.values():
                due = min(due, each.due)
            self.due = due


class PrewakeSelector(selectors.EpollSelector):
    """An epoll selector that polls without sleeping in the window around `due()` (a
    monotonic time; inf: none), from LEAD_S before to GRACE_S after; elsewhere it sleeps in
    epoll_wait as usual, waking for the window's start. Every poll releases the GIL."""

    def __init__(self, due: Callable[[], float]) -> None:
        super().__init__()
        self._due = due
        self.stats = PrewakeStats()
        self._window = -math.inf  # the due time of the last window entered (counted once)

    def polling(self) -> bool:
        """Whether now is inside the window (the keep-warm passes run 4x as often there)."""
        due = self._due()
        return due - LEAD_S <= time.monotonic() < due + GRACE_S

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        poll = super().select
        due = self._due()
        if due == math.inf:
            return poll(timeout)
        now = time.monotonic()
        start = due - LEAD_S
        if now < start:  # sleep, but no later than the window's start
            if timeout is not None and timeout <= start - now:
                return poll(timeout)
            if ready := poll(start - now):
                return ready
            now, timeout = time.monotonic(), None if timeout is None else timeout - (start - now)
        end = due + GRACE_S
        if not now < end:
            return poll(timeout)
        if due != self._window:
            self._window = due
            self.stats.windows += 1
        deadline = end if timeout is None else min(end, now + max(timeout, 0.0))
        while not (ready := poll(0)) and time.monotonic() < deadline:
            pass
        if ready:
            self.stats.frames_in_window += 1
        return ready


__all__ = ["GRACE_S", "LEAD_S", "MIN_PERIOD_S", "Arrivals", "PrewakeSelector", "PrewakeStats"]
