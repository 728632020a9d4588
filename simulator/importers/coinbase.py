"""Coinbase Advanced Trade recordings (cryptofeed format 2) -> one session per product.

Input: JSON lines ``{"t": "header"|"http"|"connect"|"send"|"recv", "ts": seconds, "conn": ...,
"data": "<raw message>"}``, zstd/gzip/plain. ``recv`` records hold the websocket envelopes
``{"channel", "timestamp", "sequence_num", "events"}``; several files are read as one recording.

Output per product (kinds with no rows are left out):

- ``quotes`` from ``ticker`` events (snapshot and update: both are the current best bid/ask);
  events with a missing, empty or zero best bid/ask field are skipped and counted.
- ``trades`` from ``market_trades`` *update* events, oldest first (Coinbase batches them newest
  first). Snapshot trades are excluded and counted: they happened before the recording began,
  and a burst of old trades at one receive time would feed stale prints to the pipeline.
  Coinbase's ``side`` is the maker's, so BUY (a resting bid was hit) is -1, SELL is +1.
- ``book``: the L2 book rebuilt from ``l2_data`` snapshot + updates (``new_quantity`` is
  absolute, 0 removes); one row per message touching the product, top `levels` levels.

Times: ``ts_recv`` is the record's ``ts`` converted exactly from its decimal text; ``ts_event``
is the envelope ``timestamp`` (trades: the trade's ``time``), parsed exactly from RFC 3339.
``seq`` is the 0-based line index in the recording (files joined in the order given).

The recording is read once, line by line; each product's rows go to a store.SessionWriter a
batch at a time, so memory stays bounded whatever the size of the recording, and every
session is published only after the whole recording was read (byte for byte the files a
whole-file import writes).

Checks that raise DataError naming file and 1-based line: non-JSON lines, unknown record types,
missing or mistyped fields, a header from another exchange or format, ``ts`` going backwards, a
``sequence_num`` jump on a connection (the book cannot be trusted after one), an l2 update
before its product's snapshot, and a rebuilt book that is crossed or locked after a message (the
data contract forbids such rows). Heartbeat counter gaps, trade-id gaps and ticker/book
agreement are counted in the facts, not raised.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, Protocol

import orjson
import pyarrow as pa

from simulator.errors import ConfigError, DataError
from simulator.importers.book import OrderBook

# moved to coinbase_messages (shared with live mode); `X as X` keeps them this module's API
from simulator.importers.coinbase_messages import MAKER_SIDE_TO_AGGRESSOR as MAKER_SIDE_TO_AGGRESSOR
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
from simulator.importers.coinbase_messages import parse_rfc3339_ns as parse_rfc3339_ns
from simulator.importers.coinbase_messages import seconds_to_ns as seconds_to_ns
from simulator.importers.common import ImportResult, ProgressFn, no_progress, numbered_lines
from simulator.store import SessionWriter
from simulator.types import SessionKey, book_columns

VENUE: Final = "coinbase"
RECORD_TYPES: Final = frozenset({"header", "http", "connect", "send", "recv"})
FORMAT_VERSION: Final = 2
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Column = list[float | int | None]
KINDS: Final = ("quotes", "trades", "book")
BATCH_ROWS: Final = 65_536
"""Rows of a kind gathered before they go to the product's SessionWriter."""


class _WriterFactory(Protocol):
    def __call__(self, product_id: str, first_ts_recv: int) -> SessionWriter: ...


