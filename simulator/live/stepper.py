"""Consumed events one at a time: the lean live path (no table, no batch, no merge per event).

Each event a normaliser emits goes on at once (one frame -> its events, no batching delay):
1. through the per-event twin of the replay sources' contract checks: a row those checks
   would drop is dropped here and counted, so the replay of the recording never meets it;
2. into preallocated one-row columns that the engine walks (`LiveEngine.step_one`);
3. onto the recording's row queues (`RowSpool`): a background thread builds the tables,
   runs the batch contract checks over them off the path (a row they reject that the
   per-event checks passed fails the session: live and replay would differ) and appends
   them to the session's rotating parts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from operator import gt, lt
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa

from simulator.engine_live import LiveEngine
from simulator.errors import InvariantViolation
from simulator.live.consumed import schemas
from simulator.live.parts import Checkpoint, SessionParts
from simulator.recording import RunTables, fills_table, orders_table
from simulator.sources.recorded import EventBatch
from simulator.sources.schema import RowChecker
from simulator.types import book_columns

DECISIONS_SCHEMA: Final = pa.schema([("event_index", pa.int64()), ("ts_decision", pa.int64())])
CHECKED_KINDS: Final = ("quotes", "trades", "book")  # timer and status rows carry no values
_INF: Final = math.inf
_NAN: Final = math.nan
Row = tuple[Any, ...]
_T = TypeVar("_T")


def top_ok(bid: float, bid_sz: float, ask: float, ask_sz: float) -> bool:
    """Level 0 of a quote or a book passes `schema`'s checks: prices and sizes positive and
    finite (NaN fails every comparison), neither crossed nor locked."""
    return (
        0 < bid < _INF and 0 < ask < _INF and 0 < bid_sz < _INF and 0 < ask_sz < _INF and bid < ask
    )


def book_ok(values: Sequence[float], levels: int) -> bool:
    """A book row's levels (bid_px, bid_sz, ask_px, ask_sz per level) pass `schema`'s checks:
    the top as `top_ok`; a deeper side empty (price and size NaN) or positive and finite;
    bids strictly falling and asks strictly rising level by level (a NaN level passes).

    First a sufficient test in C-level builtins for the usual full book (a few µs less per
    book on the path); whatever it does not pass, the level-by-level rules decide: the sizes'
    sum is finite only without NaN and inf, so `min` sees numbers; prices strictly monotone
    (a NaN compares false) from a positive lowest bid to a finite highest ask, bid < ask."""
    n = 4 * levels
    bids, asks, sizes = values[0:n:4], values[2:n:4], values[1:n:2]
    if (
        sum(sizes) < _INF
        and min(sizes) > 0
        and bids[-1] > 0
        and asks[-1] < _INF
        and bids[0] < asks[0]
        and all(map(gt, bids, bids[1:]))
        and all(map(lt, asks, asks[1:]))
    ):
        return True
    return _book_ok_by_level(values, levels)


def _book_ok_by_level(values: Sequence[float], levels: int) -> bool:
    bid, bid_sz, ask, ask_sz = values[0], values[1], values[2], values[3]
    if not top_ok(bid, bid_sz, ask, ask_sz):
        return False
    for j in range(4, 4 * levels, 4):
        b, bs, a, az = values[j], values[j + 1], values[j + 2], values[j + 3]
        if not (0 < b < _INF and 0 < bs < _INF) and not (b != b and bs != bs):
            return False
        if not (0 < a < _INF and 0 < az < _INF) and not (a != a and az != az):
            return False
        if b >= bid or a <= ask:
            return False
        bid, ask = b, a
    return True


def _depths(values: Sequence[float], levels: int) -> tuple[float, float]:
    """The bid and ask sizes of a book row's first `levels` levels, summed level by level
    with NaN as 0: what BookColumns.from_batch sums."""
    bid = ask = 0.0
    for j in range(0, 4 * levels, 4):
        b, a = values[j + 1], values[j + 3]
        bid = bid + (b if b == b else 0.0)
        ask = ask + (a if a == a else 0.0)
    return bid, ask


def trade_ok(px: float, sz: float, side: int) -> bool:
    return 0 < px < _INF and 0 < sz < _INF and side in (-1, 0, 1)


class RowSpool:
    """Rows and run outputs waiting for the recording. The consumer appends (a deque append
    is atomic); `flush` (the flusher thread, and the caller at the end) builds the tables,
    cross-checks the consumed ones with the batch contract checks and appends them to the
    parts. A cross-check failure is kept and raised by `raise_if_failed`."""

    def __init__(self, parts: SessionParts, levels: int, where: str) -> None:
        self._parts = parts
        self._schemas = schemas(levels)
        self.queues: dict[str, deque[Row]] = {kind: deque() for kind in self._schemas}
        self.outputs: deque[tuple[str, Any]] = deque()
        # the consumer's latest point (Checkpoint's fields), replaced whole after each run of
        # frames: one tuple store, atomic, and no object per frame on the path
        self.mark: tuple[int, int, int, int, int] | None = None
        self._checkers = {
            kind: RowChecker(kind, f"{where} {kind}", levels if kind == "book" else 0)
            for kind in CHECKED_KINDS
        }
        self.error: InvariantViolation | None = None

    def take_mark(self) -> Checkpoint | None:
        """The consumer's latest mark. Taken before `flush`, it is a point that flush covers:
        the consumer queues an event's rows and outputs before the mark that counts it."""
        if (mark := self.mark) is None:
            return None
        seq, frame_seq, events, orders, fills = mark
        return Checkpoint(seq=seq, frame_seq=frame_seq, events=events, orders=orders, fills=fills)

    def flush(self) -> None:
        for kind, queue in self.queues.items():
            rows = [queue.popleft() for _ in range(len(queue))]
            if rows:
                table = self._table(kind, rows)
                self._cross_check(kind, table)
                self._parts.append(kind, table)
        for _ in range(len(self.outputs)):
            kind, payload = self.outputs.popleft()
            self._parts.append(kind, _output_table(kind, payload))

    def _table(self, kind: str, rows: list[Row]) -> pa.Table:
        schema = self._schemas[kind]
        columns = zip(*rows, strict=True)
        return pa.table(
            [pa.array(c, t) for c, t in zip(columns, schema.types, strict=True)], schema=schema
        )

    def _cross_check(self, kind: str, table: pa.Table) -> None:
        checker = self._checkers.get(kind)
        if checker is None or self.error is not None:
            return
        bad = checker.check(table)
        if bad.any():
            problem = checker.report.examples[-1] if checker.report.examples else None
            self.error = InvariantViolation(
                f"live {kind}: a row passed the per-event contract checks that the batch "
                f"checks reject ({problem.message if problem else 'see the data check'}); "
                "the recording would not replay as live ran"
            )

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


