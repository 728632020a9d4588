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
  arrived (`_WatchedConnection`) and a watchdog compares. `ws.latency` would not do: it times
  only our own pings, and Binance counts client pings against its 5 messages/s;
- idle feed: no data frame for `idle_timeout_s` (alive but silent) -> close, reconnect;
- make-before-break rollover at `max_lifetime_s` and on a server shutdown notice: open and
  subscribe a new connection, keep handing on the old one until the new one delivers its first
  data frame, then hand on only the new one and close the old one; the overlap is de-duplicated
  downstream by update id / trade id;
- HTTP 451 (restricted location) on the upgrade or on REST is a FeedError, never retried;
  everything else on the socket is retried until stop().

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
import http.client
import itertools
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from simulator.errors import ConfigError, FeedError, InvariantViolation
from simulator.live.frames import SNAPSHOT_SUFFIX, Direction, Frame, Stamper
from simulator.live.frames import stream_of as combined_stream_of

BINANCE_WS_URL: Final = "wss://stream.binance.com:9443"
BINANCE_REST_URL: Final = "https://api.binance.com"
BINANCE_US_WS_URL: Final = "wss://stream.binance.us:9443"
BINANCE_US_REST_URL: Final = "https://api.binance.us"

_REFUSAL_HINTS: Final = {
    "binance": f"Binance.US serves the same feed: --url {BINANCE_US_WS_URL} "
    f"--rest-url {BINANCE_US_REST_URL}",
}
# refused, reset, timed out, closed (1006, 1001 ...) or a rejected upgrade other than 451
_RETRYABLE: Final = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)


class VenueProfile(Protocol):
    """What differs between venues; the connection manager does the rest."""

    @property
    def name(self) -> str: ...

    @property
    def needs_client_ping(self) -> bool:
        """True when the venue wants client pings; False when the server pings (Binance)."""
        ...

    def stream_url(self, base_url: str, symbols: Sequence[str]) -> str:
        """The websocket URL to open for `symbols`."""
        ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[bytes]:
        """Text messages to send after each connect, in order ([] if the URL names the streams)."""
        ...

    def stream_of(self, payload: bytes) -> str:
        """The stream a received message belongs to; cheap (runs on every message)."""
        ...

    def is_data(self, stream: str) -> bool:
        """Market data: resets the idle timer and completes a rollover switch."""
        ...

    def snapshot_url(self, rest_base: str, symbol: str) -> str | None:
        """The REST book snapshot URL, or None when the feed brings its own snapshot."""
        ...

    def is_shutdown_notice(self, stream: str) -> bool:
        """The server is about to close this connection: roll over now."""
        ...


@dataclass(frozen=True, slots=True)
class BinanceProfile:
    """Binance Spot JSON combined streams; binance.us speaks the same (LIVE.md §1.1-1.2)."""

    streams: tuple[str, ...] = ("bookTicker", "trade", "depth@100ms")
    depth_limit: int = 1000  # REST weight 50; 5000 costs 250
    time_unit: str | None = None  # "MICROSECOND": µs timestamps, recorded in the URL

    @property
    def name(self) -> str:
        return "binance"

    @property
    def needs_client_ping(self) -> bool:
        return False  # the server pings every 20 s; client pings count against 5 msgs/s

    def stream_url(self, base_url: str, symbols: Sequence[str]) -> str:
        names = [f"{symbol.lower()}@{stream}" for symbol in symbols for stream in self.streams]
        if len(names) > 1024:
            raise ConfigError(f"{len(names)} streams on one connection; Binance allows 1024")
        url = f"{base_url.rstrip('/')}/stream?streams={'/'.join(names)}"
        return url if self.time_unit is None else f"{url}&timeUnit={self.time_unit}"

    def subscribe_messages(self, symbols: Sequence[str]) -> list[bytes]:
        return []  # the combined-stream URL already subscribes

    def stream_of(self, payload: bytes) -> str:
        return combined_stream_of(payload)

    def is_data(self, stream: str) -> bool:
        return stream != "" and not stream.startswith("!")  # "": a reply; "!...": a notice

    def snapshot_url(self, rest_base: str, symbol: str) -> str | None:
        return (
            f"{rest_base.rstrip('/')}/api/v3/depth?symbol={symbol.upper()}&limit={self.depth_limit}"
        )

    def is_shutdown_notice(self, stream: str) -> bool:
        return stream == "!serverShutdown"