@dataclass(slots=True)
class _Product:
    """Rows and counters of one product, built in recording order and written a batch at a
    time to its session (opened at its first row, when its date is known)."""

    product_id: str
    levels: int
    open_writer: _WriterFactory
    quotes: dict[str, Column] = field(default_factory=dict)
    trades: dict[str, Column] = field(default_factory=dict)
    book_rows: dict[str, Column] = field(default_factory=dict)
    book: OrderBook | None = None
    book_conn: str = ""
    last_trade_id: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    writer: SessionWriter | None = None
    ts_recv: list[int] = field(default_factory=list)  # [first, last] of the rows
    ts_event: list[int] = field(default_factory=list)  # [min, max] of the rows

    def __post_init__(self) -> None:
        times = ("ts_event", "ts_recv")
        self.quotes = {c: [] for c in (*times, "bid_px", "bid_sz", "ask_px", "ask_sz", "seq")}
        self.trades = {c: [] for c in (*times, "px", "sz", "side", "trade_id", "seq")}
        self.book_rows = {c: [] for c in (*times, *book_columns(self.levels), "seq")}

    def add(self, kind: str, ts_event: int, ts_recv: int, *rest: float | int | None) -> None:
        """Append one row of `kind`; write the batch to the session when it is full."""
        columns = _kinds(self)[kind]
        _append(columns, (ts_event, ts_recv, *rest))
        if self.writer is None:
            self.writer = self.open_writer(self.product_id, ts_recv)
            self.ts_recv = [ts_recv, ts_recv]
            self.ts_event = [ts_event, ts_event]
        self.ts_recv[1] = max(self.ts_recv[1], ts_recv)
        self.ts_event = [min(self.ts_event[0], ts_event), max(self.ts_event[1], ts_event)]
        if len(columns["ts_recv"]) >= BATCH_ROWS:
            self.flush(kind)

    def flush(self, kind: str) -> None:
        columns = _kinds(self)[kind]
        if self.writer is not None and columns["ts_recv"]:
            self.writer.write(kind, _table(columns))
            for column in columns.values():
                column.clear()


def _append(columns: dict[str, Column], values: Sequence[float | int | None]) -> None:
    for column, value in zip(columns.values(), values, strict=True):
        column.append(value)


