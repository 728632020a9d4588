"""Raw frames: what the network reader hands on, stamped and sequenced, before any parsing.

The reader does three things per frame and nothing else: take the receive time, give it the
next session-wide `seq`, and name its stream (a prefix scan of the combined-stream envelope,
not a JSON parse). Everything the session saw and sent is a frame: websocket messages in and
out, REST requests and responses, connects and closes, so the raw table replays the session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pyarrow as pa


class Direction(StrEnum):
    IN = "in"  # a websocket message from the venue
    OUT = "out"  # a message we sent (SUBSCRIBE ...)
    HTTP_REQ = "http_req"
    HTTP_RESP = "http_resp"  # a REST body (the depth snapshot), stream "<symbol>@snapshot"
    CONNECT = "connect"  # payload: the URL
    CLOSE = "close"  # payload: code and reason
    TIMER = "timer"  # a pipeline timer tick (no payload)


SNAPSHOT_SUFFIX: Final = "@snapshot"
"""Stream name of a REST depth snapshot frame: `btcusdt@snapshot`."""

RAW_SCHEMA: Final = pa.schema(
    [
        ("seq", pa.int64()),
        ("conn_id", pa.int64()),
        ("ts_recv", pa.int64()),
        ("direction", pa.string()),
        ("stream", pa.string()),
        ("payload", pa.binary()),
    ]
)


@dataclass(slots=True)
class Frame:
    """One stamped frame. `dead` marks a quote conflated away while it waited in the inbox."""

    seq: int
    conn_id: int
    ts_recv: int
    direction: str
    stream: str
    payload: bytes
    dead: bool = False


class Stamper:
    """Session-wide receive stamps: `seq` counts frames, `ts_recv` is wall-clock time forced
    strictly increasing, so the receive order and the (ts_recv, seq) order are the same order
    and a replay that sorts by time consumes exactly what live consumed. Thread-safe."""

    __slots__ = ("_last", "_lock", "_seq", "_wall")

    def __init__(self, wall: Callable[[], int]) -> None:
        self._wall = wall  # WallClock.wall_ns in live, a fake in tests
        self._lock = threading.Lock()
        self._seq = 0
        self._last = 0

    def stamp(self, conn_id: int, direction: str, stream: str, payload: bytes) -> Frame:
        now = self._wall()
        with self._lock:
            ts = now if now > self._last else self._last + 1
            self._last = ts
            seq = self._seq
            self._seq = seq + 1
        return Frame(seq, conn_id, ts, direction, stream, payload)


_STREAM_PREFIX: Final = b'{"stream":"'


def stream_of(payload: bytes) -> str:
    """The stream name of a combined-stream message, "" when the payload is not one.

    Binance writes `{"stream":"<name>","data":...}` with the stream first; a prefix scan finds
    it without parsing the (possibly large) JSON.
    """
    if payload.startswith(_STREAM_PREFIX):
        end = payload.find(b'"', len(_STREAM_PREFIX))
        if end > 0:
            return payload[len(_STREAM_PREFIX) : end].decode("ascii", "replace")
    return ""


def raw_table(frames: list[Frame]) -> pa.Table:
    """Frames as a table of RAW_SCHEMA (the recorder's `raw` table)."""
    return pa.table(
        {
            "seq": pa.array([f.seq for f in frames], pa.int64()),
            "conn_id": pa.array([f.conn_id for f in frames], pa.int64()),
            "ts_recv": pa.array([f.ts_recv for f in frames], pa.int64()),
            "direction": pa.array([f.direction for f in frames], pa.string()),
            "stream": pa.array([f.stream for f in frames], pa.string()),
            "payload": pa.array([f.payload for f in frames], pa.binary()),
        },
        schema=RAW_SCHEMA,
    )
