"""The hand-off between the network reader and the pipeline: bounded, never blocking the reader
thread, and by default never dropping market data.

Flow control (`overflow="pause"`, the default): once `pause_at` frames wait (three quarters of
the capacity), the reader stops reading the socket (`FeedConnection` awaits `wait_for_room()`)
until the pipeline has drained the inbox; websockets' own buffer fills and TCP then slows the
sender (our feed server at `--speed max` awaits the socket drain; a real venue eventually
disconnects a slow consumer, which is a handled fault: reconnect and resync). Each pause and
its length are counted. While the reader is paused, frames wait in the kernel and websockets'
buffers before they are stamped: `ts_recv` and the receive->done latency do not include that
wait (`paused_s` says how much of the run it was; `recv - exchange time` does include it).
The last quarter of the capacity is room for frames that cannot wait: timer ticks, REST
snapshots, connection events.

Overflow policy by kind (LIVE.md 6a): quotes conflate while the pipeline is behind, and only
then: a quote replaces the quote of the same stream still waiting (the old one is conflated
away, counted) once the frames waiting would take the pipeline longer than `conflate_after_ns`
to run (their number times its recent time per frame, `ran`), or once `backlog` frames wait
(a bound on the count, at most half the inbox). A burst the pipeline runs within that time
loses no quote: bookTicker comes in bursts microseconds apart, at 20x up to ~140 quotes in one
socket read, which the obi_rule pipeline runs in under a millisecond (a fixed count of 64
frames conflated them although the pipeline was idle between bursts); a pipeline 3 ms a frame
conflates as soon as a second frame waits. It is the work waiting that is measured, not how
long the first frame has waited: that includes time the reader itself was not running (the OS
ran something else), which no conflation can win back; and the reader, running the pipeline
itself, stamps the next frames only after it, so a slow pipeline's frames never look old. The
recording holds what the pipeline consumed, so a replay is the same whatever it decides.
Trades, depth and everything else are never dropped
silently: when the inbox is full (`overflow="drop"`, or frames beyond the room above), the
frame is dropped and a *gap marker* takes its place in the order (one per stream until
drained, carrying the count), so the normalizer declares a GAP and resyncs the book exactly
where data was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from simulator.errors import ConfigError
from simulator.live.frames import Frame

GAP_DIRECTION: Final = "gap"
"""Direction of a gap marker frame: `payload` holds the number of frames dropped, in ASCII."""

_NEVER: Final = float("inf")  # no conflation by the time the frames waiting take to run
BURST: Final = 16
"""Runs of at least this many frames time the pipeline's cost per frame (Inbox.ran)."""
SAMPLES: Final = 9
"""The cost per frame is the median of this many runs."""

Overflow = Literal["pause", "drop"]
OVERFLOW_POLICIES: Final[tuple[Overflow, ...]] = ("pause", "drop")


@dataclass(slots=True)
class InboxStats:
    """Counters read by the dashboard and the run summary (plain numbers, updated in place)."""

    received: int = 0
    conflated: int = 0  # quotes replaced by a newer quote of the same stream
    overflowed: int = 0  # non-quote frames dropped because the inbox was full (declared gaps)
    high_water: int = 0  # most frames waiting at once
    drains: int = 0
    pauses: int = 0  # times the reader stopped reading the socket (flow control)
    paused_s: float = 0.0  # total time the reader was stopped
    longest_pause_s: float = 0.0
    by_stream_overflow: dict[str, int] = field(default_factory=dict)


