"""The hand-off from the network thread to the pipeline: run on the receiving thread while the
pipeline keeps up, through the bounded inbox when it is behind.

A thread hand-off costs more than the pipeline's own work on a frame: the consumer thread is
asleep when a frame comes (at 1x the feed is idle >99% of the time), so each frame pays a
wake-up, then waits for the GIL until the network thread blocks again; and in a burst (bookTicker
sends dozens of quotes microseconds apart) the network thread keeps the GIL while it reads the
whole burst, so the consumer could not take any of it before all of it waited (at 20x, 64
waiting quotes started to conflate while the pipeline was idle). So:

- every frame goes through the inbox's rules (LIVE.md 6a: conflation once the frames waiting
  would take the pipeline past a budget to run, declared gaps on overflow) unless it can run
  at once: the pipeline idle, nothing waiting; whoever runs frames times the run for that
  budget (`Inbox.ran`);
- once the reader has handed on the last message of the TCP chunk it read (no burst left to
  stamp) and the pipeline is idle, the network thread runs what waits itself, the burst and
  this frame, and then reads on. Under the GIL a consumer thread running them would hold the reader
  up just as long; here no wake-up and no GIL hand-over are paid;
- the consumer thread runs what waits when the pipeline is busy as the reader finishes a burst
  (the pipeline is behind, or a frame runs long): the reader never waits for the pipeline.

Keeping warm: at 1x a frame comes every ~30 ms, and in between other work evicts the
pipeline's code and data from the caches (a frame then costs ~6x what it costs back to back).
While no market data has come for `warm_after_s`, `keep_warm` (the network thread, every
millisecond; every 0.25 ms under `--busy-poll`) runs a side-effect-free dry pass over the hot
code (`SymbolRun.dry_pass`), only while nothing waits and nobody runs the pipeline; a frame
that comes meanwhile waits for the pass (tens of µs) like for any frame before it. Each
market-data frame's arrival is noted (`arrivals`, once the frame has run) for the network
loop's pre-wake: it polls around a periodic stream's next frame (prewake.py).

Order: frames are consumed in `seq` order. The pipeline lock makes the two consumers take
turns, and whoever holds it takes everything waiting. A second producer (the timer thread)
stamps and queues under the order lock, under which the network thread decides what it runs:
a tick stamped before a frame is queued before that decision (and runs first), one stamped
after it is later in `seq` too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from simulator.live.frames import Direction, Frame
from simulator.live.inbox import Inbox
from simulator.live.prewake import Arrivals


@dataclass(slots=True)
class HandoffStats:
    frames: int = 0  # frames handed on (network and timer)
    inline: int = 0  # frames the network thread ran itself
    handed_off: int = 0  # frames the consumer thread ran (the pipeline was busy or behind)
    warm_passes: int = 0  # dry passes run while the feed was idle (keep_warm)


class Handoff:
    """Frames into the pipeline: `offer` (network thread), `tick` (other producers),
    `consume` (the consumer thread's loop). `process` runs frames in order; it is only ever
    called by one thread at a time."""

    def __init__(
        self,
        inbox: Inbox,
        process: Callable[[list[Frame]], None],
        *,
        pending: Callable[[], int] = lambda: 0,
        dry_pass: Callable[[], bool] | None = None,
        warm_after_s: float = 0.001,
    ) -> None:
        self.inbox = inbox
        self._process = process
        # messages received and not yet handed on (set once the network exists)
        self.pending = pending
        # held while frames run, by whichever thread runs them; hold it to read the pipeline
        self.pipeline = threading.Lock()
        self._order = threading.Lock()  # a producer's stamp and hand-off, atomic
        self.stats = HandoffStats()
        self.last_data = time.monotonic()  # when a market-data frame was last handed on
        self.error: BaseException | None = None  # what the inline path raised; see `check`
        self._dry_pass = dry_pass  # True if it ran something (see keep_warm)
        self.warm_after_s = warm_after_s
        self.arrivals = Arrivals()  # when a periodic stream's next frame is due (prewake.py)

    def offer(self, frame: Frame) -> None:
        """The network thread's sink: run `frame` and what waits now if the burst is read and
        the pipeline idle, else queue it. Never waits for the pipeline."""
        stats = self.stats
        stats.frames += 1
        data = frame.direction == Direction.IN
        if data:
            self.last_data = time.monotonic()
        with self._order:
            inbox = self.inbox
            burst = self.pending()
            if self.error is not None or burst or not self.pipeline.acquire(blocking=False):
                # in a burst this thread runs it at the burst's end: waking the consumer
                # thread would only make it fight for the GIL (a wake-up per frame)
                inbox.put(frame, wake=not burst)
                if data:
                    self.arrivals.note(frame.stream, self.last_data)
                return
            if inbox.empty():
                frames = [frame]
            else:  # the burst (or a tick) before it waits: all of it, in order
                inbox.put(frame, wake=False)  # drained right here: nobody else to wake
                frames = inbox.drain(0.0)
        try:
            t0 = time.perf_counter_ns()
            self._process(frames)
            inbox.ran(len(frames), time.perf_counter_ns() - t0)
            stats.inline += len(frames)
        except BaseException as e:  # the consumer thread raises it (`check`)
            self.error = e
        finally:
            self.pipeline.release()
        if data:  # after the frame ran: not on its path
            self.arrivals.note(frame.stream, self.last_data)

    def tick(self, stamp: Callable[[], Frame]) -> None:
        """Stamp a frame and queue it (the timer thread): atomic with the inline decision."""
        with self._order:
            self.stats.frames += 1
            self.inbox.put(stamp())

    def consume(self, timeout: float) -> bool:
        """Wait up to `timeout` s for queued frames, then run all of them (consumer thread).
        True if any ran. Raises what the inline path raised instead of running more."""
        if not self.inbox.wait(timeout):
            return False
        with self.pipeline:  # taken before draining: no frame runs inline past these
            self.check()  # a pipeline that failed inline runs nothing more
            frames = self.inbox.drain(0.0)
            if frames:
                try:
                    t0 = time.perf_counter_ns()
                    self._process(frames)
                except BaseException as e:  # the reader runs nothing more inline either
                    self.error = e
                    raise
                self.inbox.ran(len(frames), time.perf_counter_ns() - t0)
                self.stats.handed_off += len(frames)
        return bool(frames)

    def keep_warm(self) -> None:
        """The network thread, between frames: once no market data has come for
        `warm_after_s`, run the dry pass if nothing waits and the pipeline is free (never
        waits for it). What the pass raises is raised by `check`, as for a frame."""
        dry_pass = self._dry_pass
        if (
            dry_pass is None
            or self.error is not None
            or time.monotonic() - self.last_data < self.warm_after_s
            or not self.inbox.empty()
            or not self.pipeline.acquire(blocking=False)
        ):
            return
        try:
            if dry_pass():
                self.stats.warm_passes += 1
        except BaseException as e:  # the consumer thread raises it (`check`)
            self.error = e
        finally:
            self.pipeline.release()

    def check(self) -> None:
        """Raise what the inline path raised, in the caller's thread."""
        if self.error is not None:
            raise self.error


__all__ = ["Handoff", "HandoffStats"]
