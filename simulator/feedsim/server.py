"""`ticktape feed serve`: a recorded session served on 127.0.0.1 in Binance's wire format.

One shared tape for the whole server, as on an exchange: time does not restart per
connection. The tape starts when a first client subscribes. At paced speeds (`speed` = N
follows the recorded receive-time deltas N times faster, each frame sent within ~0.1 ms of its
due time) it then keeps going, and what is sent while nobody listens is lost. At max speed
(`speed=None`) it never sleeps but awaits each connection's drain, and pauses while no
connection is subscribed, so a test loses nothing between a disconnect and its reconnect except
what a fault drops on purpose. At the end every
connection is closed with 1001 "end of recording".

REST (/api/v3/depth, /time, /exchangeInfo) is answered on the same port from websockets'
`process_request` hook by rest.RestApi, from the server's own book at the current send
position.

Incoming-message limit: websockets answers client pings itself, so only data frames (JSON
control messages) count toward the 5 per second.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from simulator.errors import ConfigError
from simulator.feedsim import binance_wire as wire
from simulator.feedsim.conn_faults import ConnectionFaults
from simulator.feedsim.faults import (
    HTTP_KINDS,
    Fault,
    FaultLog,
    FaultPlan,
    FaultSchedule,
    InjectedFault,
)
from simulator.feedsim.rest import HttpReply, RestApi, error_reply, not_found
from simulator.feedsim.tape import FeedTape

END_OF_RECORDING: Final = "end of recording"
CLOSE_TIMEOUT_S: Final = 2.0
_MIN_SLEEP_S: Final = 0.001  # asyncio's timers wake about this late: the rest in time.sleep
_FINE_SLEEP_S: Final = 0.00002  # closer than this to a frame's due time: send now


def parse_speed(text: str) -> float | None:
    """`1`, `10`, `10x` -> a speed factor; `max` -> None (no pacing)."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text.strip().lower().removesuffix("x"))
    except ValueError:
        speed = 0.0
    if not speed > 0:
        raise ConfigError(f"--speed {text!r}: expected 1 (recorded pace), N (> 0) or max")
    return speed


@dataclass(slots=True, eq=False)
class _Client:
    conn: ServerConnection
    sub: wire.Subscription
    opened_at: float = 0.0  # loop time
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=wire.MAX_INCOMING_PER_S))


class ServerLifecycle:
    """What the feed servers share once started: a websockets server and a tape task.
    `join` (another thread), `wait_done` and `close` (the server's loop), `finished`."""

    _server: Server | None
    _task: asyncio.Task[None] | None
    _finished: threading.Event

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Block (another thread) until the tape ended or the server closed; False on timeout."""
        return self._finished.wait(timeout)

    async def wait_done(self) -> None:
        """Until the tape has ended (or close()) and every connection is closed; re-raises an
        error of the tape task."""
        if self._task is not None:
            await asyncio.wait({self._task})
            if not self._task.cancelled() and (error := self._task.exception()) is not None:
                raise error

    async def close(self) -> None:
        """Stop now (idempotent): close connections with 1001 and stop listening."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})
        await self._shut("server closed")

    async def _shut(self, reason: str) -> None:
        if self._server is not None:
            self._server.close(code=1001, reason=reason)  # idempotent: the first reason wins
            await self._server.wait_closed()
        self._closed()
        self._finished.set()

    def _closed(self) -> None:
        """Release what the server holds once it is shut (a fault log)."""


