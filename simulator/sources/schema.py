"""The data contract of recorded sessions, checked vectorised at the boundary.

`conform` checks a table's columns and dtypes once and brings it to the canonical form
(int64 ns times, float64 prices and sizes, int8 side). `RowChecker` then checks rows batch
by batch, carrying the last row across batches so a streamed file is checked exactly like a
whole one: ts_recv never decreases, no row repeats the one before it, prices and sizes are
finite and positive, books are neither crossed nor locked, book levels are ordered and trade
sides are -1/0/+1. Problems carry 0-based row numbers within the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import DataError
from simulator.types import (
    KINDS,
    ORDER_COLUMNS,
    ORDER_EVENTS,
    QUOTE_COLUMNS,
    book_columns,
    book_levels,
)

MAX_EXAMPLES_PER_PROBLEM: Final = 5

PROBLEM_TEXT: Final = {
    "null_time": "ts_recv is null",
    "unsorted": "ts_recv went backwards",
    "duplicate": "duplicate of the previous row",
    "bad_price": "price is NaN, zero or negative",
    "bad_size": "size is NaN, zero or negative",
    "crossed": "crossed book (bid above ask)",
    "locked": "locked book (bid equals ask)",
    "level_order": "book levels out of order",
    "bad_side": "trade side not -1, 0 or +1",
    "bad_order_side": "order side not -1 or +1",
    "bad_event": "order event type not 1 to 5",
}

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Problem:
    row: int
    code: str
    message: str


@dataclass(slots=True)
class CheckReport:
    """What checking (and optionally repairing) one file found; nothing is left uncounted."""

    where: str
    kind: str
    rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[Problem] = field(default_factory=list)
    repaired: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.counts

    def summary(self) -> str:
        return ", ".join(f"{n:,} {code}" for code, n in sorted(self.counts.items()))

    def raise_if_bad(self) -> None:
        if self.ok:
            return
        first = min(self.examples, key=lambda p: p.row)
        total = sum(self.counts.values())
        raise DataError(
            f"{self.where} row {first.row}: {first.message} "
            f"({total:,} problem row(s) in all: {self.summary()}; "
            "`ticktape data check` lists them, `--repair drop|sort` repairs them)"
        )


def _is_integer(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _conform_time(table: pa.Table, name: str, where: str) -> pa.Array | pa.ChunkedArray:
    column = table.column(name)
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.unit != "ns":
            column = pc.cast(column, pa.timestamp("ns", kind.tz))
        return pc.cast(column, pa.int64())
    if not _is_integer(kind):
        raise DataError(
            f"{where}: column '{name}' has dtype {kind}; expected int64 nanoseconds since the "
            "Unix epoch (or timestamp[ns])"
        )
    return column if kind == pa.int64() else pc.cast(column, pa.int64())


def required_columns(kind: str, levels: int) -> tuple[str, ...]:
    if kind == "quotes":
        return QUOTE_COLUMNS
    if kind == "trades":
        return ("px", "sz", "side")
    if kind == "orders":
        return ORDER_COLUMNS
    return book_columns(levels)


def conform(table: pa.Table, kind: str, where: str) -> pa.Table:
    """Check columns and dtypes; return the table in canonical dtypes (extra columns kept).

    A single `ts_ns` column stands for both `ts_event` and `ts_recv`; a missing `ts_event`
    with a present `ts_recv` is allowed and stays null (the venue sent no time).
    """
    if kind not in KINDS:
        raise DataError(f"{where}: unknown data kind '{kind}'; expected one of {list(KINDS)}")
    names = table.column_names
    if "ts_recv" not in names and "ts_ns" in names:
        ts = _conform_time(table, "ts_ns", where)
        table = table.append_column("ts_recv", ts)
        if "ts_event" not in names:
            table = table.append_column("ts_event", ts)
    if "ts_recv" not in table.column_names:
        raise DataError(
            f"{where}: missing column 'ts_recv' (also accepted: a single 'ts_ns' column); "
            f"columns found: {names}"
        )
    if "ts_event" not in table.column_names:
        table = table.append_column("ts_event", pa.nulls(table.num_rows, pa.int64()))
    levels = book_levels(table.column_names) if kind == "book" else 0
    if kind == "book" and levels == 0:
        raise DataError(
            f"{where}: a book needs bid_px_0, bid_sz_0, ask_px_0, ask_sz_0 (and so on per level); "
            f"columns found: {names}"
        )
    present = set(table.column_names)  # a set: column_names builds a new list per access
    missing = [c for c in required_columns(kind, levels) if c not in present]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} for {kind}; columns found: {names}")
    return _cast_columns(table, kind, levels, where)


def _cast_columns(table: pa.Table, kind: str, levels: int, where: str) -> pa.Table:
    casts: dict[str, pa.Array | pa.ChunkedArray] = {
        "ts_recv": _conform_time(table, "ts_recv", where),
        "ts_event": _conform_time(table, "ts_event", where),
    }
    if kind in ("trades", "orders"):
        value_columns: tuple[str, ...] = ("px", "sz")
    else:
        value_columns = required_columns(kind, levels)
    for name in value_columns:
        dtype = table.column(name).type
        if not _is_numeric(dtype):
            raise DataError(f"{where}: column '{name}' has dtype {dtype}; expected float64")
        casts[name] = (
            table.column(name)
            if dtype == pa.float64()
            else pc.cast(table.column(name), pa.float64())
        )
    integers = {"trades": ("side",), "orders": ("side", "event_type", "order_id")}
    for name in integers.get(kind, ()):
        dtype, wanted = table.column(name).type, pa.int64() if name == "order_id" else pa.int8()
        if not _is_integer(dtype):
            raise DataError(f"{where}: column '{name}' has dtype {dtype}; expected {wanted}")
        casts[name] = table.column(name) if dtype == wanted else pc.cast(table.column(name), wanted)
    for name, values in casts.items():
        if values.type != table.schema.field(name).type:  # canonical columns are left as they are
            table = table.set_column(table.column_names.index(name), name, values)
    return table


def _floats(table: pa.Table | pa.RecordBatch, name: str) -> FloatArray:
    """A float column as numpy, nulls as NaN (zero-copy when there are none)."""
    column = table.column(name)
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    return np.asarray(column.to_numpy(), dtype=np.float64)


def _ints(table: pa.Table | pa.RecordBatch, name: str) -> npt.NDArray[np.int64]:
    """An integer column as int64 numpy, nulls as 0 (zero-copy when there are none)."""
    column = table.column(name)
    if column.null_count:
        column = pc.fill_null(column, 0)
    return np.asarray(column.to_numpy(), dtype=np.int64)


class RowChecker:
    """Row-level contract checks for one file, fed batch by batch in file order."""

    __slots__ = ("_levels", "_max_ts", "_prev_row", "kind", "report")

    def __init__(self, kind: str, where: str, levels: int = 0) -> None:
        self.kind = kind
        self._levels = levels
        self.report = CheckReport(where=where, kind=kind)
        self._max_ts: int | None = None
        self._prev_row: dict[str, object] | None = None

    def check(self, batch: pa.Table | pa.RecordBatch) -> BoolArray:
        """Record the problems of `batch`; return a mask of its bad rows."""
        n = batch.num_rows
        offset = self.report.rows
        self.report.rows += n
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        masks = self._time_masks(batch)
        ordered = ~(masks["unsorted"] | masks["null_time"])
        masks["duplicate"] = self._duplicate_mask(batch, ordered)
        masks.update(self._value_masks(batch))
        bad = np.zeros(n, dtype=np.bool_)
        for code, mask in masks.items():
            hits = np.flatnonzero(mask)
            if hits.size == 0:
                continue
            bad |= mask
            self.report.counts[code] += int(hits.size)
            self._add_examples(batch, code, hits, offset)
        return bad

    def _time_masks(self, batch: pa.Table | pa.RecordBatch) -> dict[str, BoolArray]:
        column = batch.column("ts_recv")
        null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
        ts = _ints(batch, "ts_recv")
        previous_max = np.maximum.accumulate(ts)
        if self._max_ts is not None:
            previous_max = np.maximum(previous_max, self._max_ts)
        before = np.empty_like(ts)
        before[0] = ts[0] if self._max_ts is None else self._max_ts
        before[1:] = previous_max[:-1]
        self._max_ts = int(previous_max[-1])
        return {"null_time": null, "unsorted": (ts < before) & ~null}

    def _duplicate_mask(self, batch: pa.Table | pa.RecordBatch, ordered: BoolArray) -> BoolArray:
        """Rows equal in every column to the last in-order row before them.

        Comparing with the last *in-order* row (not simply the row before) means a late row
        between two copies, dropped by the drop repair, cannot hide the second copy.
        """
        n = batch.num_rows
        ts = _ints(batch, "ts_recv")
        before = np.arange(-1, n - 1, dtype=np.int64)
        same = np.zeros(n, dtype=np.bool_)
        if ordered.all():  # the usual case: compare neighbours with plain slices
            same[1:] = ts[1:] == ts[:-1]
        else:
            positions = np.where(ordered, np.arange(n), -1)
            before[1:] = np.maximum.accumulate(positions)[:-1]
            same[1:] = (ts[1:] == ts[before[1:]]) & (before[1:] >= 0)
        candidates = np.flatnonzero(same)
        prev = self._prev_row
        if prev is not None:  # rows with no in-order row before them in this batch
            for i in np.flatnonzero(before < 0):
                same[i] = {name: batch.column(name)[int(i)].as_py() for name in prev} == prev
        if ordered.any():
            last = int(np.flatnonzero(ordered)[-1])
            self._prev_row = {name: batch.column(name)[last].as_py() for name in batch.column_names}
        for name in batch.column_names if candidates.size else ():
            column = batch.column(name)
            values = column.to_numpy(zero_copy_only=False)
            equal = values[candidates] == values[before[candidates]]
            if column.null_count:  # two nulls are the same value here (NaN != NaN in numpy)
                null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
                equal |= null[candidates] & null[before[candidates]]
            same[candidates] &= equal
        return same

    def _value_masks(self, batch: pa.Table | pa.RecordBatch) -> dict[str, BoolArray]:
        if self.kind == "trades":
            side = np.asarray(pc.fill_null(batch.column("side"), 9).to_numpy(), dtype=np.int16)
            return {
                "bad_price": ~(_floats(batch, "px") > 0) | ~np.isfinite(_floats(batch, "px")),
                "bad_size": ~(_floats(batch, "sz") > 0) | ~np.isfinite(_floats(batch, "sz")),
                "bad_side": ~np.isin(side, (-1, 0, 1)),
            }
        if self.kind == "orders":
            return _order_masks(batch)
        suffixes = ("",) if self.kind == "quotes" else tuple(f"_{i}" for i in range(self._levels))
        return _book_masks(batch, suffixes)

    def _add_examples(
        self, batch: pa.Table | pa.RecordBatch, code: str, hits: npt.NDArray[np.intp], offset: int
    ) -> None:
        room = MAX_EXAMPLES_PER_PROBLEM - sum(1 for p in self.report.examples if p.code == code)
        for i in hits[: max(room, 0)]:
            row = {name: batch.column(name)[int(i)].as_py() for name in batch.column_names}
            text = f"{PROBLEM_TEXT[code]} ({_row_detail(code, row)})"
            self.report.examples.append(Problem(row=offset + int(i), code=code, message=text))


def _order_masks(batch: pa.Table | pa.RecordBatch) -> dict[str, BoolArray]:
    side = np.asarray(pc.fill_null(batch.column("side"), 9).to_numpy(), dtype=np.int16)
    event = np.asarray(pc.fill_null(batch.column("event_type"), 0).to_numpy(), dtype=np.int16)
    return {
        "bad_price": ~_positive(_floats(batch, "px")),
        "bad_size": ~_positive(_floats(batch, "sz")),
        "bad_order_side": ~np.isin(side, (-1, 1)),
        "bad_event": ~np.isin(event, ORDER_EVENTS),
    }


def _positive(values: FloatArray) -> BoolArray:
    return np.asarray(np.isfinite(values) & (values > 0), dtype=np.bool_)


def _book_masks(
    batch: pa.Table | pa.RecordBatch, suffixes: tuple[str, ...]
) -> dict[str, BoolArray]:
    n = batch.num_rows
    bad_price = np.zeros(n, dtype=np.bool_)
    bad_size = np.zeros(n, dtype=np.bool_)
    level_order = np.zeros(n, dtype=np.bool_)
    prev_bid = prev_ask = np.empty(0)
    for level, suffix in enumerate(suffixes):
        bid, ask = _floats(batch, f"bid_px{suffix}"), _floats(batch, f"ask_px{suffix}")
        bid_sz, ask_sz = _floats(batch, f"bid_sz{suffix}"), _floats(batch, f"ask_sz{suffix}")
        if level == 0:
            top = (bid, ask, bid_sz, ask_sz)
            bad_price |= ~_positive(bid) | ~_positive(ask)
            bad_size |= ~_positive(bid_sz) | ~_positive(ask_sz)
        else:  # deeper levels may be empty (price and size both null)
            for px, sz in ((bid, bid_sz), (ask, ask_sz)):
                empty = np.isnan(px) & np.isnan(sz)
                bad_price |= ~empty & ~_positive(px)
                bad_size |= ~empty & ~_positive(sz)
            level_order |= (bid >= prev_bid) | (ask <= prev_ask)
        prev_bid, prev_ask = bid, ask
    bid, ask = top[0], top[1]
    valid_top = _positive(bid) & _positive(ask)
    return {
        "bad_price": bad_price,
        "bad_size": bad_size,
        "crossed": valid_top & (bid > ask),
        "locked": valid_top & (bid == ask),
        "level_order": level_order,
    }


_DETAIL_COLUMNS: Final = {
    "null_time": ("ts_recv",),
    "unsorted": ("ts_recv",),
    "bad_side": ("side",),
    "bad_order_side": ("side",),
    "bad_event": ("event_type",),
}


def _row_detail(code: str, row: dict[str, object]) -> str:
    """The cells that explain a problem: the one column at fault, else the whole row but seq."""
    names = _DETAIL_COLUMNS.get(code) or [k for k in row if not k.startswith("seq")]
    return ", ".join(f"{k}={row[k]}" for k in names)


def check_table(table: pa.Table, kind: str, where: str) -> tuple[pa.Table, CheckReport]:
    """Conform and check a whole table; return the conformed table and the report."""
    if table.num_rows == 0:
        raise DataError(f"{where}: no rows (empty file)")
    table = conform(table, kind, where)
    levels = book_levels(table.column_names) if kind == "book" else 0
    checker = RowChecker(kind, where, levels)
    checker.check(table)
    return table, checker.report


def require_valid(table: pa.Table, kind: str, where: str) -> pa.Table:
    """Conform and check a table; raise DataError naming the first bad row."""
    table, report = check_table(table, kind, where)
    report.raise_if_bad()
    return table
