"""The connection's loop helpers (tasks, stamping, waits) and its REST book snapshots.

`FeedConnection` (connection.py) is built on `LoopBase`: the snapshot requests run as tasks
on the connection's event loop, their HTTP GETs on a small thread pool of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from simulator.errors import FeedError
from simulator.live.adapter import VenueProfile
from simulator.live.frames import SNAPSHOT_SUFFIX, Direction, Frame, Stamper
from simulator.live.keepalive import ConnectionConfig, ConnectionStats
from simulator.live.receiver import WatchedConnection


@dataclass(slots=True, eq=False)
class Link:
    conn_id: int
    ws: WatchedConnection
    opened_at: float  # time.monotonic()
    last_data: float
    reader: asyncio.Task[None] | None = None
    retired: bool = False  # switched away from: its messages are no longer handed on
    close_note: str = ""  # why we closed it
    held: bool = False  # the reader waits for room in the inbox (flow control)
    resumed_at: float = 0.0  # time.monotonic() the reader last resumed; the timers start there


class LoopBase:
    """State and helpers shared by the connection loop and the snapshot requests; the
    attributes are set by FeedConnection.__init__."""

    _config: ConnectionConfig
    _profile: VenueProfile
    _stamper: Stamper
    _sink: Callable[[Frame], None]
    _wall: Callable[[], int]
    _lock: threading.Lock  # guards _epochs (and FeedConnection's _loop, _stopping, _queued)
    _stop: asyncio.Event
    _fatal: BaseException | None
    _active: Link | None  # the connection handed on now
    _tasks: set[asyncio.Task[None]]
    _snapshot_tasks: set[asyncio.Task[None]]
    _epochs: dict[str, int]
    _rest_pool: ThreadPoolExecutor | None
    _rest_blocked_until: float
    stats: ConnectionStats

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

    def _activate(self, link: Link, *, reconnect: bool) -> None:
        self._active = link
        self.stats.conn_id = link.conn_id
        if reconnect:
            self.stats.reconnects += 1

    async def _close(self, link: Link, code: int, reason: str) -> None:
        link.close_note = reason
        await link.ws.close(code, reason)  # waits for the handshake, close_timeout at most
        if link.reader is not None:
            await link.reader  # it hands on the CLOSE frame

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
        hint = self._profile.refusal_hint
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


__all__ = ["Link", "LoopBase"]
