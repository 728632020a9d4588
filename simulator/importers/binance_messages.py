"""Binance recording lines -> typed messages, validated once at the boundary.

A recording holds one message per line: `<local receive time, ns> <message>`, where the message
is exactly what Binance sent on a combined stream (`{"stream": "btcusdt@trade", "data": {...}}`)
or, once per symbol, the raw REST depth snapshot (`{"lastUpdateId": ..., "bids": ..., "asks":
...}`) that starts the local book. Prices and sizes are parsed with `float(text)`, which is
deterministic. Every problem raises DataError naming the file, the 1-based line and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NamedTuple

from orjson import loads as _loads

from simulator.errors import DataError

NS_PER_MS: Final = 1_000_000
SNAPSHOT: Final = "snapshot"
"""The stream name facts use for the REST depth snapshot line (it has no stream of its own)."""
KNOWN_STREAMS: Final = "bookTicker, trade, aggTrade, depth, depth@100ms, depth@0ms"
_DEPTH_STREAM: Final = re.compile(r"^depth(@\d+ms)?$")
_LINE_FORMAT: Final = "expected '<receive time ns> <json message>'"

PriceLevels = list[tuple[float, float]]
"""[(price, quantity), ...] of one book side, in the order Binance sent them."""


class Quote(NamedTuple):
    """bookTicker: best bid/ask. Spot sends no exchange time, so ts_event is None there."""

    update_id: int
    ts_event: int | None  # futures T (ns); None on spot, never fabricated
    ts_push: int | None  # futures E (ns)
    bid_px: float
    bid_sz: float
    ask_px: float
    ask_sz: float


class Trade(NamedTuple):
    """trade or aggTrade: ts_event is the match time T, ts_push the message time E."""

    trade_id: int
    ts_event: int
    ts_push: int
    px: float
    sz: float
    side: int  # +1 buyer-initiated, -1 seller-initiated


class Depth(NamedTuple):
    """A diff-depth message: updates first_id..last_id (U..u); futures also link prev_id (pu)."""

    ts_event: int  # E (ns): depth has no other exchange time
    first_id: int
    last_id: int
    prev_id: int | None
    bids: PriceLevels
    asks: PriceLevels


class Snapshot(NamedTuple):
    """The REST depth snapshot that starts the local book."""

    last_update_id: int
    bids: PriceLevels
    asks: PriceLevels


Message = Quote | Trade | Depth | Snapshot


class Line(NamedTuple):
    """One recording line: where it came from, when it arrived, what it says, verbatim text."""

    source: int  # index of its file in the importer's path list
    number: int  # 1-based line number in that file
    ts_recv: int
    stream: str  # Binance stream type ("depth@100ms") or SNAPSHOT
    symbol: str  # uppercase; "" for a snapshot until the importer assigns it
    message: Message
    text: str


def parse_line(path: Path, source: int, number: int, text: str) -> Line:
    """Parse and validate one `<receive time ns> <json>` line."""
    ts_recv, stream, symbol, data = split_line(path, number, text)
    message = parse_payload(path, number, stream, symbol, data)
    return Line(source, number, ts_recv, stream, symbol, message, text)


def split_line(path: Path, number: int, text: str) -> tuple[int, str, str, dict[str, Any]]:
    """(receive time, stream type, SYMBOL or "" for a snapshot, payload) of one line: the
    format, JSON and envelope checks of parse_line, without parsing the payload."""
    head, _, body = text.partition(" ")
    if not (head.isascii() and head.isdigit()) or not body:
        raise DataError(f"{path} line {number}: {_LINE_FORMAT}, found {text[:60]!r}")
    try:
        envelope = _loads(body)
    except ValueError as e:
        raise DataError(f"{path} line {number}: message is not valid JSON ({e})") from e
    stream, symbol, data = _unwrap(envelope, path, number)
    return int(head), stream, symbol, data


def parse_payload(
    path: Path, number: int, stream: str, symbol: str, data: dict[str, Any]
) -> Message:
    """The typed message of a split line; DataError for an unknown stream or a bad payload."""
    parser = _parser(stream) if symbol else _snapshot
    if parser is None:
        raise DataError(
            f"{path} line {number}: unknown stream type '{stream}' in "
            f"'{symbol.lower()}@{stream}'; expected one of {KNOWN_STREAMS}"
        )
    try:
        return parser(data)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{path} line {number}: malformed {stream} message ({type(e).__name__}: {e})"
        ) from e


def is_depth(stream: str) -> bool:
    """True for a diff-depth stream type ("depth", "depth@100ms", ...)."""
    return _DEPTH_STREAM.match(stream) is not None


def _unwrap(envelope: object, path: Path, number: int) -> tuple[str, str, dict[str, Any]]:
    """(stream type, SYMBOL, payload) of a combined-stream message or a REST snapshot."""
    if not isinstance(envelope, dict):
        raise DataError(f"{path} line {number}: {_LINE_FORMAT}; the message is not a JSON object")
    name = envelope.get("stream")
    if name is None and "lastUpdateId" in envelope:
        return SNAPSHOT, "", envelope
    data = envelope.get("data")
    if not isinstance(name, str) or not isinstance(data, dict):
        raise DataError(
            f"{path} line {number}: neither a combined-stream message "
            '{"stream": ..., "data": {...}} nor a REST depth snapshot {"lastUpdateId": ...}'
        )
    symbol, _, stream = name.partition("@")
    if not symbol:
        raise DataError(
            f"{path} line {number}: stream name '{name}' has no symbol; expected e.g. btcusdt@trade"
        )
    return stream, symbol.upper(), data


def parse_message(stream: str, data: dict[str, Any]) -> Message | None:
    """Parse one payload of stream type `stream` ("bookTicker", "depth@100ms", ...); None for
    a stream type this module does not know. Malformed payloads raise KeyError/TypeError/
    ValueError for the caller to report with its own location."""
    parser = _parser(stream)
    return None if parser is None else parser(data)


def parse_snapshot(data: dict[str, Any]) -> Snapshot:
    return _snapshot(data)


def _parser(stream: str) -> Callable[[dict[str, Any]], Message] | None:
    if stream in _PARSERS:
        return _PARSERS[stream]
    return _depth if _DEPTH_STREAM.match(stream) else None


def _optional_ms(data: dict[str, Any], field: str) -> int | None:
    value = data.get(field)
    return None if value is None else int(value) * NS_PER_MS


def _quote(data: dict[str, Any]) -> Quote:
    # positional: this runs for most lines of a recording
    return Quote(
        int(data["u"]),
        _optional_ms(data, "T"),
        _optional_ms(data, "E"),
        float(data["b"]),
        float(data["B"]),
        float(data["a"]),
        float(data["A"]),
    )


def _trade(data: dict[str, Any], id_field: str) -> Trade:
    maker = data["m"]
    if not isinstance(maker, bool):
        raise TypeError(f"field 'm' must be true or false, found {maker!r}")
    return Trade(
        trade_id=int(data[id_field]),
        ts_event=int(data["T"]) * NS_PER_MS,
        ts_push=int(data["E"]) * NS_PER_MS,
        px=float(data["p"]),
        sz=float(data["q"]),
        side=-1 if maker else 1,  # the buyer made the market: a seller took it
    )


def _levels(rows: list[list[str]]) -> PriceLevels:
    return [(float(price), float(qty)) for price, qty in rows]


def _depth(data: dict[str, Any]) -> Depth:
    prev = data.get("pu")
    return Depth(
        ts_event=int(data["E"]) * NS_PER_MS,
        first_id=int(data["U"]),
        last_id=int(data["u"]),
        prev_id=None if prev is None else int(prev),
        bids=_levels(data["b"]),
        asks=_levels(data["a"]),
    )


def _snapshot(data: dict[str, Any]) -> Snapshot:
    return Snapshot(int(data["lastUpdateId"]), _levels(data["bids"]), _levels(data["asks"]))


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], Message]]] = {
    "bookTicker": _quote,
    "trade": lambda data: _trade(data, "t"),
    "aggTrade": lambda data: _trade(data, "a"),
}
