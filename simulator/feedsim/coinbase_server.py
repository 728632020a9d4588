"""`ticktape feed serve --venue coinbase`: a recorded session served in Advanced Trade format.

The recording's envelopes (coinbase_tape.py) are served byte for byte except `sequence_num`,
which each connection numbers from 0 over what it is sent (subscription acks included), as
Coinbase does.

As on an exchange, one tape runs for the whole server: it starts once a first client's
subscribe messages have settled (no new one for `settle_s`; the connection manager spaces them
0.2 s apart) and a later client joins it where it is. A client must subscribe within 5 s or is
closed (1008). Each subscribe names one channel; it is answered with a `subscriptions` envelope,
and a level2 subscribe to a product whose recorded snapshot has already passed is answered with
a snapshot of the server's own book (built from every level2 record so far, sent or not), so a
resubscribe after a gap resyncs. Late ticker or market_trades subscribers get no snapshot.

Pacing: `speed` N follows the recorded receive-time deltas N times faster; None never sleeps and
pauses while no client is subscribed. `drop_sequence_at=N` skips, on each connection, the first
recorded envelope numbered N or more, so the client sees a `sequence_num` jump. At the end
every connection is closed with 1001 "end of recording".

HTTP GETs on the same port under /api/ get REST answers (coinbase_rest.py: the products, with
their tick, lot and minimum order value, which the live client reads at start).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from simulator.errors import ConfigError, InvariantViolation
from simulator.feedsim.coinbase_rest import ProductsApi
from simulator.feedsim.coinbase_tape import (
    CoinbaseRecord,
    ReplayBooks,
    envelope,
    load_coinbase_records,
)
from simulator.feedsim.server import (
    FeedOptions,
    FeedSummary,
    ServerLifecycle,
    http_response,
    in_background,
    serve_until_signal,
)
from simulator.importers.coinbase_messages import MessageError, json_field
from simulator.live.venues.coinbase import DATA_CHANNELS, HEARTBEATS, stream_channel
from simulator.types import NS_PER_SECOND

END_OF_RECORDING: Final = "end of recording"
SUBSCRIBE_TIMEOUT_S: Final = 5.0
SETTLE_S: Final = 0.5
CLOSE_TIMEOUT_S: Final = 2.0
CHANNELS: Final = frozenset({*DATA_CHANNELS, HEARTBEATS, "candles", "status", "ticker_batch"})
_MIN_SLEEP_S: Final = 0.001

Reply = tuple[bytes, bytes] | bytes
"""An envelope split around its sequence_num (numbered when sent), or a message as it is."""


@dataclass(slots=True, eq=False)
class _Client:
    conn: ServerConnection
    subs: dict[str, list[str]] = field(default_factory=dict)  # channel -> product ids
    l2_from: dict[str, int] = field(default_factory=dict)  # level2 records after this index
    next_sn: int = 0
    dropped: bool = False
    settled: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one numbered send at a time

    def wants(self, index: int, record: CoinbaseRecord) -> bool:
        channel = stream_channel(record.channel)
        subscribed = self.subs.get(channel)
        if not subscribed:
            return False
        if channel == HEARTBEATS or not record.products:
            return True
        if channel == "level2":  # not what the snapshot sent at subscribe time already holds
            return any(p in subscribed and index > self.l2_from.get(p, -1) for p in record.products)
        return any(p in subscribed for p in record.products)


class CoinbaseFeedServer(ServerLifecycle):
    """The server; `start()` binds it and runs the tape as a task, `wait_done()` awaits it."""

    def __init__(
        self,
        records: Sequence[CoinbaseRecord],
        *,
        speed: float | None,
        host: str = "127.0.0.1",
        port: int = 0,
        drop_sequence_at: int | None = None,
        subscribe_timeout_s: float = SUBSCRIBE_TIMEOUT_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be > 0 or None (max), found {speed}")
        if drop_sequence_at is not None and drop_sequence_at < 0:
            raise ConfigError(f"drop_sequence_at must be >= 0, found {drop_sequence_at}")
        if not records:
            raise ConfigError("no records to serve; load them with load_coinbase_records()")
        self.records = records
        self.speed = speed
        self._bind = (host, port)
        self._drop_at = drop_sequence_at
        self._timeouts = (subscribe_timeout_s, settle_s)
        self._books = ReplayBooks()
        self._products = ProductsApi(records)
        self._applied = -1  # index of the last record the books hold
        self._timestamp = records[0].timestamp  # of synthesized envelopes
        self._clients: dict[ServerConnection, _Client] = {}
        self._listening = asyncio.Event()
        self._finished = threading.Event()
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._port = 0
        self.messages = 0  # records the tape passed
        self.frames_sent = 0
        self.connections = 0
        self.snapshots_made = 0
        self.dropped = 0  # envelopes skipped by drop_sequence_at
        self.errors_sent = 0  # bad requests answered with an error message
        self.http_requests = 0

    async def start(self) -> None:
        host, port = self._bind
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            compression=None,
            max_size=1 << 16,  # requests are small
            close_timeout=CLOSE_TIMEOUT_S,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._task = asyncio.create_task(self._run())

    @property
    def ws_url(self) -> str:
        if self._server is None:
            raise InvariantViolation("CoinbaseFeedServer.ws_url before start()")
        return f"ws://{self._bind[0]}:{self._port}"

    @property
    def rest_url(self) -> str:
        """The products endpoint's base (level2 snapshots come over the socket)."""
        if self._server is None:
            raise InvariantViolation("CoinbaseFeedServer.rest_url before start()")
        return f"http://{self._bind[0]}:{self._port}"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """A REST request gets its HTTP answer; None lets a websocket upgrade on."""
        path = request.path.partition("?")[0]
        if not path.startswith("/api/"):
            return None
        self.http_requests += 1
        return http_response(self._products.answer(path))

    # -- the tape ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._tape()
        except Exception:
            await self._shut("server error")
            raise
        await self._shut(END_OF_RECORDING)

    async def _tape(self) -> None:
        await self._listening.wait()
        loop = asyncio.get_running_loop()
        t0, first = loop.time(), self.records[0].ts_recv
        for index, record in enumerate(self.records):
            if self.speed is None:
                await self._listening.wait()
                await asyncio.sleep(0)  # sends rarely block: let requests in
            else:
                due = t0 + (record.ts_recv - first) / NS_PER_SECOND / self.speed
                if (delay := due - loop.time()) > _MIN_SLEEP_S:
                    await asyncio.sleep(delay)
            self._applied = index  # with the books, no await between: snapshots agree
            self._books.apply(record)
            self._timestamp = record.timestamp
            self.messages += 1
            for client in list(self._clients.values()):
                if client.wants(index, record):
                    await self._send(client, [(record.head, record.tail)], droppable=True)

    async def _send(
        self, client: _Client, replies: Sequence[Reply], *, droppable: bool = False
    ) -> None:
        """Number and send `replies` back to back: an ack and its snapshot are not split by a
        record, or an update could fall between the snapshot's state and the snapshot."""
        async with client.lock:
            for reply in replies:
                if isinstance(reply, bytes):
                    payload = reply
                else:
                    sn = client.next_sn
                    client.next_sn = sn + 1
                    drop_at = self._drop_at
                    if droppable and drop_at is not None and sn >= drop_at and not client.dropped:
                        client.dropped = True
                        self.dropped += 1
                        continue
                    payload = reply[0] + str(sn).encode() + reply[1]
                try:
                    await client.conn.send(payload, text=True)
                    self.frames_sent += 1
                except ConnectionClosed:
                    self._drop(client.conn)
                    return

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        client = _Client(conn)
        self._clients[conn] = client
        self.connections += 1
        try:
            if not await self._opening(client):
                return
            client.settled = True
            self._update_listening()
            async for message in conn:
                await self._send(client, self._answer(client, message))
                self._update_listening()
        except ConnectionClosed:
            pass  # the client went away: nothing to answer
        finally:
            self._drop(conn)

    async def _opening(self, client: _Client) -> bool:
        """Take subscribes until they settle; False (closed 1008) if none came in time."""
        loop = asyncio.get_running_loop()
        timeout, settle = self._timeouts
        deadline = loop.time() + timeout
        while True:
            wait = deadline - loop.time()
            if client.subs:
                wait = min(wait, settle)
            if wait <= 0:
                break
            try:
                message = await asyncio.wait_for(client.conn.recv(), wait)
            except TimeoutError:
                break
            await self._send(client, self._answer(client, message))
        if client.subs:
            return True
        self._drop(client.conn)
        await client.conn.close(1008, f"no subscribe within {timeout:g} s")
        return False

    def _answer(self, client: _Client, message: str | bytes) -> list[Reply]:
        try:
            kind, channel, products = _request(message)
        except MessageError as e:
            self.errors_sent += 1
            return [orjson.dumps({"type": "error", "message": str(e)})]
        subs = client.subs
        if kind == "unsubscribe":
            kept = [p for p in subs.get(channel, []) if p not in products]
            subs.pop(channel, None)
            if kept and channel != HEARTBEATS:
                subs[channel] = kept
        elif channel == HEARTBEATS:
            subs[channel] = [HEARTBEATS]  # as Coinbase acknowledges it
        else:
            held = subs.setdefault(channel, [])
            held += [p for p in dict.fromkeys(products) if p not in held]
        acked = {name: subs[name] for name in sorted(subs)}
        ack = envelope("subscriptions", self._timestamp, [{"subscriptions": acked}])
        replies: list[Reply] = [ack]
        if kind == "subscribe" and channel == "level2":
            replies += self._snapshots(client, products)
        return replies

    def _snapshots(self, client: _Client, products: list[str]) -> list[Reply]:
        replies: list[Reply] = []
        for product in products:
            client.l2_from[product] = self._applied
            event = self._books.snapshot_event(product, self._timestamp)
            if event is not None:  # else its recorded snapshot is still to come
                self.snapshots_made += 1
                replies.append(envelope("l2_data", self._timestamp, [event]))
        return replies

    def _drop(self, conn: ServerConnection) -> None:
        self._clients.pop(conn, None)
        self._update_listening()

    def _update_listening(self) -> None:
        if any(c.settled and c.subs for c in self._clients.values()):
            self._listening.set()
        else:
            self._listening.clear()


