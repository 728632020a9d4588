"""Plain values shared by every layer: time units, data kinds and their column contracts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NewType

from simulator.errors import DataError

Nanos = NewType("Nanos", int)
"""Nanoseconds since the Unix epoch, UTC."""

NS_PER_SECOND: Final = 1_000_000_000

KINDS: Final = ("quotes", "trades", "book", "orders")
"""Market-data kinds a session may hold, one Parquet file each (`orders`: order-level events,
e.g. LOBSTER's message file, for the exact L3 queue model)."""

TIME_COLUMNS: Final = ("ts_event", "ts_recv")
QUOTE_COLUMNS: Final = ("bid_px", "bid_sz", "ask_px", "ask_sz")
TRADE_COLUMNS: Final = ("px", "sz", "side")
ORDER_COLUMNS: Final = ("order_id", "event_type", "side", "px", "sz")
"""Order events: the venue's order id, the event (LOBSTER numbering: 1 new, 2 partial cancel,
3 delete, 4 visible execution, 5 hidden execution), the side of the *resting* order (+1 buy,
-1 sell), its price and the size the event concerns."""
ORDER_EVENTS: Final = (1, 2, 3, 4, 5)
QUEUE_MODELS: Final = ("none", "risk_averse", "prob_power", "prob_log", "l3_fifo")
"""`venue.queue`: how a resting limit order's place at its price is known (execution/queue.py)."""
OPTIONAL_INT_COLUMNS: Final = ("seq", "update_id", "trade_id")
"""Optional int64 columns: `seq` is the row's position in the original recording (the
tie-breaker of the merge order), `update_id`/`trade_id` are the venue's own ids."""


def book_columns(levels: int) -> tuple[str, ...]:
    """Price and size columns of an N-level book, level 0 being the best."""
    return tuple(f"{name}_{i}" for i in range(levels) for name in QUOTE_COLUMNS)


def book_levels(column_names: list[str] | tuple[str, ...]) -> int:
    """Number of complete levels named in a book table's columns (0 when none)."""
    present = set(column_names)
    levels = 0
    while all(f"{name}_{levels}" in present for name in QUOTE_COLUMNS):
        levels += 1
    return levels


SESSION_DATE_PATTERN: Final = r"\d{4}-\d{2}-\d{2}(?:T\d{6})?"
"""The date part of a session name: `YYYY-MM-DD`, or `YYYY-MM-DDTHHMMSS` (UTC start) for a live
session, so that several live sessions of one day can coexist."""


@dataclass(frozen=True, slots=True, order=True)
class SessionKey:
    """A recorded session: one venue, one symbol, one (UTC start) date."""

    venue: str
    symbol: str
    date: str  # YYYY-MM-DD, or YYYY-MM-DDTHHMMSS for a live session

    _PATTERN = re.compile(rf"^([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/({SESSION_DATE_PATTERN})$")

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        match = cls._PATTERN.match(text.strip().strip("/"))
        if match is None:
            raise DataError(
                f"'{text}' is not a session name; expected venue/symbol/date, "
                "e.g. nasdaq/GOOG/2012-06-21 or, for a live session, "
                "binance/BTCUSDT/2026-11-21T153005 (see `ticktape data ls`)"
            )
        return cls(match.group(1), match.group(2), match.group(3))

    def __str__(self) -> str:
        return f"{self.venue}/{self.symbol}/{self.date}"


class Side(IntEnum):
    BUY = 1
    SELL = -1


class OrderType(IntEnum):
    MARKET = 0
    LIMIT = 1


class StatusCode(IntEnum):
    """Live feed status events: recorded, replayed, and seen by the risk stage (feed health)."""

    CONNECTED = 1
    DISCONNECTED = 2  # feed down until CONNECTED
    GAP = 3  # a sequence or update-id hole: data was lost
    BOOK_RESET = 4  # the local book is invalid until BOOK_SYNCED
    BOOK_SYNCED = 5
    STALE_SNAPSHOT = 6  # a REST snapshot older than the buffered diffs (asked again)
    SNAPSHOT_FAILED = 7  # the REST snapshot could not be fetched


class RejectReason(IntEnum):
    """Why a risk check refused an order (0 = approved). Stored as int8 in run tables."""

    APPROVED = 0
    MAX_ORDER_SIZE = 1
    MAX_POSITION = 2
    MAX_NOTIONAL = 3
    PRICE_COLLAR = 4
    ORDER_RATE = 5
    STALE_DATA = 6
    KILL_SWITCH = 7
    MODEL_HEALTH = 8
    FEED_DOWN = 9  # live: the feed is disconnected or the local book is resyncing
    MIN_NOTIONAL = 10  # qty x price under the instrument's minimum notional
    BAD_PRICE = 11  # a limit price that is not a finite number > 0 (the engine's own check)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """An order the pipeline decided to send (one per trade decision, not per event)."""

    order_id: int
    ts_decision: Nanos  # when the pipeline decided (receive time of the triggering event)
    side: Side
    qty: float
    order_type: OrderType = OrderType.MARKET
    limit_px: float | None = None
    post_only: bool = False  # a limit order the venue rejects if it would take on arrival


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest:
    """A cancel (or, with `new_px`/`new_qty`, a cancel-replace) of an open order, sent like an
    order: it reaches the venue after the order latency, and may arrive too late."""

    order_id: int  # the order to cancel or replace
    ts_decision: Nanos
    new_px: float | None = None  # replace: the new limit price
    new_qty: float | None = None  # replace: the new open quantity

    @property
    def is_replace(self) -> bool:
        return self.new_px is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    order_id: int
    side: Side
    px: float
    qty: float
    fee: float
    liquidity: str  # "taker" or "maker"
    ts_event: Nanos  # venue time of the match
    ts_recv: Nanos  # when the fill report reaches the pipeline
