"""Run tables read a batch of rows at a time, so the report's memory does not grow with the run.

A 10M-event run's decisions.parquet holds ~1 GB of columns; the report needs only sums,
maxima, per-window quantiles and ~6,000 display points of it. Each figure is therefore
computed by folding consecutive batches (Parquet row groups) into a fixed-size state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

BATCH_ROWS: Final = 65_536
"""Rows per batch: a run's row group (recording.CHUNK_ROWS), half a MB per column."""


def column_batches(
    path: Path, columns: Sequence[str], batch_rows: int | None = None
) -> Iterator[dict[str, npt.NDArray[Any]]]:
    """Consecutive batches of `columns` of a Parquet file as numpy arrays (nulls: NaN);
    `batch_rows` defaults to BATCH_ROWS as it is when called (tests make it tiny)."""
    size = BATCH_ROWS if batch_rows is None else batch_rows
    # pre_buffer would fetch every row group's column chunks up front (~compressed file size)
    file = pq.ParquetFile(path, pre_buffer=False)
    for batch in file.iter_batches(batch_size=size, columns=list(columns)):
        yield {
            name: np.asarray(batch.column(name).to_numpy(zero_copy_only=False)) for name in columns
        }


def row_count(path: Path) -> int:
    """Rows of a Parquet file, from its footer."""
    return int(pq.ParquetFile(path).metadata.num_rows)
