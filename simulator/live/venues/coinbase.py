"""Coinbase Advanced Trade: the venue profile and a pure normalizer per product (LIVE.md 2.1).

One socket carries every product and channel; each subscribe names one channel (`level2`,
`market_trades`, `ticker`, always `heartbeats`). Envelopes carry a per-connection
`sequence_num`; level2 sends a snapshot on subscribe, then absolute-size updates.

Gap policy (LIVE.md 2.1, done better than Nautilus and cryptofeed, which do not check): a
`sequence_num` hole, a heartbeat silence over 3 s (judged on frame receive times, never the
wall clock) or an inbox overflow declares a GAP; if the book was fed by that connection it is
reset and `needs_resubscribe()` asks the caller to resubscribe level2, which brings a fresh
snapshot (then BOOK_SYNCED).

Frames need not all reach every normalizer: a hole in `sequence_num` is a loss only when more
numbers are missing than frames were stamped and not handed here since the connection's last
message (another product's frames routed elsewhere, tickers conflated in the inbox). A message
lost before our socket has no stamp, so this tells loss from routing exactly on one connection;
around a rollover the other connection's stamps can hide a coincident hole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from simulator import instruments
from simulator.errors import ConfigError
from simulator.importers.book import L2Book, new_book
from simulator.importers.coinbase_messages import (
    Json,
    MessageError,
    json_field,
    json_objects,
    json_time,
    l2_level,
    ticker_bbo,
    trade_row,
)
from simulator.live.adapter import FeedActions, InstrumentSource, VenueAdapter
from simulator.live.consumed import Consumed
from simulator.live.frames import Direction, Frame
from simulator.live.inbox import GAP_DIRECTION
from simulator.types import NS_PER_SECOND, StatusCode

COINBASE_WS_URL: Final = "wss://advanced-trade-ws.coinbase.com"
COINBASE_SANDBOX_WS_URL: Final = "wss://advanced-trade-ws-sandbox.coinbase.com"
MAX_MESSAGE_BYTES: Final = 1 << 24  # a BTC-USD level2 snapshot is ~5 MB
COINBASE_REST_URL: Final = "https://api.coinbase.com"  # products; level2 snapshots come in-band
CHANNELS: Final = {"quotes": "ticker", "trades": "market_trades", "book": "level2"}
"""The channel of each consumed kind."""
"""Level2 snapshots are large (5 MB for BTC-USD in the sample): a client's max_size must allow."""
DATA_CHANNELS: Final = ("level2", "market_trades", "ticker")
HEARTBEATS: Final = "heartbeats"
MIXED: Final = "*"
"""Stream product of an envelope holding several products: every normalizer reads it."""
HEARTBEAT_SILENCE_NS: Final = 3 * NS_PER_SECOND
SEQUENCE_NUM: Final = re.compile(rb'"sequence_num":\s*(\d+)')
"""The envelope's sequence number (group 1), found by a scan: it precedes the events."""

_STREAM_CHANNEL: Final = {"l2_data": "level2"}  # envelope channel -> subscribe name
_PER_PRODUCT: Final = frozenset({*DATA_CHANNELS, "candles", "ticker_batch"})
_NOT_DATA: Final = frozenset({HEARTBEATS, "subscriptions"})
_TYPE_PREFIX: Final = b'{"type":"'
_CHANNEL_KEY: Final = b'"channel":"'
_PRODUCT_KEY: Final = b'"product_id":"'


def stream_of(payload: bytes) -> str:
    """`BTC-USD@level2`, `BTC-USD@ticker`, `heartbeats`, `subscriptions`; `subscribe:level2`
    for a request we send, `error` for a venue error, "" when there is no channel.

    A byte scan, not a JSON parse: the envelope channel plus the first `product_id`. An
    envelope naming several products (Coinbase sends one per envelope; none in the sample is
    mixed) is `*@<channel>`, so a router hands it to every product's normalizer, each of which
    reads only its own events.
    """
    if payload.startswith(_TYPE_PREFIX):
        kind = _quoted(payload, len(_TYPE_PREFIX))
        at = payload.find(_CHANNEL_KEY)
        return kind if at < 0 else f"{kind}:{_quoted(payload, at + len(_CHANNEL_KEY))}"
    at = payload.find(_CHANNEL_KEY)
    if at < 0:
        return ""
    channel = _quoted(payload, at + len(_CHANNEL_KEY))
    name = stream_channel(channel)
    at = payload.find(_PRODUCT_KEY) if name in _PER_PRODUCT else -1
    if at < 0:
        return name
    start = at + len(_PRODUCT_KEY)
    product = payload[start : payload.find(b'"', start)]
    if payload.count(_PRODUCT_KEY) != payload.count(_PRODUCT_KEY + product + b'"'):
        return f"{MIXED}@{name}"
    return f"{product.decode('ascii', 'replace')}@{name}"