def _output_table(kind: str, payload: Any) -> pa.Table:  # noqa: ANN401 - by kind, below
    if kind == "decisions":
        index, ts = zip(*payload, strict=True)
        return pa.table(
            {"event_index": pa.array(index, pa.int64()), "ts_decision": pa.array(ts, pa.int64())},
            schema=DECISIONS_SCHEMA,
        )
    if kind == "order_requests":
        orders, order_p = payload
        return orders_table(RunTables(orders=orders, order_p=order_p))
    return fills_table(payload)


def _unspilled(start: int, rows: _T) -> _T:
    """`rows`, unless some were spilled before the recording took them (a bug: live spills
    only after record_outputs)."""
    if start < 0:
        raise InvariantViolation(f"{-start} orders or fills spilled before they were recorded")
    return rows


def _columns(names: Sequence[str], dtype: type[np.generic]) -> tuple[Any, dict[str, memoryview]]:
    """One preallocated row: an array of len(names) and a one-element view per name."""
    values = np.zeros(max(len(names), 1), dtype=dtype)
    return values, {name: values[i : i + 1].data for i, name in enumerate(names)}


def _batch(kind: str, columns: dict[str, memoryview], schema: pa.Schema) -> EventBatch:
    ts = np.asarray(columns["ts_recv"], dtype=np.int64)
    record = pa.RecordBatch.from_pylist([], schema=schema)  # the engine walks `columns`
    return EventBatch(source=0, kind=kind, first_row=0, record=record, columns=columns,
                      ts_recv=ts, seq=ts)  # fmt: skip