class _Recording:
    """Reads recv records in order, keeping books, sequence and heartbeat state."""

    def __init__(self, levels: int, open_writer: _WriterFactory) -> None:
        self.levels = levels
        self.open_writer = open_writer
        self.products: dict[str, _Product] = {}
        self.counts: Counter[str] = Counter()
        self.next_seq: dict[str, int | None] = {}
        self.last_heartbeat: dict[str, tuple[int, int]] = {}  # conn -> (counter, ts_recv)
        self.max_heartbeat_interval_ns = 0
        self.first_ts_recv = 0
        self.last_ts: tuple[int, int] | None = None  # (ts_recv, line number) of the last recv
        self.line_index = -1  # 0-based across all files: the rows' `seq`
        self.line_number = 0  # 1-based within the current file, for messages
        self.handlers: dict[str, Callable[[list[Json], int, int, str], None]] = {
            "l2_data": self._on_l2,
            "ticker": self._on_ticker,
            "market_trades": self._on_trades,
            "heartbeats": self._on_heartbeats,
        }

    def feed(self, path: Path) -> None:
        for number, line in numbered_lines(path):
            self.line_index += 1
            self.line_number = number
            try:
                self._on_line(line)
            except MessageError as e:
                raise DataError(f"{path} line {number}: {e}") from None

    def product(self, product_id: str) -> _Product:
        found = self.products.get(product_id)
        if found is None:
            found = self.products[product_id] = _Product(
                product_id=product_id, levels=self.levels, open_writer=self.open_writer
            )
        return found

    def _on_line(self, line: str) -> None:
        if not line.strip():
            self.counts["blank_lines"] += 1
            return
        try:
            record = json.loads(line, parse_float=Decimal)
        except (json.JSONDecodeError, InvalidOperation) as e:
            raise MessageError(f"not JSON ({e}); expected a cryptofeed format-2 record") from None
        if not isinstance(record, dict):
            raise MessageError(f"expected a JSON object record, found {type(record).__name__}")
        kind = json_field(record, "t", str)
        if kind not in RECORD_TYPES:
            raise MessageError(
                f"unknown record type '{kind}'; expected one of {sorted(RECORD_TYPES)}"
            )
        self.counts[f"records.{kind}"] += 1
        if kind == "header":
            _check_header(record)
        elif kind == "connect":
            self.next_seq[json_field(record, "conn", str)] = None  # a new connection counts anew
        elif kind == "recv":
            self._on_recv(record)

    def _on_recv(self, record: Json) -> None:
        try:
            ts_recv = seconds_to_ns(record.get("ts"))
        except DataError as e:
            raise MessageError(f"field 'ts': {e}") from None
        if self.last_ts is not None and ts_recv < self.last_ts[0]:
            raise MessageError(
                f"receive time went backwards: ts is {ts_recv} ns, the recv at line "
                f"{self.last_ts[1]} had {self.last_ts[0]} ns; records must be in receive order"
            )
        if self.last_ts is None:
            self.first_ts_recv = ts_recv
        self.last_ts = (ts_recv, self.line_number)
        conn = json_field(record, "conn", str)
        try:
            message = orjson.loads(json_field(record, "data", str))
        except orjson.JSONDecodeError as e:
            raise MessageError(f"message data is not JSON ({e})") from None
        if not isinstance(message, dict):
            raise MessageError(f"message should be a JSON object, found {type(message).__name__}")
        self._on_message(message, ts_recv, conn)

    def _on_message(self, message: Json, ts_recv: int, conn: str) -> None:
        if message.get("type") == "error":  # a venue error message has no envelope
            self.counts["messages.error"] += 1
            return
        channel = json_field(message, "channel", str)
        self._check_sequence(conn, json_field(message, "sequence_num", int))
        ts_event = json_time(message, "timestamp")
        events = json_objects(message, "events")
        self.counts[f"messages.{channel}"] += 1
        for event in events:
            self.counts[f"events.{channel}.{event.get('type', '-')}"] += 1
        handler = self.handlers.get(channel)
        if handler is not None:
            handler(events, ts_event, ts_recv, conn)

    def _check_sequence(self, conn: str, found: int) -> None:
        expected = self.next_seq.get(conn)
        if expected is not None and found != expected:
            raise MessageError(
                f"sequence_num gap on connection {conn}: expected {expected}, found {found}; "
                "messages were lost or repeated and the book cannot be trusted — re-record"
            )
        self.next_seq[conn] = found + 1

    def _on_l2(self, events: list[Json], ts_event: int, ts_recv: int, conn: str) -> None:
        touched: dict[str, _Product] = {}
        for event in events:
            product_id = json_field(event, "product_id", str)
            product = touched[product_id] = self.product(product_id)
            _apply_l2(product, event, conn)
        for product_id, product in touched.items():
            if product.book is None:  # _apply_l2 raised otherwise; kept for the type checker
                continue
            bid, ask = product.book.best()
            if bid is not None and ask is not None and bid >= ask:
                # the contract forbids crossed/locked rows; fail here, where the line is known
                raise MessageError(
                    f"the {product_id} book rebuilt after this l2_data message is crossed or "
                    f"locked (best bid {bid} >= best ask {ask}); the feed or recording is broken"
                )
            top = product.book.top_row(self.levels)
            product.add("book", ts_event, ts_recv, *top, self.line_index)

    def _on_ticker(self, events: list[Json], ts_event: int, ts_recv: int, conn: str) -> None:
        for event in events:
            for ticker in json_objects(event, "tickers"):
                product = self.product(json_field(ticker, "product_id", str))
                product.counts["ticker_events"] += 1
                bbo = ticker_bbo(ticker)
                if bbo is None:
                    product.counts["ticker_without_bbo_skipped"] += 1
                    continue
                _compare_with_book(product, bbo)
                product.add("quotes", ts_event, ts_recv, *bbo, self.line_index)

    def _on_trades(self, events: list[Json], ts_event: int, ts_recv: int, conn: str) -> None:
        for event in events:
            snapshot = json_field(event, "type", str) == "snapshot"
            rows = [trade_row(trade) for trade in json_objects(event, "trades")]
            for product_id, trade_id, row in sorted(rows, key=lambda r: (r[0], r[1])):
                product = self.product(product_id)
                if product.last_trade_id is not None and trade_id != product.last_trade_id + 1:
                    product.counts["trade_id_gaps"] += 1
                product.last_trade_id = trade_id
                if snapshot:
                    product.counts["trades_in_snapshot_excluded"] += 1
                    continue
                product.add("trades", row[0], ts_recv, *row[1:], trade_id, self.line_index)

    def _on_heartbeats(self, events: list[Json], ts_event: int, ts_recv: int, conn: str) -> None:
        for event in events:
            counter = json_field(event, "heartbeat_counter", int)
            self.counts["heartbeats"] += 1
            last = self.last_heartbeat.get(conn)
            if last is not None:
                if counter != last[0] + 1:
                    self.counts["heartbeat_gaps"] += 1
                    self.counts["heartbeats_missed"] += max(counter - last[0] - 1, 0)
                interval = ts_recv - last[1]
                self.max_heartbeat_interval_ns = max(self.max_heartbeat_interval_ns, interval)
            self.last_heartbeat[conn] = (counter, ts_recv)


