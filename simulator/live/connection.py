"""Websocket connection manager: one venue feed kept alive, everything handed on as a Frame.

Runs on its own asyncio loop (`LiveNetwork` puts it on a daemon thread) and never waits on
the pipeline: each message is stamped on receipt and handed to `sink` (the bounded inbox), and
so is everything else that happens, so the raw recording replays the session: CONNECT (payload:
the URL), OUT (what we send), CLOSE (`<code> <reason>`), HTTP_REQ (the URL), HTTP_RESP (the body).

Keeping the feed alive (LIVE.md §1.2, §4, §6a):
- reconnect with capped, jittered exponential backoff from a seeded generator, reset only once
  a connection has been stable; at most one connect attempt per `connect_interval_s`;
- dead peer: no bytes at all (data, pings, pongs) for `dead_peer_timeout_s`. websockets answers
  pings inside, so reading messages cannot see them: the connection class notes when bytes last
  arrived (`WatchedConnection`) and a watchdog compares. `ws.latency` would not do: it times
  only our own pings, and Binance counts client pings against its 5 messages/s;
- idle feed: no data frame for `idle_timeout_s` (alive but silent) -> close, reconnect;
- receipt: each message is stamped and handed on inside the connection's `data_received`, as
  soon as its TCP chunk is read and split (receiver.py), not by a task that awaits `recv()`;
- flow control: after each message, if `backpressure` (the inbox) is full, reading the socket
  pauses at once until it has room (the rest of that chunk waits, unstamped), so TCP slows
  the sender; both timers above stand still meanwhile (the silence is ours). Pings arriving
  meanwhile are answered once reading resumes: a pause longer than the venue's pong timeout
  gets us disconnected as a slow consumer (a reconnect and a resync, as any drop);
- make-before-break rollover at `max_lifetime_s` and on a server shutdown notice: open and
  subscribe a new connection, keep handing on the old one until the new one delivers its first
  data frame, then hand on only the new one and close the old one; the overlap is de-duplicated
  downstream by update id / trade id;
- HTTP 451 (restricted location) on the upgrade or on REST is a FeedError, never retried;
  everything else on the socket is retried until stop().
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, cast

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from simulator.errors import FeedError, InvariantViolation
from simulator.live.adapter import VenueProfile
from simulator.live.frames import Direction, Frame, Stamper
from simulator.live.keepalive import (
    Backoff,
    Backpressure,
    ConnectionConfig,
    ConnectionStats,
    ConnectLimiter,
)
from simulator.live.loop_base import Link
from simulator.live.receiver import WatchedConnection
from simulator.live.rollover import RETRYABLE, Rollover


class FeedConnection(Rollover):
    """One feed socket, kept alive; see the module docstring. `run()` on the network loop;
    `stop()` and `request_snapshot()` from any thread."""

    def __init__(
        self,
        profile: VenueProfile,
        config: ConnectionConfig,
        stamper: Stamper,
        sink: Callable[[Frame], None],
        wall: Callable[[], int],
        *,
        conn_ids: Iterator[int] | None = None,  # share one count() between connections
        backpressure: Backpressure | None = None,  # the inbox: pause reading while it is full
    ) -> None:
        self._profile, self._config, self._stamper = profile, config, stamper
        self._backpressure = backpressure
        self.profile: Final = profile
        self._sink, self._wall = sink, wall
        self._conn_ids = conn_ids if conn_ids is not None else itertools.count(1)
        self.url: Final = profile.stream_url(config.url, config.symbols)
        rng = np.random.default_rng(config.seed)
        cfg = config
        self._backoff = Backoff(
            cfg.backoff_initial_s, cfg.backoff_factor, cfg.backoff_cap_s, cfg.backoff_jitter, rng
        )
        self._rollover_backoff = Backoff(
            cfg.backoff_initial_s, cfg.backoff_factor, cfg.backoff_cap_s, cfg.backoff_jitter, rng
        )
        self._limiter = ConnectLimiter(cfg.connect_interval_s)
        self._tick = min(0.25, cfg.idle_timeout_s / 4, cfg.dead_peer_timeout_s / 4)
        self.stats = ConnectionStats()
        self.recent_delays: deque[float] = deque(maxlen=64)  # reconnect backoffs, newest last
        self._lock = threading.Lock()  # guards _loop, _stopping, _epochs, _queued
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._active: Link | None = None
        self._pending: Link | None = None  # a rollover connection waiting for its first data
        self._opening: asyncio.Task[Link] | None = None  # a rollover connection being opened
        self._rollover_wanted = False  # max lifetime reached or a shutdown notice seen
        self._rollover_not_before = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._epochs: dict[str, int] = {}
        self._queued: list[tuple[str, int]] = []
        self._rest_pool: ThreadPoolExecutor | None = None
        self._rest_blocked_until = 0.0

    # -- the caller's side (any thread) ------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to close with 1000 and return. Returns at once; thread-safe, idempotent."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(self._stop.set)

    def request_snapshot(self, symbol: str) -> None:
        """Fetch `symbol`'s REST book snapshot; its frames reach the sink. Supersedes any
        request for `symbol` still in flight. Thread-safe."""
        symbol = symbol.lower()  # one epoch per symbol however the caller spells it
        with self._lock:
            epoch = self._epochs.get(symbol, 0) + 1
            self._epochs[symbol] = epoch
            loop = self._loop
            if loop is None:  # before run(): it starts the queued requests
                self._queued.append((symbol, epoch))
                return
        try:
            loop.call_soon_threadsafe(self._start_snapshot, symbol, epoch)
        except RuntimeError as e:
            raise FeedError(f"snapshot of {symbol} requested after the feed stopped") from e

    def pending(self) -> int:
        """Messages received (parsed by websockets) and not yet handed on, on the connections
        handed on now: more than 0 inside a burst (the rest of its TCP chunk). Read by the
        hand-off on the network loop."""
        active, pending = self._active, self._pending  # per frame: no generator
        n = 0 if active is None else len(active.ws.unhanded)
        return n if pending is None else n + len(pending.ws.unhanded)

    def send(self, messages: Sequence[bytes]) -> None:
        """Send `messages` on the connection handed on now (e.g. a Coinbase level2
        resubscribe after a sequence gap); each one is an OUT frame. Thread-safe; dropped
        when no connection is up (a reconnect subscribes afresh anyway)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._start_send, list(messages))

    def _start_send(self, messages: list[bytes]) -> None:
        if not self._stop.is_set():
            self._spawn(self._send(messages))

    async def _send(self, messages: list[bytes]) -> None:
        link = self._active
        if link is None:
            return
        for i, message in enumerate(messages):
            if i:
                await asyncio.sleep(self._config.subscribe_interval_s)
            self._emit(link.conn_id, Direction.OUT, self._profile.stream_of(message), message)
            await link.ws.send(message, text=True)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected until `stop()`. Raises FeedError (HTTP 451 ...) or what
        the sink raised; connection failures are retried, never raised."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not None:
                raise InvariantViolation("FeedConnection.run() may run only once")
            self._loop = loop
            queued, self._queued = self._queued, []
            if self._stopping:
                self._stop.set()
        self._rest_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ticktape-rest")
        for symbol, epoch in queued:
            self._start_snapshot(symbol, epoch)
        stop_wait = loop.create_task(self._stop.wait())
        try:
            lost = False
            while not self._stop.is_set():
                if self._active is None:
                    link = await self._connect(delay_first=lost)
                    if link is None:
                        break
                    self._activate(link, reconnect=lost)
                await self._supervise(stop_wait)
                lost = True
        finally:
            stop_wait.cancel()
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    async def _connect(self, *, delay_first: bool) -> Link | None:
        """Open a connection, retrying with backoff until it works; None once stopped."""
        delay_next = delay_first
        while True:
            if delay_next:
                delay = self._backoff.next_delay()
                self.recent_delays.append(delay)
                self.stats.backoff_s = delay
                waited = await self._wait(delay)
                self.stats.backoff_s = 0.0
                if not waited:
                    return None
            delay_next = True
            if not await self._wait(self._limiter.reserve()):
                return None
            try:
                return await self._open_unless_stopped()
            except RETRYABLE as e:
                self._note_error(e)

    async def _open(self, *, rollover: bool) -> Link:
        """Connect, hand on CONNECT, start reading, subscribe (each message an OUT frame)."""
        cfg = self._config
        client_ping = cfg.client_ping_interval_s if self._profile.needs_client_ping else None
        try:
            ws = await connect(
                self.url,
                compression=None,  # Binance: saves CPU and ~50 KiB per connection
                open_timeout=cfg.open_timeout_s,
                ping_interval=client_ping,
                ping_timeout=client_ping,
                close_timeout=cfg.close_timeout_s,
                max_queue=cfg.max_queue,
                max_size=cfg.max_size,
                create_connection=WatchedConnection,
            )
        except InvalidStatus as e:
            if e.response.status_code == 451:
                raise self._refused(self.url) from e
            raise
        now = time.monotonic()
        link = Link(next(self._conn_ids), cast(WatchedConnection, ws), now, now)
        self.stats.connects += 1
        try:
            self._emit(link.conn_id, Direction.CONNECT, "", self.url.encode())
            if rollover:
                self._pending = link  # before reading: its first data frame makes the switch
            link.reader = self._spawn(self._read(link))
            for i, message in enumerate(self._profile.subscribe_messages(cfg.symbols)):
                if i:
                    await asyncio.sleep(cfg.subscribe_interval_s)
                self._emit(link.conn_id, Direction.OUT, self._profile.stream_of(message), message)
                await ws.send(message, text=True)
        except BaseException:
            if self._pending is link:
                self._pending = None
            ws.transport.abort()
            raise
        return link

    async def _read(self, link: Link) -> None:
        try:
            await self._pump(link)
        except Exception as e:  # the sink refused a frame: fatal, raised by run()
            self._fail(e)

    async def _pump(self, link: Link) -> None:
        """Messages are handed on from the connection's `data_received` (`_on_message`); this
        task holds reading while the inbox is full and hands on the CLOSE at the end."""
        ws, backpressure = link.ws, self._backpressure
        ws.hand_on_to(functools.partial(self._on_message, link))
        while await ws.wait_paused():  # only ever with a backpressure
            if backpressure is not None:
                await self._hold(link, backpressure)
            ws.resume()
        e = ws.close_exc
        sent_first = link.close_note != "" and e.sent is not None
        close = e.sent if sent_first else e.rcvd
        code = close.code if close is not None else 1006
        reason = close.reason if close is not None and close.reason else link.close_note
        self.stats.last_close_code, self.stats.last_close_reason = code, reason
        self._emit(link.conn_id, Direction.CLOSE, "", f"{code} {reason}".encode())

    def _on_message(self, link: Link, payload: bytes) -> bool:
        """Per message, inside `data_received`: stamp it at once and hand it on. False: the
        inbox is full, stop reading."""
        self._on_frame(link, self._stamper.stamp(link.conn_id, Direction.IN, "", payload))
        backpressure = self._backpressure
        return backpressure is None or not backpressure.full or link.retired

    @staticmethod
    async def _hold(link: Link, backpressure: Backpressure) -> None:
        """Stop reading until the inbox has room: TCP slows the sender. Also while stopping:
        the consumer drains to the end (or closes the inbox, which releases the reader)."""
        link.held = True
        try:
            await backpressure.wait_for_room()
        finally:
            link.held = False
            link.resumed_at = time.monotonic()

    def _on_frame(self, link: Link, frame: Frame) -> None:
        """Per message, on the hot path: the stamp is taken; name the stream, hand it on."""
        stream = frame.stream = self._profile.stream_of(frame.payload)
        stats = self.stats
        stats.frames += 1
        stats.bytes_in += len(frame.payload)
        stats.last_frame_wall_ns = frame.ts_recv
        if self._profile.is_data(stream):
            stats.data_frames += 1
            link.last_data = time.monotonic()
            if link is self._pending:
                self._switch(link)
        elif self._profile.is_shutdown_notice(stream) and link is self._active:
            stats.shutdown_notices += 1
            self._rollover_wanted = True
            self._start_rollover(time.monotonic())
        if link.retired:
            stats.overlap_dropped += 1
            return
        self._sink(frame)

    # -- supervision: timers, rollover, loss ---------------------------------------------------

    async def _supervise(self, stop_wait: asyncio.Task[bool]) -> None:
        """Watch the active connection until it is lost or stop() is called."""
        while not self._stop.is_set():
            link = self._active
            if link is None or link.reader is None:
                return
            waits: set[asyncio.Future[Any]] = {stop_wait, link.reader}
            if self._opening is not None:
                waits.add(self._opening)
            await asyncio.wait(waits, timeout=self._tick, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                return
            now = time.monotonic()
            self._check_rollover(now)
            if self._active is not link:  # switched meanwhile
                continue
            if link.reader.done():
                if not self._promote_pending():
                    return
                continue
            await self._check_timers(link, now)

    async def _check_timers(self, link: Link, now: float) -> None:
        cfg = self._config
        if link.close_note or link.held:
            return  # being closed already; or we are not reading: the silence is ours
        if now - max(link.ws.last_rx, link.resumed_at) > cfg.dead_peer_timeout_s:
            self.stats.dead_peer_timeouts += 1
            link.close_note = "dead-peer timeout"
            link.ws.transport.abort()  # a dead peer would not finish a closing handshake
        elif now - max(link.last_data, link.resumed_at) > cfg.idle_timeout_s:
            self.stats.idle_timeouts += 1
            await self._close(link, 1000, "idle timeout")
        else:
            if now - link.opened_at >= cfg.max_lifetime_s:
                self._rollover_wanted = True
            if self._rollover_wanted:
                self._start_rollover(now)
            if self._backoff.attempts and now - link.opened_at >= cfg.stable_after_s:
                self._backoff.reset()

    async def _shutdown(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        links = [link for link in (self._active, self._pending) if link is not None]
        self._active = self._pending = self._opening = None
        for task in self._snapshot_tasks:
            task.cancel()
        await asyncio.gather(*(self._close(link, 1000, "stop") for link in links))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._rest_pool is not None:
            self._rest_pool.shutdown(wait=False, cancel_futures=True)

    # -- helpers -------------------------------------------------------------------------------

    async def _open_unless_stopped(self) -> Link | None:
        """Open a connection unless stop() comes first (then None)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._open(rollover=False))
        stop_wait = loop.create_task(self._stop.wait())
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not task.done():
            task.cancel()  # _open cleans up after itself
            await asyncio.gather(task, return_exceptions=True)
            if task.cancelled():
                return None
        return task.result()  # opened after all: run() closes it on the way out


__all__ = ["FeedConnection"]