class EventStepper:
    """The per-event consumer of one symbol: checks, engine, recording (see module doc).

    `quote`, `trade`, `book`, `tick` and `status` take the row tuples `Consumed` builds
    (the recorded tables' columns, in schema order)."""

    def __init__(
        self,
        engine: LiveEngine,
        tables: RunTables,
        levels: int,
        spool: RowSpool,
        feed_latency: deque[int],
        *,
        feature_levels: Callable[[Any], int] = lambda bundle: len(bundle.bid_sz),
    ) -> None:
        self._engine, self._step, self._spool = engine, engine.step_one, spool
        self._tables = tables
        self._orders_recorded = self._fills_recorded = 0
        self._levels = levels
        self._latency = feed_latency
        self.dropped: dict[str, int] = dict.fromkeys(CHECKED_KINDS, 0)
        self._max_ts = dict.fromkeys(CHECKED_KINDS, -1)
        sch = schemas(levels)
        ints, self._ints = {}, {}
        for kind, names in (
            ("quotes", ("ts_recv", "ts_event", "update_id", "seq")),
            ("trades", ("ts_recv", "ts_event", "side", "trade_id", "seq")),
            ("book", ("ts_recv", "ts_event", "update_id", "seq")),
            ("timer", ("ts_recv", "ts_event", "seq")),
            ("status", ("ts_recv", "ts_event", "seq", "code")),
        ):
            self._ints[kind], ints[kind] = _columns(names, np.int64)
        self._quote_px, quote_px = _columns(("bid_px", "bid_sz", "ask_px", "ask_sz"), np.float64)
        # the quote's row written value by value through memoryviews: no array from a tuple
        self._quote_values: Any = self._quote_px.data
        self._quote_ts: Any = self._ints["quotes"].data
        self._trade_px, trade_px = _columns(("px", "sz"), np.float64)
        # the book alternates between two rows: the venue matches an order in flight against
        # the book as it was before this event (engine step 2), which is the other row
        book_rows = [_columns(book_columns(levels), np.float64) for _ in range(2)]
        prepare = engine.prepare_one
        self._quote_part = prepare(_batch("quotes", {**ints["quotes"], **quote_px}, sch["quotes"]))
        self._trade_part = prepare(_batch("trades", {**ints["trades"], **trade_px}, sch["trades"]))
        self._timer_part = prepare(_batch("timer", ints["timer"], sch["timer"]))
        self._status_part = prepare(_batch("status", ints["status"], sch["status"]))
        self._books: list[tuple[Any, list[tuple[Any, ...]], Any, Any, int]] = []
        for values, views in book_rows:
            part = prepare(_batch("book", {**ints["book"], **views}, sch["book"]))
            bundle = part[0][7]  # the features' per-batch columns (BookColumns)
            self._books.append(
                (
                    values,
                    part,
                    np.asarray(bundle.bid_depth),
                    np.asarray(bundle.ask_depth),
                    feature_levels(bundle),
                )
            )
        self._flip = 0
        self._last_book: Sequence[float] | None = None  # the last book row's levels (dry_check)
        queues = spool.queues
        self._record_quote, self._record_trade = queues["quotes"].append, queues["trades"].append
        self._record_book, self._record_timer = queues["book"].append, queues["timer"].append
        self._record_status = queues["status"].append

    def quote(self, row: Row) -> None:
        ts, bid, bid_sz, ask, ask_sz = row[1], row[2], row[3], row[4], row[5]
        if ts < self._max_ts["quotes"] or not top_ok(bid, bid_sz, ask, ask_sz):
            self.dropped["quotes"] += 1
            return
        self._max_ts["quotes"] = ts
        values = self._quote_values
        values[0], values[1], values[2], values[3] = bid, bid_sz, ask, ask_sz
        self._quote_ts[0] = ts
        self._record_quote(row)
        self._step(self._quote_part)

    def trade(self, row: Row) -> None:
        ts, ts_event = row[1], row[0]
        if ts < self._max_ts["trades"] or not trade_ok(row[2], row[3], row[4]):
            self.dropped["trades"] += 1
            return
        self._max_ts["trades"] = ts
        px = self._trade_px
        px[0], px[1] = row[2], row[3]
        ints = self._ints["trades"]
        ints[0], ints[2] = ts, row[4]
        self._record_trade(row)
        if ts_event is not None:
            self._latency.append(ts - ts_event)
        self._step(self._trade_part)

    def book(self, row: Row) -> None:
        ts, ts_event, n = row[1], row[0], 4 * self._levels
        values = row[2 : 2 + n]
        if None in values:  # a side shorter than `levels`: recorded null, an empty level here
            values = tuple(_NAN if v is None else v for v in values)
        if ts < self._max_ts["book"] or not book_ok(values, self._levels):
            self.dropped["book"] += 1
            return
        self._max_ts["book"] = ts
        self._last_book = values
        self._flip = flip = 1 - self._flip
        book_px, part, bid_depth, ask_depth, levels = self._books[flip]
        book_px[:] = values
        self._ints["book"][0] = ts
        bid_depth[0], ask_depth[0] = _depths(values, levels)
        self._record_book(row)
        if ts_event is not None:
            self._latency.append(ts - ts_event)
        self._step(part)

    def tick(self, row: Row) -> None:
        self._ints["timer"][0] = row[1]
        self._record_timer(row)
        self._step(self._timer_part)

    def status(self, row: Row) -> None:
        ints = self._ints["status"]
        ints[0], ints[3] = row[1], row[3]
        self._record_status(row)
        self._step(self._status_part)

    def dry_check(self) -> None:
        """What `book` does for the last book row, again, result unused (the live keep-warm
        pass, `SymbolRun.dry_pass`): its contract checks, and its values and depth sums
        written into the row the engine read them from (the same values into the same row:
        nothing changes). No event is stepped, recorded or counted."""
        values = self._last_book
        if values is None or not book_ok(values, self._levels):
            return
        book_px, _, bid_depth, ask_depth, levels = self._books[self._flip]
        book_px[:] = values
        bid_depth[0], ask_depth[0] = _depths(values, levels)

    @property
    def dry_part(self) -> list[tuple[Any, ...]] | None:
        """The engine's columns of the last book row (else quote) stepped, for the keep-warm
        pass to walk again (`LiveEngine.dry_step`); None before any."""
        if self._last_book is not None:
            return self._books[self._flip][1]
        return self._quote_part if self._max_ts["quotes"] >= 0 else None

    def record_outputs(self) -> None:
        """Hand the decisions, orders and fills made since the last call to the spool."""
        engine, tables, outputs = self._engine, self._tables, self._spool.outputs
        if engine.decisions:
            outputs.append(("decisions", engine.decisions))
            engine.decisions = []
        n_orders, n_fills = tables.n_orders, tables.n_fills
        if n_orders > self._orders_recorded:  # the lists hold the rows since the last spill
            start = self._orders_recorded - tables.spilled["orders"]
            requests = (tables.orders[start:], tables.order_p[start:])
            outputs.append(("order_requests", _unspilled(start, requests)))
            self._orders_recorded = n_orders
        if n_fills > self._fills_recorded:
            start = self._fills_recorded - tables.spilled["fills"]
            outputs.append(("fills", _unspilled(start, tables.fills[start:])))
            self._fills_recorded = n_fills


__all__ = ["DECISIONS_SCHEMA", "EventStepper", "RowSpool", "book_ok", "top_ok", "trade_ok"]
