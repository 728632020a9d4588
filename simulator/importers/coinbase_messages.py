"""Coinbase Advanced Trade messages -> plain values: the parsing the importer and live mode share.

Pure functions, no state: exact times (RFC 3339 text -> int ns, decimal seconds -> int ns),
decimal-string prices and sizes, book levels (`side` is bid/offer, `new_quantity` absolute),
ticker best bid/ask, and trades with the maker-side convention turned into the aggressor's.
A bad field raises MessageError naming the field; the caller says where (file and line for the
importer, frame `seq` for the live normalizer).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, TypeVar

from simulator.errors import DataError
from simulator.types import NS_PER_SECOND, Nanos

MAKER_SIDE_TO_AGGRESSOR: Final = {"BUY": -1, "SELL": 1}
"""Coinbase reports the maker side; the contract wants the aggressor (+1 buyer-initiated)."""

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)

Json = dict[str, object]
T = TypeVar("T")


class MessageError(ValueError):
    """A field of a message is missing, mistyped or out of range; the caller adds where."""


def parse_rfc3339_ns(text: str) -> Nanos:
    """RFC 3339 time (any fraction up to ns, Z or ±HH:MM) -> exact int ns since the epoch."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise DataError(f"'{text}' is not an RFC 3339 time such as 2026-08-09T21:05:48.228568Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as e:
        raise DataError(f"'{text}' is not a valid time ({e})") from None
    fraction = int((match.group(7) or "").ljust(9, "0"))
    offset = match.group(8)
    offset_s = 0
    if offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        offset_s = sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    whole_s = (moment - _EPOCH) // _SECOND - offset_s
    return Nanos(whole_s * NS_PER_SECOND + fraction)


def seconds_to_ns(value: object) -> Nanos:
    """Seconds since the epoch, as parsed with ``parse_float=Decimal``, -> int ns (half-even)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DataError(f"expected a number of seconds, found {value!r:.60}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise DataError(f"{value} is not a finite number of seconds")
    return Nanos(int((Decimal(value) * NS_PER_SECOND).to_integral_value()))


def json_field(obj: Json, key: str, kind: type[T]) -> T:
    """`obj[key]` when it is a `kind` (never a bool standing in for an int)."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        found = "nothing" if key not in obj else f"{type(value).__name__} {value!r:.60}"
        raise MessageError(f"field '{key}' should be {kind.__name__}, found {found}")
    return value


def json_objects(obj: Json, key: str) -> list[Json]:
    items = json_field(obj, key, list)
    if not all(isinstance(item, dict) for item in items):
        raise MessageError(f"field '{key}' should be a list of JSON objects")
    return items


def json_number(obj: Json, key: str) -> float:
    """A decimal string field (Coinbase sends prices and sizes as text) as a finite float."""
    text = json_field(obj, key, str)
    try:
        value = float(text)
    except ValueError:
        raise MessageError(f"field '{key}' is not a number: {text!r:.60}") from None
    if not math.isfinite(value) or value < 0:
        raise MessageError(f"field '{key}' is not a finite non-negative number: {text!r:.60}")
    return value


def json_time(obj: Json, key: str) -> Nanos:
    try:
        return parse_rfc3339_ns(json_field(obj, key, str))
    except DataError as e:
        raise MessageError(f"field '{key}': {e}") from None


def l2_level(level: Json) -> tuple[bool, float, float]:
    """(is_bid, price, absolute new quantity) of one level2 update; a quantity of 0 removes."""
    side = json_field(level, "side", str)
    if side not in ("bid", "offer"):
        raise MessageError(f"l2_data level side {side!r}; expected bid or offer")
    price = json_number(level, "price_level")
    if price <= 0:
        raise MessageError(f"l2_data level price {price}; expected a positive price")
    return side == "bid", price, json_number(level, "new_quantity")


def ticker_bbo(ticker: Json) -> tuple[float, float, float, float] | None:
    """(bid px, bid sz, ask px, ask sz); None when a field is missing, empty or zero."""
    keys = ("best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity")
    if any(not ticker.get(key) for key in keys):
        return None
    bid_px, bid_sz, ask_px, ask_sz = (json_number(ticker, key) for key in keys)
    if min(bid_px, bid_sz, ask_px, ask_sz) <= 0:
        return None
    return bid_px, bid_sz, ask_px, ask_sz


def trade_row(trade: Json) -> tuple[str, int, tuple[int, float, float, int]]:
    """(product, trade_id, (ts_event, px, sz, aggressor side)) of one market_trades trade."""
    maker_side = json_field(trade, "side", str)
    side = MAKER_SIDE_TO_AGGRESSOR.get(maker_side)
    if side is None:
        raise MessageError(f"trade side {maker_side!r}; expected BUY or SELL")
    trade_id = json_field(trade, "trade_id", str)
    if not trade_id.isdigit():
        raise MessageError(f"trade_id {trade_id!r} is not an integer")
    row = (json_time(trade, "time"), json_number(trade, "price"), json_number(trade, "size"), side)
    return json_field(trade, "product_id", str), int(trade_id), row