def stream_channel(channel: str) -> str:
    """The subscribe name of an envelope channel: `l2_data` -> `level2`, others as they are."""
    return _STREAM_CHANNEL.get(channel, channel)


def _quoted(payload: bytes, start: int) -> str:
    end = payload.find(b'"', start)
    return payload[start:end].decode("ascii", "replace") if end >= 0 else ""


def sequence_num(payload: bytes) -> int:
    """The envelope's `sequence_num` by a scan (it comes before the events); -1 when none."""
    match = SEQUENCE_NUM.search(payload)
    return int(match.group(1)) if match is not None else -1


def subscription(kind: str, channel: str, product_ids: Sequence[str]) -> bytes:
    """One (un)subscribe request: Advanced Trade takes one channel per message."""
    request = {"type": kind, "product_ids": [p.upper() for p in product_ids], "channel": channel}
    return orjson.dumps(request)


@dataclass(frozen=True, slots=True)
class CoinbaseProfile:
    """The VenueProfile of Coinbase Advanced Trade market data (no authentication needed)."""

    channels: tuple[str, ...] = DATA_CHANNELS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.channels) - set(DATA_CHANNELS))
        if unknown or not self.channels:
            raise ConfigError(f"channels {list(self.channels)}: choose from {list(DATA_CHANNELS)}")

    @property
    def name(self) -> str:
        return "coinbase"

    @property
    def needs_client_ping(self) -> bool:
        return False  # the heartbeats channel keeps the connection alive and proves it is

    def stream_url(self, base_url: str, symbols: Sequence[str]) -> str:
        return base_url  # one endpoint; the subscribe messages choose the data

    def subscribe_messages(self, symbols: Sequence[str]) -> list[bytes]:
        """One per channel, level2 first (its snapshot then completes a rollover at once),
        and always heartbeats: most channels close after 60-90 s without updates."""
        return [subscription("subscribe", c, symbols) for c in (*self.channels, HEARTBEATS)]

    def resubscribe_messages(self, symbols: Sequence[str]) -> list[bytes]:
        """What to send when a normalizer `needs_resubscribe()`: level2 off and on again."""
        return [subscription(kind, "level2", symbols) for kind in ("unsubscribe", "subscribe")]

    def stream_of(self, payload: bytes) -> str:
        return stream_of(payload)

    def is_data(self, stream: str) -> bool:
        return stream.partition("@")[2] in DATA_CHANNELS

    def conflatable(self, stream: str) -> bool:
        """Only a single product's ticker may be replaced by a newer one in the inbox."""
        return stream.endswith("@ticker") and not stream.startswith(MIXED)

    def snapshot_url(self, rest_base: str, symbol: str) -> str | None:
        return None  # level2 snapshots come over the socket

    def is_shutdown_notice(self, stream: str) -> bool:
        return False  # Coinbase sends none

    @property
    def refusal_hint(self) -> str:
        return "use an endpoint that serves your region"


@dataclass(slots=True)
class CoinbaseStats:
    quotes: int = 0
    trades: int = 0
    book_updates: int = 0  # level2 update events applied
    snapshots: int = 0
    duplicates: int = 0  # trade ids already consumed (a reconnect's trade snapshot)
    gaps: int = 0
    resyncs: int = 0  # book resets (each asks for a resubscribe or waits for a new connection)
    malformed: int = 0
    sequence_gaps: int = 0
    sequence_holes_routed: int = 0  # holes explained by frames not handed here
    heartbeats: int = 0
    heartbeat_gaps: int = 0  # heartbeat_counter jumps (counted, not declared)
    heartbeats_missed: int = 0
    silences: int = 0  # heartbeats silent > 3 s (declared)
    ticker_without_bbo_skipped: int = 0
    trades_in_snapshot_excluded: int = 0
    trade_id_gaps: int = 0
    l2_skipped_unsynced: int = 0  # updates while waiting for a snapshot
    removals_of_absent_levels: int = 0
    crossed_books: int = 0
    venue_errors: int = 0
    last_error: str = ""