class FeedServer(ServerLifecycle):
    """The server; `start()` binds it, the tape runs as a task, `wait_done()` awaits its end."""

    def __init__(
        self,
        tape: FeedTape,
        *,
        speed: float | None,
        faults: FaultSchedule | None = None,
        fault_log: Path | None = None,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be > 0 or None (max), found {speed}")
        self.tape = tape
        self.speed = speed
        self._plan = faults.plan(tape) if faults is not None else FaultPlan({}, frozenset())
        self._fault_log_path = fault_log
        self._log = FaultLog(None)
        self._ping = (ping_interval, pong_timeout)
        self._bind = (host, port)
        self._rest = RestApi(tape, self._record)
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._finished = threading.Event()
        self._port = 0
        self.position = 0  # served index of the message being sent (the REST view's position)
        self._t0 = 0.0  # loop time the paced schedule counts from
        self._shift = 0.0  # seconds the schedule moved (silent faults)
        self._yielded_at = 0.0  # loop time the paced tape last let the loop run others
        self._held: list[int] = []  # reordered messages waiting for the next one
        self._twice: set[int] = set()  # duplicated messages
        self._reorder = False
        self._closing: set[asyncio.Task[None]] = set()
        self._conn_faults = ConnectionFaults(self._drop, self._background)
        self.messages = 0  # tape messages processed
        self.frames_sent = 0  # frames written to connections (one message, many clients)
        self.connections = 0  # websocket connections accepted
        self.rate_limited = 0  # connections closed for sending over 5 messages/s
        self.http_requests = 0
        self.error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._log = FaultLog(self._fault_log_path)
        host, port = self._bind
        try:
            self._server = await serve(
                self._handle,
                host,
                port,
                process_request=self._process_request,
                compression=None,
                ping_interval=self._ping[0],
                ping_timeout=self._ping[1],
                close_timeout=CLOSE_TIMEOUT_S,
            )
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        self._port = int(self._server.sockets[0].getsockname()[1])
        for fault in self._plan.at(0):
            if fault.kind in HTTP_KINDS:  # armed before the tape starts: a client may ask first
                self._rest.arm(fault)
        self._task = asyncio.create_task(self._run())

    @property
    def ws_url(self) -> str:
        return f"ws://{self._bind[0]}:{self._port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self._bind[0]}:{self._port}"

    @property
    def injected(self) -> list[InjectedFault]:
        return self._log.entries

    @property
    def faults_injected(self) -> int:
        return len(self._log.entries)

    def _closed(self) -> None:
        self._log.close()

    # -- the tape ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._listening.wait()
            self._t0 = asyncio.get_running_loop().time()
            for i in range(len(self.tape)):
                await self._step(i)
            await self._flush_held()
        except Exception as e:
            self.error = e
            await self._shut("server error")
            raise
        await self._shut(END_OF_RECORDING)

    async def _step(self, i: int) -> None:
        if self.speed is None:
            await self._listening.wait()
        else:
            await self._pace(i)
        for fault in self._plan.at(i):
            await self._fire(i, fault)
        if self.speed is None:
            await self._listening.wait()  # again: a fault may have disconnected everyone
            await asyncio.sleep(0)  # sends rarely block: let control and REST requests in
        self.position = i
        self._rest.advance(self.tape.start + i)
        self.messages += 1
        if i in self._plan.skipped:
            return
        if self._reorder:
            self._reorder = False
            self._held.append(i)
            return
        await self._deliver(i)
        await self._flush_held()

    async def _pace(self, i: int) -> None:
        assert self.speed is not None
        ts, start = self.tape.ts_recv, self.tape.start
        due = self._t0 + self._shift + (ts[start + i] - ts[start]) / 1e9 / self.speed
        loop = asyncio.get_running_loop()
        delay = due - loop.time()
        if delay > _MIN_SLEEP_S:
            await asyncio.sleep(delay - _MIN_SLEEP_S)  # the loop stays free for control and REST
            self._yielded_at = loop.time()
            delay = due - self._yielded_at
        if delay > _FINE_SLEEP_S:
            # the last < 1 ms at the OS timer's resolution, the loop waiting with it: asyncio
            # wakes ~1 ms late, so frames due within 1 ms went out together (20 ms of the tape
            # at 20x: bookTicker bursts of 64+ the recording never had)
            time.sleep(delay)
        if loop.time() - self._yielded_at > _MIN_SLEEP_S:
            # frames less than 1 ms apart never reach asyncio.sleep above: let control, REST
            # and pings in at least every ms (they waited seconds at 20x the synthetic tape)
            await asyncio.sleep(0)
            self._yielded_at = loop.time()

    async def _flush_held(self) -> None:
        held, self._held = self._held, []
        for j in held:
            await self._deliver(j)

    async def _deliver(self, i: int) -> None:
        index = self.tape.start + i
        stream, text = self.tape.streams[index], self.tape.texts[index]
        times = 2 if i in self._twice else 1
        for client in list(self._clients.values()):
            if stream not in client.sub.streams:
                continue
            payload = text if client.sub.combined else wire.raw_payload(text, stream)
            for _ in range(times):
                await self._send(client, payload)

    async def _send(self, client: _Client, payload: bytes) -> None:
        try:
            await client.conn.send(payload, text=True)
            self.frames_sent += 1
        except ConnectionClosed:
            self._drop(client.conn)

    # -- faults ------------------------------------------------------------------------------

    def _record(self, kind: str, **details: object) -> None:
        ts = self.tape.ts_recv[self.tape.start + self.position]
        self._log.record(self.position, ts, kind, **details)

    async def _fire(self, i: int, fault: Fault) -> None:
        """Inject one fault scheduled at served message i (before it is sent)."""
        self.position = i
        if fault.kind in HTTP_KINDS:
            if i > 0:  # those at 0 were armed by start()
                self._rest.arm(fault)
            return
        details: dict[str, object] = {"fault": fault.number}
        if fault.kind in ("dead_peer", "reject_subscribe", "slow_consumer", "lifetime"):
            details |= self._connection_fault(fault)
        elif fault.kind == "disconnect":
            details |= {"mode": fault.mode, "connections": self._disconnect(fault.mode)}
        elif fault.kind == "gap":
            details |= {"symbol": fault.symbol, "count": len(fault.skip), "skipped": fault.skip}
        elif fault.kind == "duplicate":
            self._twice.add(i)
        elif fault.kind == "reorder":
            self._reorder = i + 1 < len(self.tape)
            details["sent_after"] = i + 1 if self._reorder else None
        elif fault.kind == "shutdown_notice":
            details |= {"ms": fault.ms, "connections": await self._shutdown_notice(fault.ms)}
        else:  # delay, silent
            details["ms"] = fault.ms
        self._record(fault.kind, **details)
        if fault.kind in ("delay", "silent"):
            await self._stall(fault)

    def _connection_fault(self, fault: Fault) -> dict[str, object]:
        faults, conns = self._conn_faults, list(self._clients)
        if fault.kind == "dead_peer":
            return {"ms": fault.ms, "connections": faults.go_dead(conns, fault.ms)}
        if fault.kind == "slow_consumer":
            return {"bytes": fault.buffered, "connections": faults.kick_slow(conns, fault.buffered)}
        if fault.kind == "lifetime":
            opened = {c.conn: c.opened_at for c in self._clients.values()}
            return {"ms": fault.ms, "connections": faults.limit_lifetime(opened, fault.ms)}
        faults.rejects_left += fault.count or 1  # reject_subscribe
        return {"count": fault.count}

    async def _stall(self, fault: Fault) -> None:
        await asyncio.sleep(fault.ms / 1000)
        if fault.kind == "silent":  # the stream resumes at its pace; after a delay it catches up
            self._shift += fault.ms / 1000

    def _disconnect(self, mode: str) -> int:
        clients = list(self._clients)
        for conn in clients:
            self._drop(conn)
            if mode == "abrupt":
                conn.transport.abort()
            else:
                self._background(conn.close(1001))
        return len(clients)

    def _background(self, closing: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(closing)
        self._closing.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._closing.discard)

    async def _shutdown_notice(self, ms: int) -> int:
        ts_ms = self.tape.ts_recv[self.tape.start + self.position] // 1_000_000
        clients = list(self._clients.values())
        for client in clients:
            await self._send(client, wire.shutdown_notice(ts_ms, combined=client.sub.combined))

        def close_them() -> None:
            for client in clients:
                self._drop(client.conn)
                self._background(client.conn.close(1001, "server shutdown"))

        asyncio.get_running_loop().call_later(ms / 1000, close_them)
        return len(clients)

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        sub = wire.path_subscription(conn.request.path)
        assert isinstance(sub, wire.Subscription)  # process_request let only these through
        client = _Client(conn, sub, asyncio.get_running_loop().time())
        self._clients[conn] = client
        self._conn_faults.expire_later(conn, client.opened_at)
        self.connections += 1
        self._update_listening()
        try:
            async for message in conn:
                if self._over_rate(client):
                    self.rate_limited += 1
                    self._drop(conn)
                    await conn.close(1008, "Too many requests")
                    break
                refusal = (
                    wire.subscribe_refusal(message) if self._conn_faults.rejects_left else None
                )
                if refusal is not None and self._conn_faults.reject():
                    await conn.send(refusal, text=True)
                    continue
                await conn.send(wire.control_reply(message, client.sub), text=True)
                self._update_listening()
        except ConnectionClosed:
            pass  # the client went away: nothing to answer
        finally:
            self._drop(conn)

    def _over_rate(self, client: _Client) -> bool:
        now = asyncio.get_running_loop().time()
        arrivals = client.arrivals
        over = len(arrivals) == arrivals.maxlen and now - arrivals[0] < 1.0
        arrivals.append(now)
        return over

    def _drop(self, conn: ServerConnection) -> None:
        self._clients.pop(conn, None)
        self._update_listening()

    def _update_listening(self) -> None:
        if any(c.sub.streams for c in self._clients.values()):
            self._listening.set()
        else:
            self._listening.clear()

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """REST requests and refused upgrades get an HTTP answer; None lets the upgrade on."""
        path, _, query = request.path.partition("?")
        if path.startswith("/api/"):
            self.http_requests += 1
            return http_response(self._rest.answer(path, query))
        sub = wire.path_subscription(request.path)
        if sub is None:
            return http_response(not_found(path))
        if isinstance(sub, str):
            return http_response(error_reply(400, 2, f"Invalid request: {sub}"))
        if sub.streams and self._conn_faults.reject():
            return http_response(error_reply(400, 2, wire.REFUSED))
        refused = self._rest.refuse_upgrade(request.path)
        return None if refused is None else http_response(refused)


def http_response(reply: HttpReply) -> Response:
    """`reply` as the websockets server's HTTP answer (JSON, connection closed after)."""
    headers = Headers(
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(reply.body))),
            ("Connection", "close"),
            *reply.headers,
        ]
    )
    return Response(reply.status, HTTPStatus(reply.status).phrase, headers, reply.body)