def _check_header(record: Json) -> None:
    exchange = record.get("exchange")
    if exchange != "COINBASE":
        raise MessageError(f"header of a {exchange!r} recording; this importer reads COINBASE")
    version = record.get("format")
    if version != FORMAT_VERSION:
        raise MessageError(f"cryptofeed format {version!r}; this importer reads format 2")


def _apply_l2(product: _Product, event: Json, conn: str) -> None:
    kind = json_field(event, "type", str)
    levels = [l2_level(level) for level in json_objects(event, "updates")]
    if kind == "snapshot":  # a snapshot replaces the whole book (also after a resubscribe)
        book = OrderBook()
        book.reset(
            ((price, size) for is_bid, price, size in levels if is_bid),
            ((price, size) for is_bid, price, size in levels if not is_bid),
        )
        product.book, product.book_conn = book, conn
        product.counts["l2_snapshots"] += 1
        product.counts["l2_snapshot_levels"] += len(levels)
        return
    if kind != "update":
        raise MessageError(f"l2_data event type '{kind}'; expected snapshot or update")
    if product.book is None or product.book_conn != conn:
        raise MessageError(
            f"l2_data update for {json_field(event, 'product_id', str)} before its snapshot on "
            f"connection {conn}; the book cannot be rebuilt"
        )
    product.counts["l2_updates_applied"] += len(levels)
    for is_bid, price, size in levels:
        if not product.book.set(is_bid, price, size):
            product.counts["l2_removals_of_absent_levels"] += 1


def _compare_with_book(product: _Product, bbo: tuple[float, float, float, float]) -> None:
    """Count whether the ticker's best prices equal the rebuilt book's at this moment."""
    book = product.book
    if book is None:
        product.counts["ticker_before_book"] += 1
        return
    if book.best() != (bbo[0], bbo[2]):
        product.counts["ticker_bbo_differs_from_book"] += 1
        return
    product.counts["ticker_bbo_equals_book"] += 1
    if (book.size(True, bbo[0]), book.size(False, bbo[2])) == (bbo[1], bbo[3]):
        product.counts["ticker_bbo_and_sizes_equal_book"] += 1


PRODUCT_FACTS: Final = (
    "l2_snapshots", "l2_snapshot_levels", "l2_updates_applied", "l2_removals_of_absent_levels",
    "ticker_events", "ticker_without_bbo_skipped",
    "ticker_before_book", "ticker_bbo_equals_book", "ticker_bbo_and_sizes_equal_book",
    "ticker_bbo_differs_from_book", "trades_in_snapshot_excluded", "trade_id_gaps",
)  # fmt: skip
"""Per-product counters, always reported (0 when nothing happened)."""
_INT_COLUMNS: Final = ("ts_event", "ts_recv", "trade_id", "seq")


