"""The hand-off between the network reader and the pipeline: bounded, never blocking the reader.

Overflow policy by kind (LIVE.md 6a): once `backlog` frames wait (the pipeline is behind), a
quote replaces the quote of the same stream still waiting (the old one is conflated away,
counted); below that every quote is kept, so a burst the pipeline absorbs loses none (bookTicker
comes in bursts microseconds apart). Trades, depth and everything else are never
dropped silently: when the inbox is full, the frame is dropped and a *gap marker* takes its
place in the order (one per stream until drained, carrying the count), so the normalizer
declares a GAP and resyncs the book exactly where data was lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from simulator.live.frames import Frame

GAP_DIRECTION: Final = "gap"
"""Direction of a gap marker frame: `payload` holds the number of frames dropped, in ASCII."""


@dataclass(slots=True)
class InboxStats:
    """Counters read by the dashboard and the run summary (plain ints, updated in place)."""

    received: int = 0
    conflated: int = 0  # quotes replaced by a newer quote of the same stream
    overflowed: int = 0  # non-quote frames dropped because the inbox was full (declared gaps)
    high_water: int = 0  # most frames waiting at once
    drains: int = 0
    by_stream_overflow: dict[str, int] = field(default_factory=dict)


class Inbox:
    """A bounded deque of frames with quote conflation and declared gaps. Thread-safe."""

    def __init__(
        self, capacity: int, *, conflatable: Callable[[str], bool], backlog: int = 0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"inbox capacity must be >= 1; found {capacity}")
        self.capacity = capacity
        # frames waiting before quotes conflate; at most half the inbox, so quotes never fill
        # it and crowd out trades, depth and connection frames
        self.backlog = min(max(backlog, 0), capacity // 2)
        self._conflatable = conflatable
        self._frames: deque[Frame] = deque()
        self._live = 0  # frames waiting that are not dead
        self._latest_quote: dict[str, Frame] = {}
        self._markers: dict[str, Frame] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.stats = InboxStats()

    def put(self, frame: Frame) -> None:
        """Never blocks (the reader must keep reading): conflate, queue or declare a gap."""
        with self._cond:
            stats = self.stats
            stats.received += 1
            stream = frame.stream
            if self._conflatable(stream):
                old = self._latest_quote.get(stream)
                if old is not None and self._live >= self.backlog:
                    old.dead = True
                    self._live -= 1
                    stats.conflated += 1
                elif self._live >= self.capacity:
                    stats.conflated += 1  # no quote of this stream to replace: this one goes
                    return
                self._latest_quote[stream] = frame
            elif self._live >= self.capacity:
                self._declare_gap(frame)
                return
            self._frames.append(frame)
            self._live += 1
            stats.high_water = max(stats.high_water, self._live)
            self._cond.notify()

    def _declare_gap(self, frame: Frame) -> None:
        stats = self.stats
        stats.overflowed += 1
        stats.by_stream_overflow[frame.stream] = stats.by_stream_overflow.get(frame.stream, 0) + 1
        marker = self._markers.get(frame.stream)
        if marker is not None:
            marker.payload = str(int(marker.payload) + 1).encode()
            return
        # the marker takes the dropped frame's place (its seq and time): bounded by #streams
        marker = Frame(frame.seq, frame.conn_id, frame.ts_recv, GAP_DIRECTION, frame.stream, b"1")
        self._markers[frame.stream] = marker
        self._frames.append(marker)
        self._cond.notify()

    def drain(self, timeout: float) -> list[Frame]:
        """Every frame waiting (dead quotes left out), waiting up to `timeout` s for one."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            frames = [f for f in self._frames if not f.dead]
            self._frames.clear()
            self._latest_quote.clear()
            self._markers.clear()
            self._live = 0
            if frames:
                self.stats.drains += 1
            return frames

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a frame; True if one waits (it stays queued)."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            return bool(self._frames)

    def empty(self) -> bool:
        """Nothing waits, gap markers included (a lock-free read: a deque's length is atomic)."""
        return not self._frames

    def close(self) -> None:
        """Wake a waiting drain (the session is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return self._live