def _request(message: str | bytes) -> tuple[str, str, list[str]]:
    """(type, channel, product_ids) of a valid (un)subscribe request."""
    example = '{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}'
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise MessageError(f"not JSON; send a request such as {example}") from None
    if not isinstance(request, dict):
        raise MessageError(f"expected a JSON object such as {example}")
    kind = request.get("type")
    if kind not in ("subscribe", "unsubscribe"):
        raise MessageError(f"type {kind!r}; expected subscribe or unsubscribe")
    if "channels" in request:
        raise MessageError("one channel per message: use 'channel', not 'channels'")
    channel = json_field(request, "channel", str)
    if channel not in CHANNELS:
        raise MessageError(f"channel {channel!r}; this feed serves {sorted(CHANNELS)}")
    products = request.get("product_ids", [])
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        raise MessageError("product_ids should be a list of product ids such as 'BTC-USD'")
    if not products and channel != HEARTBEATS:
        raise MessageError(f"channel {channel!r} needs product_ids")
    return kind, channel, products


@contextmanager
def serving_coinbase(
    records: Sequence[CoinbaseRecord],
    **options: Any,  # noqa: ANN401
) -> Iterator[CoinbaseFeedServer]:
    """A `CoinbaseFeedServer(records, **options)` run `in_background` (use `ws_url` and
    `join()` from the calling thread)."""
    server = CoinbaseFeedServer(records, **options)
    with in_background(server, "coinbase-feed-server"):
        yield server


