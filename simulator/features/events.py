"""One flat event table per session: the merged stream as the feature stage sees it.

`event_table` lays merged batches out row by row in merge order, vectorised per batch (one
take per source part, never a Python step per event). Columns:

    kind      Int8     0 quote, 1 trade, 2 book
    ts_recv   Int64
    bid_px, bid_sz, ask_px, ask_sz   Float64  the quote, or a book's level 0; null on trades
    px, sz    Float64  trades only (null elsewhere)
    side      Int8     trades only: +1 buyer-initiated, -1 seller, 0 unknown
    bid_px_i, bid_sz_i, ask_px_i, ask_sz_i   Float64, i < levels: book rows only; an empty
                       level (or one the book does not have) is null

Null marks "does not apply"; it is NaN once taken to numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import polars as pl

from simulator.errors import DataError
from simulator.session import SessionRef
from simulator.sources.merge import MergedBatch, merge
from simulator.sources.recorded import EventBatch, open_parquet
from simulator.types import QUOTE_COLUMNS, TRADE_COLUMNS, book_columns, book_levels

QUOTE: Final = 0
TRADE: Final = 1
BOOK: Final = 2
KIND_CODES: Final = {"quotes": QUOTE, "trades": TRADE, "book": BOOK}
FLOAT_COLUMNS: Final = (*QUOTE_COLUMNS, "px", "sz")


def _schema(levels: int) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"kind": pl.Int8(), "ts_recv": pl.Int64()}
    schema.update({name: pl.Float64() for name in FLOAT_COLUMNS})
    schema["side"] = pl.Int8()
    schema.update({name: pl.Float64() for name in book_columns(levels)})
    return schema


def _column_map(part: EventBatch, levels: int) -> dict[str, str]:
    """Output column -> this part's column."""
    if part.kind == "trades":
        return {name: name for name in TRADE_COLUMNS}
    if part.kind == "quotes":
        return {name: name for name in QUOTE_COLUMNS}
    present = min(levels, book_levels(tuple(part.columns)))
    mapping = {name: f"{name}_0" for name in QUOTE_COLUMNS}
    mapping.update({name: name for name in book_columns(present)})
    return mapping


def _flatten(merged: MergedBatch, levels: int) -> pl.DataFrame:
    n = len(merged)
    part_of = np.asarray(merged.order_part, dtype=np.int64)
    row_of = np.asarray(merged.order_row, dtype=np.int64)
    kind = np.empty(n, dtype=np.int8)
    ts = np.empty(n, dtype=np.int64)
    side = np.zeros(n, dtype=np.int8)
    floats = {name: np.full(n, np.nan) for name in (*FLOAT_COLUMNS, *book_columns(levels))}
    for k, part in enumerate(merged.parts):
        at = np.flatnonzero(part_of == k)
        rows = row_of[at]
        kind[at] = KIND_CODES[part.kind]
        ts[at] = part.ts_recv[rows]
        for out, name in _column_map(part, levels).items():
            values = np.asarray(part.columns[name])[rows]
            if out == "side":
                side[at] = values
            else:
                floats[out][at] = values
    columns: list[pl.Series] = [pl.Series("kind", kind), pl.Series("ts_recv", ts)]
    columns += [pl.Series(name, floats[name], nan_to_null=True) for name in FLOAT_COLUMNS]
    columns.append(pl.Series("side", side))
    columns += [pl.Series(name, floats[name], nan_to_null=True) for name in book_columns(levels)]
    frame = pl.DataFrame(columns)
    return frame.with_columns(
        pl.when(pl.col("kind") == TRADE).then(pl.col("side")).otherwise(None).alias("side")
    )


def event_table(merged: Iterable[MergedBatch], levels: int) -> pl.DataFrame:
    """Flatten merged batches (in merge order) into one frame; see the module docstring."""
    if levels < 0:
        raise DataError(f"levels must be >= 0; found {levels}")
    frames = [_flatten(m, levels) for m in merged if len(m)]
    if not frames:
        return pl.DataFrame(schema=_schema(levels))
    return pl.concat(frames, how="vertical")


def session_events(
    session: SessionRef,
    kinds: Sequence[str] = ("book", "trades"),
    levels: int | None = None,
    *,
    limit: int | None = None,
) -> pl.DataFrame:
    """The event table of a recorded session, merged from `kinds` (their order is the merge
    priority at equal ts_recv). `levels` None takes every level of the session's book (0
    without one); `limit` keeps the first events only and stops reading once it has them."""
    if levels is None:
        levels = 0
        if "book" in kinds and "book" in session.files:
            levels = book_levels(open_parquet(session.files["book"]).schema_arrow.names)
    sources = [session.source(kind, priority=i) for i, kind in enumerate(kinds)]
    frames: list[pl.DataFrame] = []
    rows = 0
    for merged in merge(sources):
        frames.append(event_table([merged], levels))
        rows += len(merged)
        if limit is not None and rows >= limit:
            break
    table = pl.concat(frames) if frames else event_table([], levels)
    return table if limit is None else table.head(limit)


__all__ = ["BOOK", "KIND_CODES", "QUOTE", "TRADE", "event_table", "session_events"]
