"""Small recorded event tables read whole: the timer ticks and feed status events of a live
recording (`timer.parquet`, `status.parquet`), replayed at their recorded times."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import DataError
from simulator.sources.recorded import EventBatch, open_parquet


def plain_batch(kind: str, record: pa.RecordBatch, *, priority: int = 0) -> EventBatch:
    """A batch of int columns only (ts_recv, seq, and e.g. a status code)."""
    columns = {
        name: np.ascontiguousarray(record.column(name).to_numpy(), dtype=np.int64).data
        for name in record.column_names
        if pa.types.is_integer(record.schema.field(name).type)
    }
    for name in ("ts_recv", "seq"):
        if name not in columns:
            raise DataError(f"{kind} events need an integer '{name}' column")
    return EventBatch(
        source=priority,
        kind=kind,
        first_row=0,
        record=record,
        columns=columns,
        ts_recv=np.asarray(columns["ts_recv"], dtype=np.int64),
        seq=np.asarray(columns["seq"], dtype=np.int64),
    )


class TableSource:
    """One small Parquet table of `kind` (timer or status), as a single batch."""

    def __init__(self, path: Path, kind: str, *, priority: int = 0) -> None:
        self.path = path
        self.name = str(path)
        self.kind = kind
        self.priority = priority
        self._table = open_parquet(path).read()
        ts = self._table.column("ts_recv").to_numpy()
        if len(ts) > 1 and bool(np.any(ts[1:] < ts[:-1])):
            raise DataError(f"{path}: ts_recv goes backwards; recorded {kind} events are ordered")

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def batches(self) -> Iterator[EventBatch]:
        if self._table.num_rows:
            yield plain_batch(self.kind, self._table.combine_chunks().to_batches()[0],
                              priority=self.priority)  # fmt: skip
