"""Generated sessions for benchmarks: valid data of any length, written in bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SYNTHETIC_CHUNK: Final = 1_000_000


def write_synthetic_quotes(path: Path, n: int, seed: int = 0) -> Path:
    """A valid L1 quote session of `n` rows (random walk mid, one-tick spreads), chunked."""
    rng = np.random.default_rng(seed)
    names = ("ts_event", "ts_recv", "bid_px", "bid_sz", "ask_px", "ask_sz")
    types = (pa.int64(), pa.int64(), pa.float64(), pa.float64(), pa.float64(), pa.float64())
    schema = pa.schema(list(zip(names, types, strict=True)))
    ts, mid = 1_700_000_000_000_000_000, 100.0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, n, SYNTHETIC_CHUNK):
            m = min(SYNTHETIC_CHUNK, n - start)
            times = ts + np.cumsum(rng.integers(1, 2_000_000, m))
            mids = mid + np.cumsum(rng.integers(-1, 2, m)) * 0.005
            half = rng.integers(1, 4, m) * 0.005
            bid_sz = rng.integers(1, 500, m).astype(np.float64)
            ask_sz = rng.integers(1, 500, m).astype(np.float64)
            columns = [times, times, mids - half, bid_sz, mids + half, ask_sz]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=65_536)
            ts, mid = int(times[-1]), float(mids[-1])
    return path
