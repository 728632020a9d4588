"""`LiveNetwork`: a FeedConnection (connection.py) on its own event loop in a daemon thread.

For the consumer of the frames:
- conn_id numbers sockets; REST frames carry the conn_id active when requested (0: none yet).
- Around a rollover every frame of the new connection is handed on from its CONNECT; the old
  one's stop at the switch, the new one's first data frame (even while later subscribe
  messages are still going out: venues that subscribe per channel send each channel's snapshot
  on subscribing). Before the switch the new one's acks and heartbeats interleave with the old
  one's data, and the old one's CLOSE follows the switch: key per-connection state (Coinbase
  sequence_num) by conn_id, and tell a rollover from a drop by comparing a CLOSE's conn_id
  with that of the latest data frame.
- The switch is hole-free when the new connection is not ahead of the old one. If the old one
  lags (a slower server), the messages it had not yet delivered are lost: Binance depth U/u
  then shows a gap (never silent); a trade or quote in between would be skipped.
- A snapshot that still fails after `snapshot_tries` arrives as an HTTP_RESP with an EMPTY
  payload: the book stays unsynced, ask again later. A request superseded by a newer one for the
  same symbol is dropped (counted); its HTTP_REQ stays in the recording without a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from simulator.errors import FeedError, InvariantViolation
from simulator.live.adapter import VenueProfile
from simulator.live.connection import FeedConnection
from simulator.live.frames import Frame, Stamper
from simulator.live.keepalive import Backpressure, ConnectionConfig, ConnectionStats
from simulator.live.prewake import PrewakeSelector

BUSY_EVERY_S: Final = 0.00025
"""How often `on_idle` is called while the loop polls without sleeping in a prewake window."""


class BusyPollSelector(selectors.EpollSelector):
    """An epoll selector that never sleeps in the kernel: `select(timeout)` polls with timeout 0
    until an event comes or `timeout` has passed (None: until an event comes).

    At 1x a frame comes every ~30 ms; a thread that slept in epoll_wait meanwhile runs the next
    frame 3-7x slower than back to back (caches, branch predictors, the core's frequency and
    idle state), and epoll cannot wait for less than a millisecond. Spinning keeps the network
    thread on its core, awake: one core at 100% for the latency, as low-latency trading stacks
    spend one. Every poll releases the GIL around the syscall, so the other threads (recorder,
    consumer, timer) still take it; and asyncio's timers (keep_warm's every millisecond) fire
    on time, not rounded up to the next millisecond."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        poll = super().select
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (ready := poll(0)) and (deadline is None or time.monotonic() < deadline):
            pass
        return ready


@dataclass(slots=True)
class ThreadTimes:
    """The network thread's CPU time and wall time, start to end: with busy polling their
    ratio is ~1 (the thread never sleeps); without, the share of a core the feed costs."""

    busy_poll: bool = False
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        share = self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0
        return {"busy_poll": self.busy_poll, "cpu_s": round(self.cpu_s, 3),
                "wall_s": round(self.wall_s, 3), "cpu_share": round(share, 3)}  # fmt: skip


class LiveNetwork:
    """A FeedConnection (same arguments) run on its own event loop in a daemon thread. What
    ended the loop with an error is raised again by `check()` / `stop()` in the caller's thread.
    `on_idle`, if given, is called on that loop about every `idle_every_s` (it decides itself
    whether the feed is idle: see Handoff.keep_warm); it must not block. With `busy_poll` the
    loop never sleeps in the kernel (BusyPollSelector): one core spent on the lowest latency;
    else, with `prewake` (a periodic stream's next frame, prewake.Arrivals.due), it polls
    without sleeping only around that time (PrewakeSelector)."""

    def __init__(
        self,
        profile: VenueProfile,
        config: ConnectionConfig,
        stamper: Stamper,
        sink: Callable[[Frame], None],
        wall: Callable[[], int],
        *,
        conn_ids: Iterator[int] | None = None,
        backpressure: Backpressure | None = None,
        on_idle: Callable[[], None] | None = None,
        idle_every_s: float = 0.001,
        busy_poll: bool = False,
        prewake: Callable[[], float] | None = None,
    ) -> None:
        self.connection = FeedConnection(
            profile, config, stamper, sink, wall, conn_ids=conn_ids, backpressure=backpressure
        )
        self._on_idle = on_idle
        self._idle_every_s = idle_every_s
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.times = ThreadTimes(busy_poll=busy_poll)  # filled when the thread ends
        self.prewake = None if prewake is None or busy_poll else PrewakeSelector(prewake)

    @property
    def stats(self) -> ConnectionStats:
        return self.connection.stats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise InvariantViolation("LiveNetwork.start() may be called only once")
        self._thread = threading.Thread(target=self._main, name="ticktape-network", daemon=True)
        self._thread.start()

    def request_snapshot(self, symbol: str) -> None:
        self.connection.request_snapshot(symbol)

    def send(self, messages: Sequence[bytes]) -> None:
        self.connection.send(messages)

    def check(self) -> None:
        """Raise the error that ended the network loop, if any."""
        if self._error is not None:
            raise self._error

    def request_stop(self) -> None:
        """Ask the connections to close (1000); returns at once. With a `backpressure`, keep
        draining it until `running` is False (what arrives meanwhile is handed on), or close it."""
        self.connection.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connections (1000) and wait for the thread; then `check()`. A reader
        paused on `backpressure` must be released first (drain or close it)."""
        self.connection.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise FeedError(f"the network thread did not stop within {timeout} s")
        self.check()

    def _main(self) -> None:
        cpu, wall = time.thread_time(), time.monotonic()
        try:
            if self.times.busy_poll or self.prewake is not None:
                factory = _busy_poll_loop if self.prewake is None else self._prewake_loop
                with asyncio.Runner(loop_factory=factory) as runner:
                    runner.run(self._run())
            else:
                asyncio.run(self._run())
        except BaseException as e:  # handed to the caller's thread by check() / stop()
            self._error = e
        finally:
            self.times.cpu_s = time.thread_time() - cpu
            self.times.wall_s = time.monotonic() - wall

    async def _run(self) -> None:
        on_idle = self._on_idle
        idle = None if on_idle is None else asyncio.create_task(self._idle_calls(on_idle))
        try:
            await self.connection.run()
        finally:
            if idle is not None:
                idle.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await idle

    async def _idle_calls(self, on_idle: Callable[[], None]) -> None:
        every, prewake = self._idle_every_s, self.prewake
        while True:  # polling anyway in a prewake window: calls as often as busy polling
            await asyncio.sleep(every if prewake is None or not prewake.polling() else BUSY_EVERY_S)
            on_idle()

    def _prewake_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(self.prewake)


def _busy_poll_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(BusyPollSelector())


__all__ = ["BusyPollSelector", "LiveNetwork", "ThreadTimes"]
