"""Consumed events: what the pipeline actually ate, as row tuples and as tables.

A normaliser (live/venues) writes each event it emits into `Consumed`, which gives it the next
session-wide `seq` and hands the row at once to its sink (live.stepper.EventStepper: per-event
checks, the engine, the recording). Without a sink the rows are kept per kind for `tables()`,
and `Checked` runs them through the replay sources' batch contract checks and merges them by
`seq` (the normaliser tests and tools compare with replay that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import pyarrow as pa

from simulator.importers.book import L2Book
from simulator.sources.merge import MergedBatch, interleave
from simulator.sources.recorded import EventBatch, RowFilter
from simulator.sources.table import plain_batch
from simulator.types import StatusCode, book_columns

TIMER_SCHEMA: Final = pa.schema(
    [("ts_event", pa.int64()), ("ts_recv", pa.int64()), ("seq", pa.int64())]
)
STATUS_SCHEMA: Final = pa.schema(
    [
        ("ts_event", pa.int64()),
        ("ts_recv", pa.int64()),
        ("seq", pa.int64()),
        ("code", pa.int8()),
        ("reason", pa.string()),
    ]
)


def quotes_schema() -> pa.Schema:
    return pa.schema(
        [("ts_event", pa.int64()), ("ts_recv", pa.int64())]
        + [(name, pa.float64()) for name in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
        + [("update_id", pa.int64()), ("seq", pa.int64())]
    )


def trades_schema() -> pa.Schema:
    return pa.schema(
        [
            ("ts_event", pa.int64()),
            ("ts_recv", pa.int64()),
            ("px", pa.float64()),
            ("sz", pa.float64()),
            ("side", pa.int8()),
            ("trade_id", pa.int64()),
            ("seq", pa.int64()),
        ]
    )


def book_schema(levels: int) -> pa.Schema:
    return pa.schema(
        [("ts_event", pa.int64()), ("ts_recv", pa.int64())]
        + [(name, pa.float64()) for name in book_columns(levels)]
        + [("update_id", pa.int64()), ("seq", pa.int64())]
    )


def schemas(levels: int) -> dict[str, pa.Schema]:
    """Arrow schema of every consumed table (the recorder opens its parts with these)."""
    return {
        "quotes": quotes_schema(),
        "trades": trades_schema(),
        "book": book_schema(levels),
        "timer": TIMER_SCHEMA,
        "status": STATUS_SCHEMA,
    }


class EventSink(Protocol):
    """Takes each consumed event at once, as its row tuple (live.stepper.EventStepper)."""

    def quote(self, row: tuple[Any, ...]) -> None: ...
    def trade(self, row: tuple[Any, ...]) -> None: ...
    def book(self, row: tuple[Any, ...]) -> None: ...
    def tick(self, row: tuple[Any, ...]) -> None: ...
    def status(self, row: tuple[Any, ...]) -> None: ...


@dataclass(slots=True)
class Consumed:
    """The consumed events, each with the next session `seq`: handed to `sink` one by one
    as the normaliser emits them (live), else kept per kind for `tables()` (tests, tools)."""

    levels: int
    next_seq: int = 0
    sink: EventSink | None = None
    quotes: list[tuple[object, ...]] = field(default_factory=list)
    trades: list[tuple[object, ...]] = field(default_factory=list)
    book: list[tuple[object, ...]] = field(default_factory=list)
    timer: list[tuple[object, ...]] = field(default_factory=list)
    status: list[tuple[object, ...]] = field(default_factory=list)
    _schemas: dict[str, pa.Schema] = field(init=False)

    def __post_init__(self) -> None:
        self._schemas = schemas(self.levels)

    def _seq(self) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        return seq

    def quote(
        self,
        ts_recv: int,
        ts_event: int | None,
        bid: tuple[float, float],
        ask: tuple[float, float],
        update_id: int,
    ) -> None:
        row = (ts_event, ts_recv, *bid, *ask, update_id, self._seq())
        if self.sink is None:
            self.quotes.append(row)
        else:
            self.sink.quote(row)

    def trade(
        self, ts_recv: int, ts_event: int | None, px: float, sz: float, side: int, trade_id: int
    ) -> None:
        row = (ts_event, ts_recv, px, sz, side, trade_id, self._seq())
        if self.sink is None:
            self.trades.append(row)
        else:
            self.sink.trade(row)

    def book_row(self, ts_recv: int, ts_event: int | None, update_id: int, book: L2Book) -> None:
        row = (ts_event, ts_recv, *book.top_row(self.levels), update_id, self._seq())
        if self.sink is None:
            self.book.append(row)
        else:
            self.sink.book(row)

    def tick(self, ts_recv: int) -> None:
        row = (ts_recv, ts_recv, self._seq())
        if self.sink is None:
            self.timer.append(row)
        else:
            self.sink.tick(row)

    def status_event(self, ts_recv: int, code: StatusCode, reason: str) -> None:
        row = (ts_recv, ts_recv, self._seq(), int(code), reason)
        if self.sink is None:
            self.status.append(row)
        else:
            self.sink.status(row)

    def __len__(self) -> int:
        return (
            len(self.quotes)
            + len(self.trades)
            + len(self.book)
            + len(self.timer)
            + len(self.status)
        )

    def tables(self) -> dict[str, pa.Table]:
        """The non-empty kinds as tables of `schemas(levels)`, and clear the builder."""
        out: dict[str, pa.Table] = {}
        for kind in ("quotes", "trades", "book", "timer", "status"):
            rows: list[tuple[object, ...]] = getattr(self, kind)
            if rows:
                schema = self._schemas[kind]
                columns = list(zip(*rows, strict=True))
                out[kind] = pa.table(
                    [pa.array(c, t) for c, t in zip(columns, schema.types, strict=True)],
                    schema=schema,
                )
                rows.clear()
        return out


class Checked:
    """The consumed stream through the replay sources' contract checks, batch by batch.

    One `RowFilter` per kind lives for the whole session (the checks carry state: order,
    duplicates across batches). Rows that fail are dropped and counted, never consumed.
    """

    def __init__(self) -> None:
        self._filters: dict[str, RowFilter] = {}

    @property
    def dropped(self) -> dict[str, int]:
        return {kind: f.report.repaired.get("dropped", 0) for kind, f in self._filters.items()}

    def batches(
        self, tables: dict[str, pa.Table]
    ) -> tuple[dict[str, pa.Table], MergedBatch | None]:
        """(the tables that passed, as recorded; the engine's batch in seq order)."""
        passed: dict[str, pa.Table] = {}
        parts: list[EventBatch] = []
        for kind, table in tables.items():
            batch = self._check(kind, table)
            if batch is not None:
                passed[kind] = pa.Table.from_batches([batch.record])
                parts.append(batch)
        return passed, (interleave([[p] for p in parts]) if parts else None)

    def _check(self, kind: str, table: pa.Table) -> EventBatch | None:
        if kind in ("timer", "status"):
            return plain_batch(kind, table.combine_chunks().to_batches()[0])
        row_filter = self._filters.get(kind)
        if row_filter is None:
            row_filter = self._filters[kind] = RowFilter(kind, f"live {kind}", repair=("drop",))
        return row_filter.wrap(table.combine_chunks().to_batches()[0])