__all__ = [
    "END_OF_RECORDING",
    "CoinbaseFeedServer",
    "CoinbaseRecord",
    "load_coinbase_records",
    "serve_sessions",
    "serving_coinbase",
]


DEFAULT_RECORDING: Final = Path("originals") / "coinbase" / "COINBASE.jsonl.zst"


def serve_sessions(
    sessions: Sequence[str],
    data_dir: Path,
    options: FeedOptions,
    on_started: Callable[[str, str], None],
) -> FeedSummary:
    """`ticktape feed serve --venue coinbase [RECORDING...]`: serve Coinbase recordings
    (cryptofeed JSON lines; default: the bundled sample) until their end or SIGINT/SIGTERM."""
    if (
        options.faults is not None
        or options.start
        or options.limit is not None
        or options.synthetic is not None
    ):
        raise ConfigError(
            "--faults, --start, --limit and --synthetic are available for --venue binance only"
        )
    paths = [Path(s) for s in sessions] or [data_dir / DEFAULT_RECORDING]
    records = [r for path in paths for r in load_coinbase_records(path)]
    server = CoinbaseFeedServer(records, speed=options.speed, port=options.port)

    ended = asyncio.run(serve_until_signal(server, on_started))
    return FeedSummary(
        ended=ended,
        messages=server.messages,
        frames_sent=server.frames_sent,
        connections=server.connections,
        faults_injected=0,
    )
