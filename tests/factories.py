"""Small tables built in code, for tests that need exact, hand-checkable data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0 = 1_700_000_000_000_000_000


def quotes(n: int = 10, *, start: int = T0, step: int = 1_000) -> pa.Table:
    """A valid L1 quote stream: bid 100.00 + i cents, ask one cent above, sizes 1..n."""
    i = np.arange(n)
    ts = start + i * step
    bid = 100.0 + i * 0.01
    return pa.table(
        {
            "ts_event": pa.array(ts, pa.int64()),
            "ts_recv": pa.array(ts, pa.int64()),
            "bid_px": bid,
            "bid_sz": (i + 1).astype(np.float64),
            "ask_px": bid + 0.01,
            "ask_sz": (i + 2).astype(np.float64),
        }
    )


def trades(n: int = 10, *, start: int = T0, step: int = 1_500) -> pa.Table:
    i = np.arange(n)
    return pa.table(
        {
            "ts_event": pa.array(start + i * step, pa.int64()),
            "ts_recv": pa.array(start + i * step, pa.int64()),
            "px": 100.0 + i * 0.01,
            "sz": np.ones(n),
            "side": pa.array(np.where(i % 2 == 0, 1, -1), pa.int8()),
        }
    )


def book(n: int = 10, levels: int = 3, *, start: int = T0) -> pa.Table:
    """A valid book: level k is k cents away from the touch on each side."""
    i = np.arange(n)
    columns: dict[str, object] = {
        "ts_event": pa.array(start + i * 1_000, pa.int64()),
        "ts_recv": pa.array(start + i * 1_000, pa.int64()),
    }
    for k in range(levels):
        columns[f"bid_px_{k}"] = 100.0 - k * 0.01 + i * 0.0
        columns[f"bid_sz_{k}"] = np.full(n, 5.0 + k)
        columns[f"ask_px_{k}"] = 100.01 + k * 0.01 + i * 0.0
        columns[f"ask_sz_{k}"] = np.full(n, 6.0 + k)
    return pa.table(columns)


def with_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    """A copy of `table` with one cell replaced."""
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))


def write(table: pa.Table, path: Path, **kwargs: object) -> Path:
    pq.write_table(table, path, **kwargs)
    return path