class Inbox:
    """A bounded deque of frames with quote conflation, reader flow control and declared gaps.
    `put` and `drain` are thread-safe; `wait_for_room` runs on the reader's event loop."""

    def __init__(
        self,
        capacity: int,
        *,
        conflatable: Callable[[str], bool],
        backlog: int = 0,
        conflate_after_ns: float | None = None,
        overflow: Overflow = "pause",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"inbox capacity must be >= 1; found {capacity}")
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"inbox overflow must be one of {OVERFLOW_POLICIES}; found {overflow!r}"
            )
        self.capacity = capacity
        self.overflow: Final = overflow
        # frames waiting before quotes conflate; at most half the inbox, so quotes never fill
        # it and crowd out trades, depth and connection frames
        self.backlog = min(max(backlog, 0), capacity // 2)
        # or once the frames waiting would take the pipeline this long to run (None: never)
        self.conflate_after_ns: Final = _NEVER if conflate_after_ns is None else conflate_after_ns
        self.cost_ns = 0.0  # the pipeline's time per frame in its recent bursts (`ran`)
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._bursts = False  # a run of BURST frames or more has been timed
        # the reader pauses here; the rest is room for frames that cannot wait
        self.pause_at = max(1, capacity - capacity // 4) if overflow == "pause" else capacity + 1
        self.full = False  # the reader should pause: read without the lock, once per frame
        self._conflatable = conflatable
        self._frames: deque[Frame] = deque()
        self._live = 0  # frames waiting that are not dead
        self._latest_quote: dict[str, Frame] = {}
        self._markers: dict[str, Frame] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.stats = InboxStats()

    def put(self, frame: Frame, wake: bool = True) -> None:
        """Never blocks: conflate, queue or declare a gap. `wake=False`: the consumer need
        not wake for it (the reader runs it itself at the end of its burst); it still wakes
        once the reader should pause, and for a gap marker."""
        with self._cond:
            stats = self.stats
            stats.received += 1
            stream = frame.stream
            if self._conflatable(stream):
                old = self._latest_quote.get(stream)
                if old is not None and (
                    self._live >= self.backlog or self._live * self.cost_ns > self.conflate_after_ns
                ):
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
            live = self._live = self._live + 1
            if live > stats.high_water:
                stats.high_water = live
            if live >= self.pause_at:
                self.full = True
                wake = True
            if wake:
                self._cond.notify()

    def ran(self, frames: int, elapsed_ns: int) -> None:
        """The pipeline ran `frames` in `elapsed_ns` (by whoever ran them, holding the
        pipeline). `cost_ns` is the median time per frame of the last SAMPLES runs of BURST
        frames or more, the runs that decide whether a backlog is absorbed (a lone frame costs
        ~4x a frame in a burst: the run's fixed costs, cold caches). Until a burst has been
        timed, every run counts, so a pipeline slow from the start conflates from the start.
        The median leaves out a run the OS or a collection interrupted, and the first cold
        runs."""
        burst = frames >= BURST
        if frames <= 0 or (self._bursts and not burst):
            return
        samples = self._samples
        if burst and not self._bursts:  # from now on bursts only
            self._bursts = True
            samples.clear()
        per = elapsed_ns / frames
        samples.append(per)
        if len(samples) >= 3:
            self.cost_ns = sorted(samples)[len(samples) // 2]
        elif self.cost_ns <= 0.0 or per < self.cost_ns:
            self.cost_ns = per

    async def wait_for_room(self) -> None:
        """On the reader's loop: wait until the pipeline has drained the inbox (at once if it
        already has, or the inbox is closed). Counted as a pause, also when cancelled."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if not self.full or self._closed:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        t0 = time.perf_counter()
        try:
            await waiter
        finally:
            paused = time.perf_counter() - t0
            with self._cond:
                stats = self.stats
                stats.pauses += 1
                stats.paused_s += paused
                stats.longest_pause_s = max(stats.longest_pause_s, paused)

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
        """Every frame waiting (dead quotes left out), waiting up to `timeout` s for one; a
        paused reader resumes."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            frames = [f for f in self._frames if not f.dead]
            self._frames.clear()
            self._latest_quote.clear()
            self._markers.clear()
            self._live = 0
            self.full = False
            if self._waiters:
                self._release()
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

    def _release(self) -> None:
        for loop, waiter in self._waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_wake, waiter)
        self._waiters.clear()

    def close(self) -> None:
        """Wake a waiting drain and a paused reader (the session is stopping)."""
        with self._cond:
            self._closed = True
            self.full = False
            self._release()
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        """A reader is waiting for room now (for the dashboard)."""
        return bool(self._waiters)

    def __len__(self) -> int:
        return self._live


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


__all__ = [
    "BURST",
    "GAP_DIRECTION",
    "OVERFLOW_POLICIES",
    "SAMPLES",
    "Inbox",
    "InboxStats",
    "Overflow",
]