class Servable(Protocol):
    """A feed server `serve_until_signal` can run (Binance's, Coinbase's)."""

    @property
    def ws_url(self) -> str: ...
    @property
    def rest_url(self) -> str: ...
    async def start(self) -> None: ...
    async def wait_done(self) -> None: ...
    async def close(self) -> None: ...


ServerT = TypeVar("ServerT", bound=Servable)


@contextmanager
def in_background(server: ServerT, name: str) -> Iterator[ServerT]:
    """Run `server` on its own event loop in a daemon thread; yield it started.

    For tests and callers on other threads: a client can run in the calling thread. Leaving
    the block closes the server; an error of the server thread re-raises here.
    """
    ready = threading.Event()
    stop: list[Callable[[], object]] = []
    errors: list[BaseException] = []

    async def main() -> None:
        closing = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(closing.set))
        try:
            await server.start()
        finally:
            ready.set()
        await closing.wait()
        await server.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # handed to the calling thread and re-raised there
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    try:
        if not errors:
            yield server
    finally:
        if stop:
            stop[0]()
        thread.join()
    if errors:
        raise errors[0]


@contextmanager
def serving(tape: FeedTape, **options: Any) -> Iterator[FeedServer]:  # noqa: ANN401
    """A `FeedServer(tape, **options)` run `in_background`; an error of its tape task
    re-raises on leaving."""
    server = FeedServer(tape, **options)
    with in_background(server, "feed-server"):
        yield server
    if server.error is not None:
        raise server.error


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedOptions:
    """`ticktape feed serve` options; every venue's server module takes the same."""

    speed: float | None = 1.0
    port: int = 0
    faults: Path | None = None
    fault_log: Path | None = None
    ping_interval: float = 20.0
    start: int = 0
    limit: int | None = None
    synthetic: int | None = None  # serve a seeded synthetic tape of this many messages instead
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSummary:
    ended: str  # END_OF_RECORDING or "stopped"
    messages: int
    frames_sent: int
    connections: int
    faults_injected: int


