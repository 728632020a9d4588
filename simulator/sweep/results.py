"""`results.parquet`: one row per cell, in cell order, queryable with DuckDB.

Columns: session; one per grid key, named exactly as the key (`policy.threshold`: quote it
in SQL) and typed as the setting; latency_scale; the manifest summary's figures;
tick-to-trade p50/p99 (µs); digest; status (`ok`, `failed: <error>` or `not run`); wall
seconds of the cell; the cell's directory under cells/ and its content key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.sweep.cell import LATENCY_FIELDS, SUMMARY_FIELDS, Row
from simulator.sweep.grid import GridAxis

RESULTS_FILE: Final = "results.parquet"
INTEGER_FIELDS: Final = frozenset({"n_events", "n_orders", "n_fills", "n_rejections"})
TAIL: Final = (("digest", pa.string()), ("status", pa.string()), ("wall_s", pa.float64()),
               ("cell", pa.string()), ("key", pa.string()))  # fmt: skip


def results_schema(axes: Sequence[GridAxis], rows: Sequence[Row]) -> pa.Schema:
    fields = [pa.field("session", pa.string())]
    # grid columns typed as the setting: their values come from the effective config
    fields += [pa.field(a.key, pa.array([row.get(a.key) for row in rows]).type) for a in axes]
    fields.append(pa.field("latency_scale", pa.float64()))
    fields += [
        pa.field(name, pa.int64() if name in INTEGER_FIELDS else pa.float64())
        for name in SUMMARY_FIELDS
    ]
    fields += [pa.field(name, pa.float64()) for name in LATENCY_FIELDS]
    fields += [pa.field(name, kind) for name, kind in TAIL]
    return pa.schema(fields)


def results_table(rows: Sequence[Row], axes: Sequence[GridAxis]) -> pa.Table:
    schema = results_schema(axes, rows)
    return pa.table(
        {f.name: pa.array([row.get(f.name) for row in rows], f.type) for f in schema},
        schema=schema,
    )


def write_results(out_dir: Path, chunks: Iterable[Sequence[Row]], axes: Sequence[GridAxis]) -> Path:
    """Write results.parquet, a chunk of rows at a time, atomically (a reader never sees
    half a file)."""
    path = out_dir / RESULTS_FILE
    partial = path.with_suffix(".parquet.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for rows in chunks:
            table = results_table(rows, axes)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no cells at all
        pq.write_table(results_table([], axes), partial)
    partial.replace(path)
    return path