class CoinbaseNormalizer:
    """Frames of one product (and every shared frame) -> consumed events. Pure: no clock, no
    I/O; the same frames always give the same events. Hand it frames in `seq` order; frames of
    other products may be withheld or handed (then only their `sequence_num` is read)."""

    def __init__(self, product_id: str, *, depth: bool) -> None:
        self.product_id = product_id.upper()
        self._depth = depth
        self.book: L2Book = new_book()
        self.synced = False
        self.wants_resubscribe = False  # the caller resubscribes level2 and clears this
        self.stats = CoinbaseStats()
        self._book_conn = -1
        self._last_trade_id = -1
        self._conn = -1  # latest CONNECT or data frame: whose CLOSE is a disconnect
        self._last_seq = -1
        self._next_sn: dict[int, int] = {}  # per connection
        self._unseen: dict[int, int] = {}  # stamps not handed here since conn's last message
        self._beat: dict[int, int] = {}  # conn -> last heartbeat_counter
        self._beat_ts: dict[int, int] = {}  # conn -> ts_recv of its last heartbeat, until silent

    def needs_resubscribe(self) -> bool:
        """True when level2 should be resubscribed now (the book was reset by a gap)."""
        return self.wants_resubscribe

    def resubscribed(self) -> None:
        self.wants_resubscribe = False

    def act(self, feed: FeedActions) -> None:
        """Resubscribe level2 (a fresh snapshot) once a gap has reset the book."""
        if self.needs_resubscribe():
            self.resubscribed()
            feed.send(CoinbaseProfile().resubscribe_messages([self.product_id]))

    def on_frame(self, frame: Frame, out: Consumed) -> None:
        self._count_unseen(frame)
        beat = self._beat_ts.get(self._conn)
        if beat is not None and frame.ts_recv - beat > HEARTBEAT_SILENCE_NS:
            del self._beat_ts[self._conn]  # declared once, until the next heartbeat
            self.stats.silences += 1
            silent_ms = (frame.ts_recv - beat) // 1_000_000
            reason = f"no heartbeat on conn {self._conn} for {silent_ms} ms"
            self._declare_gap(frame, out, reason, self._conn)
        direction = frame.direction
        if direction == Direction.IN:
            self._on_in(frame, out)
        elif direction == Direction.TIMER:
            out.tick(frame.ts_recv)
        elif direction == GAP_DIRECTION:
            if self._owns(frame.stream):
                self._declare_gap(frame, out, f"inbox overflow: {frame.payload.decode()} frame(s) "
                                  f"of {frame.stream} dropped", frame.conn_id)  # fmt: skip
        elif direction == Direction.CONNECT:
            self._conn = frame.conn_id
            self._forget(frame.conn_id)
            out.status_event(frame.ts_recv, StatusCode.CONNECTED, f"conn {frame.conn_id}")
        elif direction == Direction.CLOSE:
            self._on_close(frame, out)

    def _owns(self, stream: str) -> bool:
        product, at, _ = stream.partition("@")
        return product in (self.product_id, MIXED) if at else stream not in _NOT_DATA

    def _count_unseen(self, frame: Frame) -> None:
        last = self._last_seq
        if frame.seq > last:
            if 0 <= last < frame.seq - 1:
                skipped = frame.seq - last - 1
                for conn in self._unseen:
                    self._unseen[conn] += skipped
            self._last_seq = frame.seq
        if frame.direction == GAP_DIRECTION and frame.conn_id in self._unseen:
            self._unseen[frame.conn_id] += 1  # the marker stands for a frame not handed

    def _forget(self, conn: int) -> None:
        for state in (self._next_sn, self._unseen, self._beat, self._beat_ts):
            state.pop(conn, None)

    def _on_close(self, frame: Frame, out: Consumed) -> None:
        conn = frame.conn_id
        self._forget(conn)
        if conn == self._conn:
            out.status_event(frame.ts_recv, StatusCode.DISCONNECTED, frame.payload.decode())
        if self.synced and conn == self._book_conn:
            self._reset_book(frame, out, f"conn {conn} closed; the next snapshot resyncs")

    def _on_in(self, frame: Frame, out: Consumed) -> None:
        sn = sequence_num(frame.payload)
        if sn >= 0:
            self._check_sequence(frame, sn, out)
        product, at, channel = frame.stream.partition("@")
        if at:
            self._conn = frame.conn_id
            if product not in (self.product_id, MIXED) or (channel == "level2" and not self._depth):
                return  # not ours: only its number mattered
        try:
            self._on_message(frame, out)
        except (ValueError, TypeError) as e:  # MessageError, orjson's JSONDecodeError
            self.stats.malformed += 1
            self.stats.last_error = f"frame seq {frame.seq} ({frame.stream}): {e}"[:300]
            if channel == "level2" or not frame.stream:  # book data may be lost
                self._declare_gap(frame, out, f"malformed frame seq {frame.seq}", frame.conn_id)

    def _check_sequence(self, frame: Frame, sn: int, out: Consumed) -> None:
        conn = frame.conn_id
        expected = self._next_sn.get(conn)
        unseen = self._unseen.get(conn, 0)
        self._next_sn[conn] = sn + 1
        self._unseen[conn] = 0
        if expected is None or sn == expected:
            return
        if expected < sn <= expected + unseen:
            self.stats.sequence_holes_routed += 1
            return
        self.stats.sequence_gaps += 1
        reason = f"sequence_num on conn {conn}: expected {expected}, found {sn}"
        self._declare_gap(frame, out, reason, conn)

    def _declare_gap(self, frame: Frame, out: Consumed, reason: str, conn: int) -> None:
        self.stats.gaps += 1
        out.status_event(frame.ts_recv, StatusCode.GAP, reason)
        if self.synced and conn == self._book_conn:
            self._reset_book(frame, out, "resubscribe level2 for a fresh snapshot")
            self.wants_resubscribe = True

    def _reset_book(self, frame: Frame, out: Consumed, reason: str) -> None:
        self.synced = False
        self.stats.resyncs += 1
        out.status_event(frame.ts_recv, StatusCode.BOOK_RESET, reason)

    def _on_message(self, frame: Frame, out: Consumed) -> None:
        message = orjson.loads(frame.payload)
        if not isinstance(message, dict):
            raise MessageError(f"expected a JSON object, found {type(message).__name__}")
        if message.get("type") == "error":  # the venue's reply to a bad request: no envelope
            self.stats.venue_errors += 1
            self.stats.last_error = f"venue error: {message.get('message')!s:.200}"
            return
        channel = json_field(message, "channel", str)
        if channel == "l2_data":
            self._on_l2(frame, message, out)
        elif channel == "ticker":
            self._on_ticker(frame, message, out)
        elif channel == "market_trades":
            self._on_trades(frame, message, out)
        elif channel == HEARTBEATS:
            self._on_heartbeats(frame, message)

    def _on_l2(self, frame: Frame, message: Json, out: Consumed) -> None:
        """One book row per message touching the product (as the importer); a snapshot
        replaces the book and syncs it, updates apply only on the snapshot's connection."""
        if not self._depth:
            return
        sn = json_field(message, "sequence_num", int)
        ts_event = json_time(message, "timestamp")
        touched, snapshot_levels = False, -1
        for event in json_objects(message, "events"):
            if json_field(event, "product_id", str) != self.product_id:
                continue
            kind = json_field(event, "type", str)
            levels = [l2_level(level) for level in json_objects(event, "updates")]
            if kind == "snapshot":
                self._snapshot(levels, frame.conn_id)
                touched, snapshot_levels = True, len(levels)
            elif kind != "update":
                raise MessageError(f"l2_data event type '{kind}'; expected snapshot or update")
            elif self.synced and frame.conn_id == self._book_conn:
                self._apply(levels)
                touched = True
            else:
                self.stats.l2_skipped_unsynced += 1
        if touched:
            self._book_row(frame, ts_event, sn, snapshot_levels, out)

    def _snapshot(self, levels: list[tuple[bool, float, float]], conn: int) -> None:
        self.book.reset(
            ((price, size) for is_bid, price, size in levels if is_bid),
            ((price, size) for is_bid, price, size in levels if not is_bid),
        )
        self._book_conn = conn
        self.synced = True
        self.wants_resubscribe = False  # a snapshot came anyway: nothing left to ask for
        self.stats.snapshots += 1

    def _apply(self, levels: list[tuple[bool, float, float]]) -> None:
        book = self.book
        for is_bid, price, size in levels:
            if not book.set(is_bid, price, size):
                self.stats.removals_of_absent_levels += 1
        self.stats.book_updates += 1

    def _book_row(
        self, frame: Frame, ts_event: int, sn: int, snapshot_levels: int, out: Consumed
    ) -> None:
        bid, ask = self.book.best()
        if bid is not None and ask is not None and bid >= ask:  # updates were lost
            self.stats.crossed_books += 1
            reason = f"{self.product_id} book crossed or locked ({bid} >= {ask}) at {sn}"
            self._declare_gap(frame, out, reason, frame.conn_id)
            return
        out.book_row(frame.ts_recv, ts_event, sn, self.book)  # update_id: the sequence_num
        if snapshot_levels >= 0:
            reason = f"snapshot of {snapshot_levels} levels on conn {frame.conn_id}"
            out.status_event(frame.ts_recv, StatusCode.BOOK_SYNCED, reason)

    def _on_ticker(self, frame: Frame, message: Json, out: Consumed) -> None:
        sn = json_field(message, "sequence_num", int)
        ts_event = json_time(message, "timestamp")
        for event in json_objects(message, "events"):
            for ticker in json_objects(event, "tickers"):
                if json_field(ticker, "product_id", str) != self.product_id:
                    continue
                bbo = ticker_bbo(ticker)
                if bbo is None:
                    self.stats.ticker_without_bbo_skipped += 1
                    continue
                self.stats.quotes += 1
                out.quote(frame.ts_recv, ts_event, bbo[:2], bbo[2:], sn)

    def _on_trades(self, frame: Frame, message: Json, out: Consumed) -> None:
        """Oldest first (Coinbase batches newest first); snapshot trades happened before we
        subscribed and are left out (counted), but their ids still de-duplicate."""
        for event in json_objects(message, "events"):
            snapshot = json_field(event, "type", str) == "snapshot"
            rows = [trade_row(trade) for trade in json_objects(event, "trades")]
            for product_id, trade_id, row in sorted(rows, key=lambda r: r[1]):
                if product_id != self.product_id:
                    continue
                if trade_id <= self._last_trade_id:
                    self.stats.duplicates += 1
                    continue
                if self._last_trade_id >= 0 and trade_id != self._last_trade_id + 1:
                    self.stats.trade_id_gaps += 1
                self._last_trade_id = trade_id
                if snapshot:
                    self.stats.trades_in_snapshot_excluded += 1
                    continue
                self.stats.trades += 1
                ts_event, px, sz, side = row
                out.trade(frame.ts_recv, ts_event, px, sz, side, trade_id)

    def _on_heartbeats(self, frame: Frame, message: Json) -> None:
        conn = frame.conn_id
        for event in json_objects(message, "events"):
            counter = json_field(event, "heartbeat_counter", int)
            self.stats.heartbeats += 1
            last = self._beat.get(conn)
            if last is not None and counter != last + 1:
                self.stats.heartbeat_gaps += 1
                self.stats.heartbeats_missed += max(counter - last - 1, 0)
            self._beat[conn] = counter
        self._beat_ts[conn] = frame.ts_recv


def adapter(kinds: Sequence[str], url: str | None, rest_url: str | None) -> VenueAdapter:
    """Coinbase Advanced Trade subscribed to the channels of `kinds` (and heartbeats)."""
    unknown = sorted(set(kinds) - set(CHANNELS))
    if unknown:
        raise ConfigError(f"kinds {unknown}: Coinbase channels exist for {sorted(CHANNELS)}")
    depth = "book" in kinds
    profile = CoinbaseProfile(channels=tuple(CHANNELS[k] for k in kinds))
    return VenueAdapter(
        "coinbase",
        profile,
        url or COINBASE_WS_URL,
        rest_url or COINBASE_REST_URL,
        MAX_MESSAGE_BYTES,
        profile.conflatable,
        lambda symbol: CoinbaseNormalizer(symbol, depth=depth),
        lambda symbol: symbol.upper() + "@",
        InstrumentSource("products", product_url, instruments.from_coinbase_product),
    )


def product_url(rest_base: str, product_id: str) -> str:
    """The product's increments and minimum order value: Advanced Trade's public
    GET /api/v3/brokerage/market/products/<product_id> (no key needed)."""
    return f"{rest_base.rstrip('/')}/api/v3/brokerage/market/products/{product_id.upper()}"
