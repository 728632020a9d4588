"""The websocket client connection of a live feed: every message is handed on from
`data_received`, as soon as its TCP chunk is read, with the data frames split here.

Per message, websockets' own receive path costs more than the pipeline does on a quote:
- its sans-IO parser runs a generator per frame (three reads, an Opcode enum, a Frame object
  and its checks): ~2.1 us a frame, against ~0.2 us for splitting a chunk of plain frames;
- `recv()` takes each message through an Assembler queue and a reader task (a queue put and
  get, a future and a task step per message);
- the transport's plain `recv(256 KiB)` allocates, maps and unmaps a 256 KiB block per read
  (~12 us a read); a BufferedProtocol reads into one buffer per connection instead.

So, once the opening handshake has succeeded, `data_received` splits the byte stream itself:
a complete unfragmented, unmasked text or binary frame within the size limit, while the
connection is OPEN and no fragmented message is in progress, is taken as it is (the plain
frames a venue sends); every other frame (pings, pongs, close, fragments, anything
malformed or too big) goes to websockets whole, so its state machine, automatic pongs,
closing handshake and errors stay its own, and websockets always stands at a frame boundary
between frames. A frame whose bytes have not all arrived goes to websockets as far as it
has come (its rest follows first, `_owed`); a header cut short waits here (< 14 bytes).
Once the connection is no longer OPEN, or before a 101 answer, websockets parses everything.
Messages websockets assembles (fragments) join the same ordered queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES
from websockets.frames import Frame as WsFrame
from websockets.protocol import OPEN, Event

READ_BUFFER: Final = 256 * 1024
"""Bytes a connection reads at most at once (asyncio's own read size)."""

_PLAIN: Final = frozenset((0x81, 0x82))  # first byte: FIN, no RSV bits, text or binary
_HEADER_END: Final = b"\r\n\r\n"


class WatchedConnection(ClientConnection, asyncio.BufferedProtocol):
    """A client connection that hands each message on from `data_received` (see the module
    docstring), and notes when bytes last arrived (pings and pongs included) for the
    dead-peer watchdog.

    Once `hand_on_to(callback)` is called, every message goes to `callback` in order; the
    messages of a chunk not yet handed on wait in `unhanded` (`pending()`: the burst). The
    callback returns False to stop (the inbox is full): reading the socket pauses at once,
    what the chunk still holds waits, `wait_paused()` says so to the reader task, which
    resumes with `resume()` once there is room. Messages that arrive before `hand_on_to` wait
    in `unhanded` too."""

    last_rx: float = 0.0  # time.monotonic(); the handshake response sets it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.unhanded: deque[bytes] = deque()  # received, not yet handed on, in order
        self.delivery_paused = False
        self.hand_on_error: Exception | None = None  # what the callback raised: no more
        self._hand_on: Callable[[bytes], bool] | None = None
        self._fragments: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._read_buffer = memoryview(bytearray(READ_BUFFER))
        self._splitting = False  # True from the 101 answer while the connection is OPEN
        self._head_tail = b""  # the handshake's last bytes (its end may straddle two reads)
        self._owed = 0  # bytes websockets still needs to finish the frame it is in
        self._partial = b""  # the start of a frame whose header is not complete yet

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def hand_on_to(self, callback: Callable[[bytes], bool]) -> None:
        """From now on hand every message to `callback`, starting with those that arrived
        since the handshake. Once only, on the loop."""
        self._hand_on = callback
        self._deliver()

    def process_event(self, event: Event) -> None:
        if type(event) is WsFrame and event.opcode in DATA_OPCODES:
            self._add(event)  # a fragment, or a frame that came with the handshake
            return
        super().process_event(event)  # the handshake response, control frames

    def _add(self, frame: WsFrame) -> None:
        if frame.fin and not self._fragments:
            self.unhanded.append(bytes(frame.data))  # bytes already: no copy
            return
        self._fragments.append(bytes(frame.data))
        if frame.fin:  # the protocol bounds the message's size (max_size)
            self.unhanded.append(b"".join(self._fragments))
            self._fragments.clear()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self._splitting:
            self._split(data)
        elif self.response is None and self.protocol.state is not OPEN:
            self._handshake(data)
        else:
            super().data_received(data)
        if self.unhanded and not self.delivery_paused:
            if self._hand_on is not None:
                self._deliver()
            elif self.hand_on_error is not None:  # the run has failed: nobody takes them
                self.unhanded.clear()

    def _handshake(self, data: bytes) -> None:
        """Give websockets the answer up to its end only; split what follows a 101."""
        seen = self._head_tail + data
        end = seen.find(_HEADER_END)
        if end < 0:
            self._head_tail = seen[-3:]
            super().data_received(data)
            return
        cut = end + len(_HEADER_END) - len(self._head_tail)
        super().data_received(data[:cut])
        self._splitting = self.response is not None and self.protocol.state is OPEN
        rest = data[cut:]
        if self._splitting:
            self._split(rest)
        elif rest:
            super().data_received(rest)

    def _split(self, data: bytes) -> None:  # noqa: C901 - hot loop, one pass over a read
        """Take the plain data frames of `data`; websockets gets the others, whole frames
        only, except the last one when the read ends inside it."""
        give = super().data_received
        if self._owed:  # first the rest of the frame websockets is inside of
            owed = self._owed
            if len(data) <= owed:
                self._owed = owed - len(data)
                give(data)
                return
            self._owed = 0
            give(data[:owed])
            data = data[owed:]
        if self._partial:
            data = self._partial + data
            self._partial = b""
        protocol, unhanded = self.protocol, self.unhanded
        limit = protocol.max_message_size
        n, pos, theirs = len(data), 0, -1  # theirs: where frames for websockets begin
        while n - pos >= 2:
            if protocol.state is not OPEN or protocol.parser_exc is not None:
                self._splitting = False  # closing or failed: websockets takes everything
                give(data[pos if theirs < 0 else theirs :])
                return
            head, size = data[pos], data[pos + 1]
            length = size & 0x7F
            start = pos + (2 if length < 126 else 4 if length == 126 else 10)
            mask = 4 if size & 0x80 else 0  # a masked frame: websockets refuses it
            if start + mask > n:
                break  # the header is cut short: it waits here
            if length >= 126:
                length = int.from_bytes(data[pos + 2 : start], "big")
            start += mask
            end = start + length
            if (
                end <= n
                and head in _PLAIN
                and size < 0x80
                and (limit is None or length <= limit)
                and protocol.current_size is None
            ):
                if theirs >= 0:  # websockets' frames first, then look at this one again:
                    give(data[theirs:pos])  # they may have closed the connection
                    theirs = -1
                    continue
                unhanded.append(data[start:end])
            elif theirs < 0:
                theirs = pos
            if end > n:  # websockets takes it as far as it came; its rest comes first
                self._owed = end - n
                give(data[theirs:])
                return
            pos = end
        if theirs >= 0:
            give(data[theirs:pos])
        if pos < n:
            self._partial = data[pos:]

    def _deliver(self) -> None:
        unhanded, hand_on = self.unhanded, self._hand_on
        if hand_on is None:
            return
        try:
            while unhanded:
                if not hand_on(unhanded.popleft()):
                    self.delivery_paused = True
                    self.transport.pause_reading()  # TCP slows the sender
                    self._wake()
                    return
        except Exception as e:  # the reader task raises it (`wait_paused`)
            self.hand_on_error = e
            self._hand_on = None
            self._wake()

    async def wait_paused(self) -> bool:
        """Wait until delivery pauses (True) or the connection has closed with every message
        handed on (False); raises what the callback raised. The reader task's loop."""
        while True:
            if self.hand_on_error is not None:
                raise self.hand_on_error
            if self.delivery_paused:
                return True
            if self.connection_lost_waiter.done() and not self.unhanded:
                return False
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def resume(self) -> None:
        """Hand on what waits (it may pause again), then read the socket again."""
        self.delivery_paused = False
        self._deliver()
        if not self.delivery_paused:
            self.transport.resume_reading()  # a no-op once the transport is closing

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


__all__ = ["READ_BUFFER", "WatchedConnection"]