def serve_sessions(
    sessions: Sequence[str],
    data_dir: Path,
    options: FeedOptions,
    on_started: Callable[[str, str], None],
) -> FeedSummary:
    """Serve SESSIONs until the tape ends or SIGINT/SIGTERM; `on_started(ws_url, rest_url)`
    is called once the port is bound. The venue contract the CLI dispatches on."""
    from simulator.feedsim.faults import load_faults
    from simulator.feedsim.tape import load_tape

    if options.synthetic is not None:
        from simulator.feedsim.synthetic import synthetic_tape

        if sessions:
            raise ConfigError("give SESSIONs or --synthetic, not both")
        tape = synthetic_tape(options.synthetic, seed=options.seed)
    else:
        tape = load_tape(sessions, data_dir)
    tape = tape.slice(options.start, options.limit)
    schedule = load_faults(options.faults) if options.faults is not None else None
    server = FeedServer(
        tape,
        speed=options.speed,
        faults=schedule,
        fault_log=options.fault_log,
        ping_interval=options.ping_interval,
        port=options.port,
    )
    ended = asyncio.run(serve_until_signal(server, on_started))
    return FeedSummary(
        ended=ended,
        messages=server.messages,
        frames_sent=server.frames_sent,
        connections=server.connections,
        faults_injected=server.faults_injected,
    )


async def serve_until_signal(server: Servable, on_started: Callable[[str, str], None]) -> str:
    """Start `server`, report its URLs, serve until its tape ends or SIGINT/SIGTERM.

    The tape and everything loaded so far live for the whole serve: frozen out of the cyclic
    collector's sight. Else a collection while serving walks them (`feed serve --speed 20`:
    one of 7.5 ms early in the tape; full ones take 18-56 ms), and the frames due meanwhile go
    out late, together: a burst the recording never had, which a client at 20x conflates."""
    gc.freeze()
    try:
        return await _serve(server, on_started)
    finally:
        gc.unfreeze()


async def _serve(server: Servable, on_started: Callable[[str, str], None]) -> str:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    on_started(server.ws_url, server.rest_url)
    done = asyncio.create_task(server.wait_done())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    ended = END_OF_RECORDING if done.done() else "stopped"
    await server.close()
    await done  # re-raises an error of the tape
    return ended
