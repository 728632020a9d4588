"""The Binance Spot adapter: connection profile, subscriptions, and the pure normaliser.

Frames -> consumed events: a pure normalizer, one per symbol (no clock, no I/O).

Book sync follows LIVE.md 1.4 with the importer's `DepthChain`: diffs are buffered until a
REST snapshot frame arrives, then applied; a broken update-id chain declares a GAP, resets
the book and asks for a new snapshot (the caller does the asking: `wants_snapshot`).
Duplicates after a reconnect or a rollover are dropped by id: a bookTicker whose `u` is not
above the last one, a trade whose id is not above the last one, a diff the book already has.
The same frames always give the same events, so re-normalising a recording's raw table
reproduces what live consumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from orjson import loads

from simulator import instruments
from simulator.errors import ConfigError
from simulator.importers.binance_book import DepthChain, Verdict
from simulator.importers.binance_messages import (
    NS_PER_MS,
    Depth,
    Quote,
    Trade,
    parse_message,
    parse_snapshot,
)
from simulator.importers.book import L2Book, new_book
from simulator.live.adapter import FeedActions, InstrumentSource, VenueAdapter
from simulator.live.consumed import Consumed
from simulator.live.frames import SNAPSHOT_SUFFIX, Direction, Frame
from simulator.live.frames import stream_of as combined_stream_of
from simulator.live.inbox import GAP_DIRECTION
from simulator.types import StatusCode

BINANCE_WS_URL: Final = "wss://stream.binance.com:9443"
BINANCE_REST_URL: Final = "https://api.binance.com"
BINANCE_US_WS_URL: Final = "wss://stream.binance.us:9443"
BINANCE_US_REST_URL: Final = "https://api.binance.us"
MAX_MESSAGE_BYTES: Final = 1 << 22
STREAMS: Final = {"quotes": "bookTicker", "trades": "trade", "book": "depth@100ms"}
"""The stream of each consumed kind."""

MAX_BUFFERED_DIFFS: Final = 10_000
"""Diffs kept while waiting for a snapshot (NautilusTrader's bound); beyond it, a gap."""


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

    @property
    def refusal_hint(self) -> str:
        return (
            f"Binance.US serves the same feed: --url {BINANCE_US_WS_URL} "
            f"--rest-url {BINANCE_US_REST_URL}"
        )


@dataclass(slots=True)
class NormalizerStats:
    quotes: int = 0
    trades: int = 0
    diffs_applied: int = 0
    duplicates: int = 0  # stale bookTicker u, repeated trade id, diff already in the book
    gaps: int = 0
    resyncs: int = 0
    stale_snapshots: int = 0
    malformed: int = 0
    last_error: str = ""


class BinanceNormalizer:
    """Frames of one symbol (and the session's connect/close/timer frames) -> consumed events."""

    def __init__(self, symbol: str, *, depth: bool, futures: bool = False) -> None:
        self.symbol = symbol.upper()
        self.prefix = symbol.lower() + "@"
        self._snapshot_stream = symbol.lower() + SNAPSHOT_SUFFIX
        self._depth = depth
        self._futures = futures
        self.book: L2Book = new_book()
        self._chain: DepthChain | None = None
        self._buffer: list[Depth] = []
        # the diff applied last, while the book is as it left it (dry_book applies it again)
        self._last_diff: Depth | None = None
        self._last_quote_u = -1
        self._last_trade_id = -1
        self._conn = -1
        self.wants_snapshot = depth  # the caller fetches one and clears this
        self.synced = False
        self.stats = NormalizerStats()

    def needs_snapshot(self) -> bool:
        """True when a REST snapshot should be requested now: not synced, diffs buffered (so
        the snapshot can be checked against the first one, LIVE.md 1.4 step 3)."""
        return self.wants_snapshot and self._chain is None and bool(self._buffer)

    def snapshot_requested(self) -> None:
        self.wants_snapshot = False

    def act(self, feed: FeedActions) -> None:
        """Ask for the REST snapshot once the book needs one."""
        if self.needs_snapshot():
            self.snapshot_requested()
            feed.request_snapshot(self.symbol)

    def on_frame(self, frame: Frame, out: Consumed) -> None:
        direction = frame.direction
        if direction == Direction.IN:
            self._on_message(frame, out)
        elif direction == Direction.HTTP_RESP and frame.stream == self._snapshot_stream:
            self._on_snapshot(frame, out)
        elif direction == Direction.TIMER:
            out.tick(frame.ts_recv)
        elif direction == GAP_DIRECTION:
            self._declare_gap(frame, out, f"inbox overflow: {frame.payload.decode()} frame(s) of "
                              f"{frame.stream} dropped")  # fmt: skip
        elif direction == Direction.CONNECT:
            self._conn = frame.conn_id
            out.status_event(frame.ts_recv, StatusCode.CONNECTED, f"conn {frame.conn_id}")
        elif direction == Direction.CLOSE and frame.conn_id == self._conn:
            out.status_event(frame.ts_recv, StatusCode.DISCONNECTED, frame.payload.decode())

    def dry_parse(self, frame: Frame) -> None:
        """What `on_frame` parses of a market-data frame (the JSON, then the message), kept
        and counted nowhere: the live keep-warm pass (`SymbolRun.dry_pass`)."""
        kind = frame.stream[len(self.prefix) :]
        with contextlib.suppress(KeyError, TypeError, ValueError):
            data = loads(frame.payload)["data"]
            if kind == _QUOTE_STREAM:
                _quote_fields(data)
            else:
                parse_message(kind, data)

    def dry_book(self, levels: int) -> None:
        """What `on_frame` does to the book for a diff, again, on the last diff applied: the
        live keep-warm pass (`SymbolRun.dry_pass`). Binance sizes are absolute, so applying
        the book's last diff once more leaves every level as it is (a NaN price would be
        inserted again: such a diff is not applied); the top `levels` are read, unused."""
        diff = self._last_diff
        if diff is None:
            return
        bids, asks = diff.bids, diff.asks
        if all(px == px for px, _ in bids) and all(px == px for px, _ in asks):
            self.book.apply(bids, asks)
        self.book.top_row(levels)

    def _on_message(self, frame: Frame, out: Consumed) -> None:
        kind = frame.stream[len(self.prefix) :]
        if kind == _QUOTE_STREAM:
            self._on_quote(frame, out)
            return
        try:
            data = loads(frame.payload)["data"]
            message = parse_message(kind, data)
        except (KeyError, TypeError, ValueError) as e:
            self.stats.malformed += 1
            self.stats.last_error = f"frame seq {frame.seq} ({frame.stream}): {e}"
            return
        ts = frame.ts_recv
        if isinstance(message, Quote):
            if message.update_id <= self._last_quote_u:
                self.stats.duplicates += 1
                return
            self._last_quote_u = message.update_id
            self.stats.quotes += 1
            out.quote(
                ts,
                message.ts_event,
                (message.bid_px, message.bid_sz),
                (message.ask_px, message.ask_sz),
                message.update_id,
            )
        elif isinstance(message, Trade):
            if message.trade_id <= self._last_trade_id:
                self.stats.duplicates += 1
                return
            self._last_trade_id = message.trade_id
            self.stats.trades += 1
            out.trade(ts, message.ts_event, message.px, message.sz, message.side, message.trade_id)
        elif isinstance(message, Depth) and self._depth:
            self._on_depth(frame, message, out)

    def _on_quote(self, frame: Frame, out: Consumed) -> None:
        """`_on_message` for a bookTicker (most frames), without the Quote object."""
        try:
            update_id, ts_event, bid, ask = _quote_fields(loads(frame.payload)["data"])
        except (KeyError, TypeError, ValueError) as e:
            self.stats.malformed += 1
            self.stats.last_error = f"frame seq {frame.seq} ({frame.stream}): {e}"
            return
        if update_id <= self._last_quote_u:
            self.stats.duplicates += 1
            return
        self._last_quote_u = update_id
        self.stats.quotes += 1
        out.quote(frame.ts_recv, ts_event, bid, ask, update_id)

    def _on_depth(self, frame: Frame, diff: Depth, out: Consumed) -> None:
        chain = self._chain
        if chain is None:  # not synced: keep it for when the snapshot comes
            if len(self._buffer) >= MAX_BUFFERED_DIFFS:
                self._buffer.clear()
                self.stats.gaps += 1
                out.status_event(frame.ts_recv, StatusCode.GAP, "diff buffer full before sync")
            self._buffer.append(diff)
            return
        verdict = chain.admit(diff.first_id, diff.last_id, diff.prev_id)
        if verdict == Verdict.APPLY:
            self.book.apply(diff.bids, diff.asks)
            self._last_diff = diff
            self.stats.diffs_applied += 1
            out.book_row(frame.ts_recv, diff.ts_event, diff.last_id, self.book)
        elif verdict == Verdict.GAP:
            reason = chain.gap_text(diff.first_id, diff.last_id, diff.prev_id)
            self._declare_gap(frame, out, reason)
            self._buffer.append(diff)
        else:
            self.stats.duplicates += 1

    def _declare_gap(self, frame: Frame, out: Consumed, reason: str) -> None:
        self._last_diff = None
        self.stats.gaps += 1
        out.status_event(frame.ts_recv, StatusCode.GAP, reason)
        if self._depth and self._chain is not None:
            self._chain = None
            self.synced = False
            self.stats.resyncs += 1
            out.status_event(frame.ts_recv, StatusCode.BOOK_RESET, "resync from a new snapshot")
            self.wants_snapshot = True

    def _on_snapshot(self, frame: Frame, out: Consumed) -> None:
        if self._chain is not None:  # a late answer to a request already served
            return
        try:
            snapshot = parse_snapshot(_object(loads(frame.payload)))
        except (KeyError, TypeError, ValueError) as e:
            self.stats.malformed += 1
            self.stats.last_error = f"snapshot frame seq {frame.seq}: {e}"
            out.status_event(frame.ts_recv, StatusCode.SNAPSHOT_FAILED, str(e)[:200])
            self.wants_snapshot = True
            return
        buffer = [d for d in self._buffer if d.last_id > snapshot.last_update_id]
        if buffer and buffer[0].first_id > snapshot.last_update_id + 1:
            self.stats.stale_snapshots += 1
            out.status_event(
                frame.ts_recv,
                StatusCode.STALE_SNAPSHOT,
                f"lastUpdateId {snapshot.last_update_id} < first buffered U {buffer[0].first_id}",
            )
            self.wants_snapshot = True
            return
        chain = DepthChain(snapshot.last_update_id, futures=self._futures)
        self._last_diff = None
        self.book.reset(snapshot.bids, snapshot.asks)
        applied = 0
        for k, diff in enumerate(buffer):
            if chain.admit(diff.first_id, diff.last_id, diff.prev_id) != Verdict.APPLY:
                self._buffer = buffer[k:]  # a hole inside the buffer: ask again from here
                self.stats.gaps += 1
                reason = chain.gap_text(diff.first_id, diff.last_id, diff.prev_id)
                out.status_event(frame.ts_recv, StatusCode.GAP, reason)
                self.wants_snapshot = True
                return
            self.book.apply(diff.bids, diff.asks)
            self._last_diff = diff
            applied += 1
            out.book_row(frame.ts_recv, diff.ts_event, diff.last_id, self.book)
        self._buffer.clear()
        self._chain = chain
        self.synced = True
        self.stats.diffs_applied += applied
        if applied == 0:
            out.book_row(frame.ts_recv, None, snapshot.last_update_id, self.book)
        out.status_event(
            frame.ts_recv, StatusCode.BOOK_SYNCED, f"snapshot {snapshot.last_update_id}"
        )


def adapter(kinds: Sequence[str], url: str | None, rest_url: str | None) -> VenueAdapter:
    """Binance Spot (or binance.us, by URL) subscribed to the streams of `kinds`."""
    unknown = sorted(set(kinds) - set(STREAMS))
    if unknown:
        raise ConfigError(f"kinds {unknown}: Binance streams exist for {sorted(STREAMS)}")
    depth = "book" in kinds
    return VenueAdapter(
        "binance",
        BinanceProfile(streams=tuple(STREAMS[k] for k in kinds)),
        url or BINANCE_WS_URL,
        rest_url or BINANCE_REST_URL,
        MAX_MESSAGE_BYTES,
        lambda stream: stream.endswith("@bookTicker"),
        lambda symbol: BinanceNormalizer(symbol, depth=depth),
        lambda symbol: symbol.lower() + "@",
        InstrumentSource("exchangeInfo", exchange_info_url, instruments.from_exchange_info),
    )


def exchange_info_url(rest_base: str, symbol: str) -> str:
    """The symbol's filters (tick, lot, minimum notional): GET /api/v3/exchangeInfo."""
    return f"{rest_base.rstrip('/')}/api/v3/exchangeInfo?symbol={symbol.upper()}"


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, found {type(value).__name__}")
    return value


_QUOTE_STREAM: Final = "bookTicker"


def _quote_fields(
    data: Any,  # noqa: ANN401 - a JSON value, checked as it is read
) -> tuple[int, int | None, tuple[float, float], tuple[float, float]]:
    """(update id, ts_event, bid, ask) of a bookTicker payload: the importer's Quote
    (`binance_messages._quote`) field for field, read in its order, raising what it raises
    (the push time E is checked and dropped, as there), without building the Quote: this
    runs for most frames live (a test compares the two on the bundled recording)."""
    update_id = int(data["u"])
    t, e = data.get("T"), data.get("E")
    ts_event = None if t is None else int(t) * NS_PER_MS
    if e is not None:
        int(e)
    return (
        update_id,
        ts_event,
        (float(data["b"]), float(data["B"])),
        (
            float(data["a"]),
            float(data["A"]),
        ),
    )
