"""Generated sessions for benchmarks: valid data of any length, written in bounded memory."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SYNTHETIC_CHUNK: Final = 1_000_000


def write_synthetic_quotes(path: Path, n: int, seed: int = 0) -> Path:
    """A valid L1 quote session of `n` rows (random-walk mid, 1-3 tick spreads), chunked."""
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
            # lognormal sizes (median 100, sigma 0.45 per side): |L1 imbalance| > 0.6 on ~3% of
            # quotes, the order rate the obi_rule reference figures were measured at
            bid_sz = np.maximum(1.0, np.round(np.exp(rng.normal(np.log(100.0), 0.45, m))))
            ask_sz = np.maximum(1.0, np.round(np.exp(rng.normal(np.log(100.0), 0.45, m))))
            columns = [times, times, mids - half, bid_sz, mids + half, ask_sz]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=65_536)
            ts, mid = int(times[-1]), float(mids[-1])
    return path


def write_synthetic_session(directory: Path, n_quotes: int, seed: int = 0) -> Path:
    """A session directory: `n_quotes` quotes plus a trade after every ~10th quote, at the touch.

    Trades are derived from the quotes (buyer-initiated at the ask, seller at the bid, 1 ns
    after the quote), so the session is consistent and every trade-based feature is defined.
    """
    directory.mkdir(parents=True, exist_ok=True)
    quotes = write_synthetic_quotes(directory / "quotes.parquet", n_quotes, seed)
    rng = np.random.default_rng(seed + 1)
    schema = pa.schema(
        [("ts_event", pa.int64()), ("ts_recv", pa.int64()), ("px", pa.float64()),
         ("sz", pa.float64()), ("side", pa.int8())]
    )  # fmt: skip
    with pq.ParquetWriter(directory / "trades.parquet", schema, compression="zstd") as writer:
        for batch in pq.ParquetFile(quotes).iter_batches(SYNTHETIC_CHUNK):
            pick = rng.random(batch.num_rows) < 0.1
            side = np.where(rng.random(int(pick.sum())) < 0.5, 1, -1).astype(np.int8)
            ts = batch.column("ts_recv").to_numpy()[pick] + 1
            bid, ask = (
                batch.column("bid_px").to_numpy()[pick],
                batch.column("ask_px").to_numpy()[pick],
            )
            size = np.maximum(1.0, np.round(rng.exponential(20.0, len(ts))))
            columns = [ts, ts, np.where(side > 0, ask, bid), size, side]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return directory
