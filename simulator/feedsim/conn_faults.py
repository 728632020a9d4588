"""The feed server's connection faults (faults.py): a dead peer, a slow-consumer kick, a
compressed connection lifetime (Binance's 24 h cutoff) and refused subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable

from websockets.asyncio.server import ServerConnection

Closing = Coroutine[object, object, None]


class ConnectionFaults:
    """Acts on the server's connections; `drop` forgets one (no more data is sent to it),
    `background` runs a close handshake without waiting for it."""

    def __init__(
        self, drop: Callable[[ServerConnection], None], background: Callable[[Closing], None]
    ) -> None:
        self._drop, self._background = drop, background
        self.rejects_left = 0
        self.lifetime_s: float | None = None

    def go_dead(self, conns: Iterable[ServerConnection], ms: int) -> int:
        """No data, no pings, the client's frames unread: only its dead-peer timer can tell.
        The socket is dropped after `ms` (the client has reconnected by then)."""
        loop, n = asyncio.get_running_loop(), 0
        for conn in list(conns):
            self._drop(conn)
            conn.transport.pause_reading()
            if conn.keepalive_task is not None:
                conn.keepalive_task.cancel()
            loop.call_later(ms / 1000, conn.transport.abort)
            n += 1
        return n

    def kick_slow(self, conns: Iterable[ServerConnection], buffered: int) -> int:
        """Close 1008 the connections with at least `buffered` bytes not yet sent."""
        kicked = [c for c in conns if c.transport.get_write_buffer_size() >= buffered]
        for conn in kicked:
            self._drop(conn)
            self._background(conn.close(1008, "slow consumer"))
        return len(kicked)

    def limit_lifetime(self, opened: dict[ServerConnection, float], ms: int) -> int:
        """From now on a connection lives at most `ms` from its opening (loop time)."""
        self.lifetime_s = ms / 1000
        for conn, opened_at in opened.items():
            self.expire_later(conn, opened_at)
        return len(opened)

    def expire_later(self, conn: ServerConnection, opened_at: float) -> None:
        if self.lifetime_s is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, opened_at + self.lifetime_s - loop.time())
        loop.call_later(delay, self._expire, conn)

    def _expire(self, conn: ServerConnection) -> None:
        self._drop(conn)
        self._background(conn.close(1001, "connection lifetime reached"))

    def reject(self) -> bool:
        """True (and one fewer left) while reject_subscribe is armed."""
        if self.rejects_left > 0:
            self.rejects_left -= 1
            return True
        return False


__all__ = ["ConnectionFaults"]
