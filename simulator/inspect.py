"""Summary statistics of one recorded file, for `ticktape data show`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from simulator.sources.recorded import open_parquet
from simulator.types import book_levels


@dataclass(frozen=True, slots=True)
class FileSummary:
    rows: int
    ts_start: int
    ts_end: int
    stats: dict[str, str]
    head: pa.Table


def summarize(path: Path, kind: str, *, first_rows: int = 5) -> FileSummary:
    """Rows, time span, price/spread or trade statistics and the first rows of a file."""
    open_parquet(path)  # clear error for a missing or corrupt file
    frame = pl.scan_parquet(path)
    names = frame.collect_schema().names()
    ts = "ts_recv" if "ts_recv" in names else "ts_ns"
    span = frame.select(pl.len(), pl.col(ts).min().alias("lo"), pl.col(ts).max().alias("hi"))
    rows, lo, hi = span.collect().row(0)
    if kind == "trades":
        stats = _trade_stats(frame)
    elif kind == "orders":
        stats = _order_stats(frame)
    else:
        suffix = "_0" if kind == "book" else ""
        stats = _quote_stats(frame, suffix)
        if kind == "book":
            stats["levels"] = str(book_levels(names))
    head = frame.head(first_rows).collect().to_arrow()
    return FileSummary(rows=int(rows), ts_start=int(lo), ts_end=int(hi), stats=stats, head=head)


def _quote_stats(frame: pl.LazyFrame, suffix: str) -> dict[str, str]:
    bid, ask = pl.col(f"bid_px{suffix}"), pl.col(f"ask_px{suffix}")
    mid, spread = (bid + ask) / 2, ask - bid
    row = (
        frame.select(
            mid.min().alias("mid_min"),
            mid.max().alias("mid_max"),
            spread.min().alias("spread_min"),
            spread.median().alias("spread_median"),
            spread.max().alias("spread_max"),
        )
        .collect()
        .row(0, named=True)
    )
    return {
        "mid range": f"{row['mid_min']:.6g} - {row['mid_max']:.6g}",
        "spread min / median / max": (
            f"{row['spread_min']:.6g} / {row['spread_median']:.6g} / {row['spread_max']:.6g}"
        ),
    }


ORDER_EVENT_NAMES = {1: "new", 2: "partial cancel", 3: "delete", 4: "execution", 5: "hidden exec"}


def _order_stats(frame: pl.LazyFrame) -> dict[str, str]:
    counts = frame.group_by("event_type").len().sort("event_type").collect()
    mix = ", ".join(
        f"{ORDER_EVENT_NAMES.get(int(event), str(event))} {int(n):,}"
        for event, n in counts.iter_rows()
    )
    orders = frame.select(pl.col("order_id").n_unique()).collect().item()
    return {"events": mix, "distinct orders": f"{int(orders):,}"}


def _trade_stats(frame: pl.LazyFrame) -> dict[str, str]:
    row = (
        frame.select(
            pl.col("px").min().alias("px_min"),
            pl.col("px").max().alias("px_max"),
            pl.col("sz").sum().alias("volume"),
            (pl.col("side") == 1).sum().alias("buys"),
            (pl.col("side") == -1).sum().alias("sells"),
            (pl.col("side") == 0).sum().alias("unknown"),
        )
        .collect()
        .row(0, named=True)
    )
    return {
        "price range": f"{row['px_min']:.6g} - {row['px_max']:.6g}",
        "volume": f"{row['volume']:.6g}",
        "aggressor buy / sell / unknown": (
            f"{row['buys']:,} / {row['sells']:,} / {row['unknown']:,}"
        ),
    }
