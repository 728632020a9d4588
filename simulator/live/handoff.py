"""The hand-off from the network thread to the pipeline: inline while the pipeline keeps up.

A thread hand-off costs more than the pipeline's own work on a frame: the consumer thread is
asleep when a frame comes (at 1x the feed is idle >99% of the time), so each frame pays a
wake-up, then waits for the GIL until the network thread blocks again. So the network thread
runs the frame itself when nothing waits for the pipeline: the pipeline is idle, the inbox is
empty and the connection has no further message already received (a burst). Otherwise the
frame goes to the bounded inbox (its conflation and gap rules, LIVE.md 6a) and the consumer
thread takes it: the inbox holds only the backlog, and the reader never runs more than the one
frame it just received before it reads again.

Order: frames are consumed in `seq` order. The pipeline lock makes the two consumers take
turns; a frame runs inline only when the inbox is empty, so it never overtakes a waiting one.
A second producer (the timer thread) stamps and queues under the order lock, under which the
network thread decides to run a frame inline: a tick stamped before that frame is queued before
the decision (so the frame queues behind it), one stamped after it is later in `seq` too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from simulator.live.frames import Direction, Frame
from simulator.live.inbox import Inbox


@dataclass(slots=True)
class HandoffStats:
    inline: int = 0  # frames the network thread ran itself (no hand-off)
    queued: int = 0  # frames handed to the consumer thread through the inbox


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
    ) -> None:
        self.inbox = inbox
        self._process = process
        self.pending = (
            pending  # messages received and not yet handed on (set once the network exists)
        )
        # held while frames run, by whichever thread runs them; hold it to read the pipeline
        self.pipeline = threading.Lock()
        self._order = threading.Lock()  # a producer's stamp and hand-off, atomic
        self.stats = HandoffStats()
        self.last_data = time.monotonic()  # when a market-data frame was last handed on
        self.error: BaseException | None = None  # what the inline path raised; see `check`

    def offer(self, frame: Frame) -> None:
        """The network thread's sink: run `frame` now if nothing waits for the pipeline,
        else queue it. Never waits for the pipeline."""
        if frame.direction == Direction.IN:
            self.last_data = time.monotonic()
        with self._order:
            inline = (
                self.error is None
                and self.inbox.empty()
                and not self.pending()
                and self.pipeline.acquire(blocking=False)
            )
            if not inline:
                self.stats.queued += 1
                self.inbox.put(frame)
                return
        try:
            self._process([frame])
            self.stats.inline += 1
        except BaseException as e:  # the consumer thread raises it (`check`)
            self.error = e
        finally:
            self.pipeline.release()

    def tick(self, stamp: Callable[[], Frame]) -> None:
        """Stamp a frame and queue it (the timer thread): atomic with the inline path."""
        with self._order:
            self.stats.queued += 1
            self.inbox.put(stamp())

    def consume(self, timeout: float) -> bool:
        """Wait up to `timeout` s for queued frames, then run all of them (consumer thread).
        True if any ran."""
        if not self.inbox.wait(timeout):
            return False
        with self.pipeline:  # taken before draining: no frame runs inline past these
            frames = self.inbox.drain(0.0)
            if frames:
                self._process(frames)
        return bool(frames)

    def check(self) -> None:
        """Raise what the inline path raised, in the caller's thread."""
        if self.error is not None:
            raise self.error


__all__ = ["Handoff", "HandoffStats"]