_POSITIVE: Final = (
    "backoff_initial_s",
    "backoff_cap_s",
    "connect_interval_s",
    "open_timeout_s",
    "close_timeout_s",
    "dead_peer_timeout_s",
    "idle_timeout_s",
    "max_lifetime_s",
    "rollover_timeout_s",
    "client_ping_interval_s",
    "max_queue",
    "max_size",
    "rest_timeout_s",
    "snapshot_tries",
    "snapshot_backoff_initial_s",
    "snapshot_backoff_cap_s",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Connection settings. Durations are float seconds: they are socket and timer settings at
    the network edge, handed to asyncio as they are, and never reach the pipeline."""

    url: str  # websocket base, e.g. BINANCE_WS_URL
    rest_url: str  # REST base, e.g. BINANCE_REST_URL
    symbols: tuple[str, ...]
    seed: int = 0  # backoff jitter
    backoff_initial_s: float = 0.5
    backoff_factor: float = 2.0
    backoff_cap_s: float = 30.0
    backoff_jitter: float = 0.25  # ± fraction
    stable_after_s: float = 10.0  # a connection this old resets the backoff
    connect_interval_s: float = 1.0  # Binance: 300 attempts / 5 min / IP
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    dead_peer_timeout_s: float = 60.0  # no bytes at all, pings included
    idle_timeout_s: float = 10.0  # no data frame
    max_lifetime_s: float = 23 * 3600 + 50 * 60  # Binance closes at 24 h
    rollover_timeout_s: float = 30.0  # the new connection must deliver data within this
    subscribe_interval_s: float = 0.2  # between subscribe messages (Binance: 5 msgs/s)
    client_ping_interval_s: float = 20.0  # only for profiles that need client pings
    max_queue: int = 256  # websockets' receive buffer, in messages; then TCP pushes back
    max_size: int = 2**22  # largest message, bytes
    rest_timeout_s: float = 10.0
    snapshot_tries: int = 5
    snapshot_backoff_initial_s: float = 0.25
    snapshot_backoff_cap_s: float = 3.0
    rest_max_wait_s: float = 60.0  # a longer Retry-After (a 418 ban) fails the snapshot

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"url must start with ws:// or wss://, was {self.url!r}")
        if not self.rest_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"rest_url must start with http:// or https://, was {self.rest_url!r}"
            )
        if not self.symbols:
            raise ConfigError("symbols is empty; name at least one, e.g. ('BTCUSDT',)")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, was {getattr(self, name)}")
        if self.backoff_factor < 1 or not 0 <= self.backoff_jitter < 1:
            raise ConfigError("backoff_factor must be >= 1 and backoff_jitter in [0, 1)")


class Backoff:
    """Reconnect delays: `initial * factor**n`, capped, times a seeded uniform draw from
    [1 - jitter, 1 + jitter], and never above the cap (a hard ceiling a user can rely on)."""

    __slots__ = ("_base", "_cap", "_factor", "_initial", "_jitter", "_rng", "attempts")

    def __init__(
        self, initial_s: float, factor: float, cap_s: float, jitter: float, rng: np.random.Generator
    ) -> None:
        self._initial, self._factor, self._cap, self._jitter = initial_s, factor, cap_s, jitter
        self._rng = rng
        self._base = min(cap_s, initial_s)
        self.attempts = 0

    def next_delay(self) -> float:
        spread = float(self._rng.uniform(-self._jitter, self._jitter))
        delay = min(self._cap, self._base * (1.0 + spread))
        self._base = min(self._cap, self._base * self._factor)  # no overflow however long
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._base = min(self._cap, self._initial)
        self.attempts = 0


class ConnectLimiter:
    """At most one connect attempt per `interval_s`, whatever asks (reconnects, rollovers)."""

    __slots__ = ("_interval", "_next", "_now")

    def __init__(self, interval_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._now = now
        self._next = -float("inf")

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait for it (seconds, >= 0)."""
        now = self._now()
        at = max(now, self._next)
        self._next = at + self._interval
        return at - now


@dataclass(slots=True)
class ConnectionStats:
    """Counters for a dashboard on another thread: plain numbers, written only by the loop."""

    connects: int = 0  # connections opened, rollover ones included
    reconnects: int = 0  # connections that replaced a lost one (a hole is possible)
    rollovers: int = 0  # make-before-break switches (no hole)
    connect_failures: int = 0
    frames: int = 0  # messages received, every connection
    bytes_in: int = 0
    data_frames: int = 0
    overlap_dropped: int = 0  # an old connection's messages after the switch
    idle_timeouts: int = 0
    dead_peer_timeouts: int = 0
    shutdown_notices: int = 0
    last_frame_wall_ns: int = 0
    conn_id: int = 0  # the connection handed on; 0: none
    last_close_code: int = 0
    last_close_reason: str = ""
    last_error: str = ""
    last_error_wall_ns: int = 0
    backoff_s: float = 0.0  # the backoff being waited now
    rest_requests: int = 0
    rest_429: int = 0  # 429 and 418 answers
    snapshots: int = 0
    snapshot_failures: int = 0
    snapshots_superseded: int = 0


class _WatchedConnection(ClientConnection):
    """Notes when bytes last arrived, pings and pongs included, for the dead-peer watchdog."""

    last_rx: float = 0.0  # time.monotonic(); the handshake response sets it

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        super().data_received(data)


@dataclass(slots=True, eq=False)
class _Link:
    conn_id: int
    ws: _WatchedConnection
    opened_at: float  # time.monotonic()
    last_data: float
    reader: asyncio.Task[None] | None = None
    retired: bool = False  # switched away from: its messages are no longer handed on
    close_note: str = ""  # why we closed it


class FeedConnection:
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
    ) -> None:
        self._profile, self._config, self._stamper = profile, config, stamper
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
        self._active: _Link | None = None
        self._pending: _Link | None = None  # a rollover connection waiting for its first data
        self._opening: asyncio.Task[_Link] | None = None  # a rollover connection being opened
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

    async def _connect(self, *, delay_first: bool) -> _Link | None:
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
            except _RETRYABLE as e:
                self._note_error(e)

    async def _open(self, *, rollover: bool) -> _Link:
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
                create_connection=_WatchedConnection,
            )
        except InvalidStatus as e:
            if e.response.status_code == 451:
                raise self._refused(self.url) from e
            raise
        now = time.monotonic()
        link = _Link(next(self._conn_ids), cast(_WatchedConnection, ws), now, now)
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

    async def _read(self, link: _Link) -> None:
        try:
            await self._pump(link)
        except Exception as e:  # the sink refused a frame: fatal, raised by run()
            self._fail(e)

    async def _pump(self, link: _Link) -> None:
        stamper, on_frame = self._stamper, self._on_frame
        try:
            while True:
                payload = await link.ws.recv(decode=False)
                on_frame(link, stamper.stamp(link.conn_id, Direction.IN, "", payload))
        except ConnectionClosed as e:
            sent_first = link.close_note != "" and e.sent is not None
            close = e.sent if sent_first else e.rcvd
            code = close.code if close is not None else 1006
            reason = close.reason if close is not None and close.reason else link.close_note
            self.stats.last_close_code, self.stats.last_close_reason = code, reason
            self._emit(link.conn_id, Direction.CLOSE, "", f"{code} {reason}".encode())

    def _on_frame(self, link: _Link, frame: Frame) -> None:
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

    async def _check_timers(self, link: _Link, now: float) -> None:
        cfg = self._config
        if link.close_note:
            return  # being closed already
        if now - link.ws.last_rx > cfg.dead_peer_timeout_s:
            self.stats.dead_peer_timeouts += 1
            link.close_note = "dead-peer timeout"
            link.ws.transport.abort()  # a dead peer would not finish a closing handshake
        elif now - link.last_data > cfg.idle_timeout_s:
            self.stats.idle_timeouts += 1
            await self._close(link, 1000, "idle timeout")
        else:
            if now - link.opened_at >= cfg.max_lifetime_s:
                self._rollover_wanted = True
            if self._rollover_wanted:
                self._start_rollover(now)
            if self._backoff.attempts and now - link.opened_at >= cfg.stable_after_s:
                self._backoff.reset()

    def _start_rollover(self, now: float) -> None:
        if self._opening is None and self._pending is None and now >= self._rollover_not_before:
            self._opening = asyncio.get_running_loop().create_task(self._open_rollover())

    async def _open_rollover(self) -> _Link:
        await asyncio.sleep(self._limiter.reserve())
        return await self._open(rollover=True)

    def _check_rollover(self, now: float) -> None:
        """Collect a finished rollover open; give up on a new connection that stays silent."""
        opening = self._opening
        if opening is not None and opening.done():
            self._opening = None
            error = None if opening.cancelled() else opening.exception()
            if isinstance(error, _RETRYABLE):
                self._note_error(error)
                self._rollover_not_before = now + self._rollover_backoff.next_delay()
            elif error is not None:
                self._fail(error)
        pending = self._pending
        if pending is not None and (
            (pending.reader is not None and pending.reader.done())
            or now - pending.opened_at > self._config.rollover_timeout_s
        ):
            self._pending = None
            self._spawn(self._close(pending, 1000, "rollover timeout"))
            self._rollover_not_before = now + self._rollover_backoff.next_delay()

    def _switch(self, link: _Link) -> None:
        """Make-before-break: `link` delivered data, so it becomes the feed; close the old one."""
        old = self._active
        self._pending = None
        self._rollover_wanted = False
        self._rollover_backoff.reset()
        self._activate(link, reconnect=False)
        self.stats.rollovers += 1
        if old is not None:
            old.retired = True
            self._spawn(self._close(old, 1000, "rollover"))

    def _promote_pending(self) -> bool:
        """The active connection is gone: a rollover connection already open takes over
        (counted as a reconnect: there may be a hole). False when there is none."""
        if self._opening is not None:  # still connecting or subscribing: _open aborts it
            self._opening.cancel()
            self._opening = None
            self._pending = None
        pending, self._pending = self._pending, None
        if pending is None or pending.reader is None or pending.reader.done():
            self._active = None
            self.stats.conn_id = 0
            return False
        self._activate(pending, reconnect=True)
        return True

    def _activate(self, link: _Link, *, reconnect: bool) -> None:
        self._active = link
        self.stats.conn_id = link.conn_id
        if reconnect:
            self.stats.reconnects += 1

    async def _close(self, link: _Link, code: int, reason: str) -> None:
        link.close_note = reason
        await link.ws.close(code, reason)  # waits for the handshake, close_timeout at most
        if link.reader is not None:
            await link.reader  # it hands on the CLOSE frame

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

    # -- REST snapshots ------------------------------------------------------------------------

    def _start_snapshot(self, symbol: str, epoch: int) -> None:
        if not self._stop.is_set():
            self._snapshot_tasks.add(self._spawn(self._snapshot(symbol, epoch)))

    async def _snapshot(self, symbol: str, epoch: int) -> None:
        """GET the snapshot with retries (Retry-After, else 250 ms doubling to 3 s), then hand
        on HTTP_RESP: the body, or b"" after `snapshot_tries` failures."""
        cfg = self._config
        url = self._profile.snapshot_url(cfg.rest_url, symbol)
        if url is None:
            return
        stream = symbol.lower() + SNAPSHOT_SUFFIX
        conn_id = self._active.conn_id if self._active is not None else 0
        delay = cfg.snapshot_backoff_initial_s
        for _ in range(cfg.snapshot_tries):
            blocked = self._rest_blocked_until - time.monotonic()
            if blocked > cfg.rest_max_wait_s:
                break  # banned for longer than we wait: fail now, the caller asks again later
            if not await self._wait(blocked) or self._superseded(symbol, epoch):
                return
            self._emit(conn_id, Direction.HTTP_REQ, stream, url.encode())
            status, retry_after, body = await self._get(url)
            if self._superseded(symbol, epoch):
                return
            if status == 200:
                self.stats.snapshots += 1
                self._emit(conn_id, Direction.HTTP_RESP, stream, body)
                return
            self._on_rest_error(url, status, retry_after, body)
            if retry_after is None and not await self._wait(delay):
                return
            delay = min(cfg.snapshot_backoff_cap_s, delay * 2)
        self.stats.snapshot_failures += 1
        self._emit(conn_id, Direction.HTTP_RESP, stream, b"")

    async def _get(self, url: str) -> tuple[int, float | None, bytes]:
        self.stats.rest_requests += 1
        loop = asyncio.get_running_loop()
        # a pool of our own, not to_thread: asyncio.run() would wait for a hung request on stop
        return await loop.run_in_executor(
            self._rest_pool, _http_get, url, self._config.rest_timeout_s
        )

    def _on_rest_error(self, url: str, status: int, retry_after: float | None, body: bytes) -> None:
        self.stats.last_error = f"HTTP {status} from {url}" if status else body.decode()
        self.stats.last_error_wall_ns = self._wall()
        if status == 451:
            raise self._refused(url)
        if status in (429, 418):  # 418: banned for ignoring 429s; honour Retry-After
            self.stats.rest_429 += 1
            if retry_after is not None:
                until = time.monotonic() + retry_after
                self._rest_blocked_until = max(self._rest_blocked_until, until)
        elif 400 <= status < 500 and status != 408:
            text = body[:200].decode("utf-8", "replace")
            raise FeedError(f"{url}: HTTP {status} {text}; check the symbol and --rest-url")

    def _superseded(self, symbol: str, epoch: int) -> bool:
        with self._lock:
            superseded = self._epochs[symbol] != epoch
        if superseded:
            self.stats.snapshots_superseded += 1
        return superseded

    # -- helpers -------------------------------------------------------------------------------

    def _emit(self, conn_id: int, direction: Direction, stream: str, payload: bytes) -> None:
        self._sink(self._stamper.stamp(conn_id, direction, stream, payload))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._snapshot_tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self._stop.set()

    def _note_error(self, error: BaseException) -> None:
        self.stats.connect_failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        self.stats.last_error_wall_ns = self._wall()

    def _refused(self, url: str) -> FeedError:
        hint = _REFUSAL_HINTS.get(self._profile.name, "use an endpoint that serves your region")
        return FeedError(
            f"{url} answered HTTP 451: {self._profile.name} refuses connections from this "
            f"location (not retried). {hint}"
        )

    async def _wait(self, delay: float) -> bool:
        """Sleep `delay` seconds; False (at once) if stop() is called meanwhile."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        return not self._stop.is_set()

    async def _open_unless_stopped(self) -> _Link | None:
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


def _http_get(url: str, timeout_s: float) -> tuple[int, float | None, bytes]:
    """GET on a worker thread: (status, Retry-After seconds, body); status 0: no answer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), None, bytes(response.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, _retry_after(e.headers.get("Retry-After")), e.read()
        finally:
            e.close()
    except (OSError, http.client.HTTPException) as e:  # refused, reset, DNS, timeout, garbled
        return 0, None, f"{type(e).__name__}: {e} ({url})".encode()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form: fall back to our backoff


class LiveNetwork:
    """A FeedConnection (same arguments) run on its own event loop in a daemon thread. What
    ended the loop with an error is raised again by `check()` / `stop()` in the caller's thread."""

    def __init__(
        self,
        profile: VenueProfile,
        config: ConnectionConfig,
        stamper: Stamper,
        sink: Callable[[Frame], None],
        wall: Callable[[], int],
        *,
        conn_ids: Iterator[int] | None = None,
    ) -> None:
        self.connection = FeedConnection(profile, config, stamper, sink, wall, conn_ids=conn_ids)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

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

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connections (1000) and wait for the thread; then `check()`."""
        self.connection.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise FeedError(f"the network thread did not stop within {timeout} s")
        self.check()

    def _main(self) -> None:
        try:
            asyncio.run(self.connection.run())
        except BaseException as e:  # handed to the caller's thread by check() / stop()
            self._error = e


__all__ = [
    "BINANCE_REST_URL",
    "BINANCE_US_REST_URL",
    "BINANCE_US_WS_URL",
    "BINANCE_WS_URL",
    "Backoff",
    "BinanceProfile",
    "ConnectLimiter",
    "ConnectionConfig",
    "ConnectionStats",
    "FeedConnection",
    "LiveNetwork",
    "VenueProfile",
]
