"""Make-before-break rollover of a feed connection (at its maximum lifetime and on a server
shutdown notice): open and subscribe a new connection, switch on its first data frame, close
the old one; give up on a new connection that stays silent (connection.py runs it)."""

from __future__ import annotations

import asyncio
from typing import Final

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from simulator.live.keepalive import Backoff, ConnectLimiter
from simulator.live.loop_base import Link, LoopBase

# refused, reset, timed out, closed (1006, 1001 ...) or a rejected upgrade other than 451
RETRYABLE: Final = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)


class Rollover(LoopBase):
    """The rollover steps of FeedConnection (its attributes are set by its __init__)."""

    _pending: Link | None
    _opening: asyncio.Task[Link] | None
    _rollover_wanted: bool
    _rollover_not_before: float
    _rollover_backoff: Backoff
    _limiter: ConnectLimiter

    async def _open(self, *, rollover: bool) -> Link:
        """Connect and subscribe (FeedConnection's)."""
        raise NotImplementedError

    def _start_rollover(self, now: float) -> None:
        if self._opening is None and self._pending is None and now >= self._rollover_not_before:
            self._opening = asyncio.get_running_loop().create_task(self._open_rollover())

    async def _open_rollover(self) -> Link:
        await asyncio.sleep(self._limiter.reserve())
        return await self._open(rollover=True)

    def _check_rollover(self, now: float) -> None:
        """Collect a finished rollover open; give up on a new connection that stays silent."""
        opening = self._opening
        if opening is not None and opening.done():
            self._opening = None
            error = None if opening.cancelled() else opening.exception()
            if isinstance(error, RETRYABLE):
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

    def _switch(self, link: Link) -> None:
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


__all__ = ["RETRYABLE", "Rollover"]
