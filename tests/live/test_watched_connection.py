"""`WatchedConnection` hands messages on from `data_received` (no `recv()` per message), against
a real websockets server on 127.0.0.1: whole, in order, from the first byte after the
handshake, pausing the socket when the callback says stop, the close seen at the end."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from simulator.live.receiver import WatchedConnection

N = 100


def _message(n: int) -> bytes:
    return b'{"stream":"x@bookTicker","data":{"u":%d}}' % n


async def _burst(ws: ServerConnection) -> None:
    """Message 0, then message 1 in two fragments, then 2..N-1 in ONE write (one TCP chunk)."""
    await ws.send(_message(0).decode())
    await ws.send([_message(1).decode()[:9], _message(1).decode()[9:]])
    for n in range(2, N):
        ws.protocol.send_text(_message(n))
    ws.transport.write(b"".join(ws.protocol.data_to_send()))
    await ws.wait_closed()


def _scenario(
    body: Callable[[WatchedConnection], Awaitable[None]],
    max_queue: int = 256,
    server: Callable[[ServerConnection], Awaitable[None]] = _burst,
    timeout: float = 10,
) -> None:
    """`body` on a WatchedConnection to a real server running `server` on 127.0.0.1."""

    async def main() -> None:
        async with serve(server, "127.0.0.1", 0, compression=None) as server_:
            port = server_.sockets[0].getsockname()[1]
            ws = await connect(
                f"ws://127.0.0.1:{port}",
                compression=None,
                max_queue=max_queue,
                create_connection=WatchedConnection,
            )
            assert isinstance(ws, WatchedConnection)
            try:
                await body(ws)
            finally:
                ws.transport.abort()

    asyncio.run(asyncio.wait_for(main(), timeout))


def _collect(got: list[bytes]) -> Callable[[bytes], bool]:
    """A hand-on callback that keeps every message and never asks to stop."""

    def hand_on(payload: bytes) -> bool:
        got.append(payload)
        return True

    return hand_on


def test_messages_queued_before_hand_on_come_first_whole_and_in_order():
    got: list[bytes] = []
    unhanded: list[int] = []

    async def body(ws: WatchedConnection) -> None:
        await asyncio.sleep(0.2)
        assert len(ws.unhanded) == N  # received, waiting for the hand-on

        def hand_on(payload: bytes) -> bool:
            got.append(payload)
            unhanded.append(len(ws.unhanded))
            return True

        ws.hand_on_to(hand_on)
        for _ in range(100):
            if len(got) == N:
                break
            await asyncio.sleep(0.01)

    _scenario(body, max_queue=16)
    assert got == [_message(n) for n in range(N)]  # the fragments joined, nothing lost
    assert unhanded[-1] == 0


def test_a_chunk_counts_down_its_messages_not_yet_handed_on():
    unhanded: list[int] = []

    async def body(ws: WatchedConnection) -> None:
        def hand_on(payload: bytes) -> bool:
            unhanded.append(len(ws.unhanded))
            return True

        ws.hand_on_to(hand_on)
        for _ in range(100):
            if len(unhanded) == N:
                break
            await asyncio.sleep(0.01)

    _scenario(body)
    assert len(unhanded) == N
    # the last N-2 messages came in one write: the burst the hand-off waits out
    assert unhanded[-(N - 2) :] == list(range(N - 3, -1, -1))


def test_stop_pauses_the_socket_and_resume_hands_on_the_rest_in_order():
    got: list[bytes] = []

    async def body(ws: WatchedConnection) -> None:
        def hand_on(payload: bytes) -> bool:
            got.append(payload)
            return len(got) != 10  # the inbox is full after the 10th

        ws.hand_on_to(hand_on)
        assert await asyncio.wait_for(ws.wait_paused(), 5)
        await asyncio.sleep(0.1)
        assert len(got) == 10  # nothing more while paused
        assert not ws.transport.is_reading()
        ws.resume()
        assert ws.transport.is_reading()
        for _ in range(100):
            if len(got) == N:
                break
            await asyncio.sleep(0.01)

    _scenario(body)
    assert got == [_message(n) for n in range(N)]


def test_what_the_callback_raises_ends_delivery_and_reaches_the_reader():
    got: list[bytes] = []

    async def body(ws: WatchedConnection) -> None:
        def hand_on(payload: bytes) -> bool:
            if len(got) == 5:
                raise ValueError("sink refused")
            got.append(payload)
            return True

        ws.hand_on_to(hand_on)
        with pytest.raises(ValueError, match="sink refused"):
            await asyncio.wait_for(ws.wait_paused(), 5)
        await asyncio.sleep(0.1)
        assert len(got) == 5

    _scenario(body)


def test_the_reader_learns_of_the_close_after_every_message():
    got: list[bytes] = []

    async def body(ws: WatchedConnection) -> None:
        ws.hand_on_to(_collect(got))
        for _ in range(100):
            if len(got) == N:
                break
            await asyncio.sleep(0.01)
        await ws.close(1000, "done")
        assert not await asyncio.wait_for(ws.wait_paused(), 5)
        assert ws.close_exc.rcvd is not None
        assert ws.close_exc.rcvd.code == 1000

    _scenario(body)
    assert len(got) == N


def test_any_split_of_the_byte_stream_hands_on_the_same_messages():
    """Plain frames, a ping, a fragmented message, a 70 KB message (64-bit length) and a
    close, written in slices of 1 to 97 bytes (headers and payloads cut anywhere): the frames
    websockets must see (ping, fragments, close) reach it whole, the rest is split here."""
    big = b'{"stream":"x@depth","data":"' + b"x" * 70_000 + b'"}'
    expected = [_message(0), _message(1) + _message(2), big, _message(3), _message(4)]
    pong: list[bool] = []

    async def sliced(ws: ServerConnection) -> None:
        waiter = await ws.ping(b"before")  # answered while the slices follow
        proto = ws.protocol
        proto.send_text(_message(0))
        proto.send_ping(b"inside")
        proto.send_text(_message(1), fin=False)
        proto.send_continuation(_message(2), fin=True)
        proto.send_binary(big)
        proto.send_text(_message(3))
        proto.send_text(_message(4))
        stream = b"".join(proto.data_to_send())
        rng = random.Random(7)
        pos = 0
        while pos < len(stream):
            step = 1 if pos < 40 else rng.randint(1, 97) if pos < 400 else rng.randint(1, 9000)
            ws.transport.write(stream[pos : pos + step])
            pos += step
            await asyncio.sleep(0.003 if pos < 400 else 0.0005)  # read apart, mostly
        await asyncio.wait_for(waiter, 5)
        pong.append(True)
        await ws.close(1001, "going away")

    got: list[bytes] = []

    async def body(ws: WatchedConnection) -> None:
        ws.hand_on_to(_collect(got))
        assert not await asyncio.wait_for(ws.wait_paused(), 10)
        assert ws.close_exc.rcvd is not None
        assert (ws.close_exc.rcvd.code, ws.close_exc.rcvd.reason) == (1001, "going away")

    _scenario(body, server=sliced, timeout=20)
    assert got == expected
    assert pong == [True]


def test_a_frame_websockets_refuses_still_fails_the_connection():
    """A masked frame from the server is a protocol error: websockets closes with 1002."""

    async def masked(ws: ServerConnection) -> None:
        ws.transport.write(bytes([0x81, 0x80 | 3, 1, 2, 3, 4]) + b"abc")
        await ws.wait_closed()

    got: list[bytes] = []

    async def body(ws: WatchedConnection) -> None:
        ws.hand_on_to(_collect(got))
        assert not await asyncio.wait_for(ws.wait_paused(), 10)
        assert ws.close_exc.sent is not None
        assert ws.close_exc.sent.code == 1002

    _scenario(body, server=masked, timeout=20)
    assert got == []
