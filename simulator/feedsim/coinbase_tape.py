"""What the Coinbase feed server sends: a cryptofeed format-2 recording's envelopes.

The `recv` records of the recording (see importers/coinbase.py) hold the envelopes exactly as
Coinbase sent them; each is kept as bytes split around its `sequence_num`, so a server can
number it per connection and change nothing else. `ReplayBooks` keeps the level2 books the
records build (as the recorded text), for snapshots to subscribers who join late.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import orjson

from simulator.errors import DataError
from simulator.importers.coinbase_messages import (
    Json,
    MessageError,
    json_field,
    json_objects,
    seconds_to_ns,
)
from simulator.importers.common import numbered_lines
from simulator.live.venues.coinbase import SEQUENCE_NUM


class L2Event(NamedTuple):
    product: str
    snapshot: bool
    levels: tuple[tuple[bool, str, str], ...]  # (is_bid, price text, new_quantity text)


@dataclass(frozen=True, slots=True)
class CoinbaseRecord:
    """One recorded envelope: its receive time and bytes, split around its sequence_num."""

    ts_recv: int
    channel: str  # as in the envelope: l2_data, ticker, market_trades, heartbeats ...
    products: frozenset[str]
    sequence_num: int
    timestamp: str  # the envelope's, RFC 3339
    head: bytes
    tail: bytes
    l2: tuple[L2Event, ...] = ()

    def payload(self, sequence_num: int | None = None) -> bytes:
        """The envelope numbered `sequence_num` (default: as recorded, the exact bytes)."""
        number = self.sequence_num if sequence_num is None else sequence_num
        return self.head + str(number).encode() + self.tail


def load_coinbase_records(path: Path | str) -> list[CoinbaseRecord]:
    """The `recv` envelopes of a cryptofeed format-2 recording (zstd, gzip or plain), in
    order; venue error replies and other record types are left out."""
    path = Path(path)
    records: list[CoinbaseRecord] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            record = _record(line)
        except (MessageError, DataError, ValueError) as e:
            raise DataError(f"{path} line {number}: {e}") from None
        if record is not None:
            records.append(record)
    if not records:
        raise DataError(f"{path}: no recv record holds a Coinbase envelope; nothing to serve")
    return records


def _record(line: str) -> CoinbaseRecord | None:
    raw = json.loads(line, parse_float=Decimal)  # exact receive times
    if not isinstance(raw, dict) or raw.get("t") != "recv":
        return None
    data = json_field(raw, "data", str).encode()
    message = orjson.loads(data)
    if not isinstance(message, dict) or "channel" not in message:
        return None  # an error reply to the recorder's request: not market data
    match = SEQUENCE_NUM.search(data)
    if match is None:
        raise MessageError("envelope without sequence_num")
    channel = json_field(message, "channel", str)
    events = json_objects(message, "events")
    return CoinbaseRecord(
        ts_recv=seconds_to_ns(raw.get("ts")),
        channel=channel,
        products=_products(events),
        sequence_num=int(match.group(1)),
        timestamp=json_field(message, "timestamp", str),
        head=data[: match.start(1)],
        tail=data[match.end(1) :],
        l2=tuple(_l2_event(e) for e in events) if channel == "l2_data" else (),
    )


def _products(events: list[Json]) -> frozenset[str]:
    """The product ids an envelope's events name, at the event level (level2) or in their
    lists (tickers, trades, candles)."""
    found: set[str] = set()
    for event in events:
        items = [event, *(i for v in event.values() if isinstance(v, list) for i in v)]
        for item in items:
            product = item.get("product_id") if isinstance(item, dict) else None
            if isinstance(product, str):
                found.add(product)
    return frozenset(found)


def _l2_event(event: Json) -> L2Event:
    levels = tuple(
        (
            json_field(level, "side", str) == "bid",
            json_field(level, "price_level", str),
            json_field(level, "new_quantity", str),
        )
        for level in json_objects(event, "updates")
    )
    snapshot = json_field(event, "type", str) == "snapshot"
    return L2Event(json_field(event, "product_id", str), snapshot, levels)


class ReplayBooks:
    """The server's level2 books, kept as the recorded text: what a late subscriber's
    snapshot holds. A product has a book once its recorded snapshot has passed."""

    def __init__(self) -> None:
        self._books: dict[str, tuple[dict[float, tuple[str, str]], ...]] = {}

    def apply(self, record: CoinbaseRecord) -> None:
        for event in record.l2:
            if event.snapshot:
                self._books[event.product] = ({}, {})
            book = self._books.get(event.product)
            if book is None:
                continue  # updates before the snapshot: the recording started mid-stream
            for is_bid, price, quantity in event.levels:
                side = book[0] if is_bid else book[1]
                if float(quantity) == 0.0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = (price, quantity)

    def snapshot_event(self, product: str, event_time: str) -> Json | None:
        """A level2 `snapshot` event (bids best first, then offers best first), or None."""
        book = self._books.get(product)
        if book is None:
            return None
        updates = [
            {"side": side, "event_time": event_time, "price_level": p, "new_quantity": q}
            for side, levels in (("bid", book[0]), ("offer", book[1]))
            for _, (p, q) in sorted(levels.items(), reverse=side == "bid")
        ]
        return {"type": "snapshot", "product_id": product, "updates": updates}


def envelope(channel: str, timestamp: str, events: list[Json]) -> tuple[bytes, bytes]:
    """An envelope in Coinbase's key order, split around its sequence_num."""
    head = f'{{"channel":"{channel}","timestamp":"{timestamp}","sequence_num":'.encode()
    return head, b',"events":' + orjson.dumps(events) + b"}"