def import_coinbase(
    paths: Sequence[Path], data_dir: Path, *, levels: int = 20, progress: ProgressFn = no_progress
) -> list[ImportResult]:
    """Import one recording (its files in order) as one session per product, sorted by key.

    `progress` is called with input bytes read, file by file.
    """
    if not paths:
        raise ConfigError("no Coinbase recording given; pass at least one file")
    if levels < 1:
        raise ConfigError(f"levels must be at least 1, found {levels}")
    with ExitStack() as stack:

        def open_writer(product_id: str, first_ts_recv: int) -> SessionWriter:
            day = (_EPOCH + timedelta(microseconds=first_ts_recv // 1000)).date().isoformat()
            writer = SessionWriter(data_dir, SessionKey(VENUE, product_id, day), KINDS)
            return stack.enter_context(writer)

        recording = _Recording(levels, open_writer)
        total = sum(path.stat().st_size for path in paths if path.is_file())
        done = 0
        progress(done, total)
        for path in paths:
            recording.feed(path)
            done += path.stat().st_size
            progress(done, total)
        shared = _recording_facts(recording, paths)
        results = [
            _write_product(product, shared)
            for _, product in sorted(recording.products.items())
            if product.writer is not None
        ]
    if not results:
        names = ", ".join(str(path) for path in paths)
        raise DataError(f"{names}: no ticker, market_trades or l2_data rows; nothing to import")
    return results


def _kinds(product: _Product) -> dict[str, dict[str, Column]]:
    return {"quotes": product.quotes, "trades": product.trades, "book": product.book_rows}


def _recording_facts(recording: _Recording, paths: Sequence[Path]) -> dict[str, object]:
    counts = recording.counts

    def group(prefix: str) -> dict[str, int]:
        return {
            k.removeprefix(prefix): n for k, n in sorted(counts.items()) if k.startswith(prefix)
        }

    return {
        "source_files": [path.name for path in paths],
        "records": group("records."),
        "messages": group("messages."),
        "events": group("events."),
        "connections": len(recording.next_seq),
        "blank_lines": counts["blank_lines"],
        "heartbeats": counts["heartbeats"],
        "heartbeat_gaps": counts["heartbeat_gaps"],
        "heartbeats_missed": counts["heartbeats_missed"],
        "heartbeat_max_interval_ns": recording.max_heartbeat_interval_ns,
        "recording_first_ts_recv": recording.first_ts_recv,
        "recording_last_ts_recv": None if recording.last_ts is None else recording.last_ts[0],
    }


def _write_product(product: _Product, shared: dict[str, object]) -> ImportResult:
    writer = product.writer
    if writer is None:  # the caller passes products with rows only
        raise DataError(f"{product.product_id}: no rows")
    for kind in KINDS:
        product.flush(kind)
    facts: dict[str, object] = {
        **shared,
        **{name: product.counts[name] for name in PRODUCT_FACTS},
        "first_ts_recv": product.ts_recv[0],
        "last_ts_recv": product.ts_recv[1],
        "first_ts_event": product.ts_event[0],
        "last_ts_event": product.ts_event[1],
    }
    meta = {"venue": VENUE, "symbol": product.product_id, "importer": "coinbase", "facts": facts}
    path = writer.commit(meta)
    rows = {kind: writer.rows[kind] for kind in KINDS if writer.rows[kind]}
    return ImportResult(key=writer.key, path=path, rows=rows, facts=facts)


def _table(columns: dict[str, Column]) -> pa.Table:
    def dtype(name: str) -> pa.DataType:
        if name == "side":
            return pa.int8()
        return pa.int64() if name in _INT_COLUMNS else pa.float64()

    return pa.table({name: pa.array(values, type=dtype(name)) for name, values in columns.items()})
