"""Latency figures of a run: per-stage histograms and percentiles, and latency over time.

The percentile table is computed by `simulator.metrics.LatencyHistogram` itself, rebuilt from
latency_histograms.parquet (bucket counts) and decisions.parquet (exact count, sum and max),
so every figure equals the manifest's `latency_us` to the last bit. Latency over time is
exact per window, from every recorded timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.errors import DataError
from simulator.metrics import LatencyHistogram, bucket_upper
from simulator.recording import STAGES
from simulator.report.downsample import window_ns

OVER_TIME_STAGES: Final = ("features", "inference", "tick_to_trade")
MAX_WINDOWS: Final = 2_000
QUEUE_COLUMN: Final = "queue_ns"
"""decisions.parquet column the report shows as queueing delay once the engine records it."""
SKIPPED_KEY: Final = "n_skipped"
"""manifest summary key the report shows as skipped events once the engine counts them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageHistogram:
    """One stage's buckets, first to last non-empty one (bounds in ns, inclusive), and its
    summary as the manifest has it."""

    stage: str
    lower_ns: npt.NDArray[np.int64]
    upper_ns: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    summary: dict[str, float]  # count, mean_us, p50_us, p90_us, p99_us, p99.9_us, max_us


@dataclass(frozen=True, slots=True, kw_only=True)
class StageOverTime:
    """Exact p50 and p99 of one stage per time window (windows without samples are absent)."""

    stage: str
    ts: npt.NDArray[np.int64]  # window start, UTC ns
    p50_us: npt.NDArray[np.float64]
    p99_us: npt.NDArray[np.float64]
    samples: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyData:
    stages: tuple[StageHistogram, ...]
    over_time: tuple[StageOverTime, ...]
    window_ns: int
    queue: StageOverTime | None  # None: not measured in this run
    skipped: int | None  # None: not measured in this run


def rebuilt_histogram(
    stage: str, buckets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], stats: pl.DataFrame
) -> LatencyHistogram:
    """The run's LatencyHistogram of `stage`: bucket counts from the histogram table, exact
    count, sum and max from decisions (`stats`: one row of n_, sum_, max_<stage>).

    DataError when the two files disagree on the number of samples (a mixed-up run dir).
    """
    histogram = LatencyHistogram(stage)
    np.add.at(histogram.counts, buckets, counts)
    histogram.count = int(counts.sum())
    found = int(stats.item(0, f"n_{stage}"))
    if found != histogram.count:
        raise DataError(
            f"latency_histograms.parquet counts {histogram.count:,} {stage} timings but "
            f"decisions.parquet has {found:,}; the files come from different runs — replay again"
        )
    if found:
        histogram.total_ns = int(stats.item(0, f"sum_{stage}"))
        histogram.max_ns = int(stats.item(0, f"max_{stage}"))
    return histogram


def timing_stats(decisions: pl.LazyFrame) -> pl.DataFrame:
    """Count, sum and max of every stage's timings that ran (>= 0), in one scan."""
    exprs = []
    for stage in STAGES:
        ran = pl.col(f"{stage}_ns").filter(pl.col(f"{stage}_ns") >= 0)
        exprs += [
            ran.len().alias(f"n_{stage}"),
            ran.sum().alias(f"sum_{stage}"),
            ran.max().alias(f"max_{stage}"),
        ]
    return decisions.select(exprs).collect()


def stage_histograms(histograms: pl.DataFrame, stats: pl.DataFrame) -> tuple[StageHistogram, ...]:
    out = []
    for stage in STAGES:
        rows = histograms.filter(pl.col("stage") == stage).sort("bucket")
        buckets = rows.get_column("bucket").to_numpy().astype(np.int64)
        counts = rows.get_column("count").to_numpy().astype(np.int64)
        summary = rebuilt_histogram(stage, buckets, counts, stats).summary()
        # contiguous buckets from the first to the last non-empty one: gaps drawn as zeros
        dense = np.arange(buckets[0], buckets[-1] + 1) if buckets.size else buckets
        dense_counts = np.zeros(dense.size, dtype=np.int64)
        dense_counts[buckets - (buckets[0] if buckets.size else 0)] = counts
        lower = np.where(dense > 0, bucket_upper(np.maximum(dense - 1, 0)) + 1, 0)
        out.append(
            StageHistogram(
                stage=stage,
                lower_ns=lower.astype(np.int64),
                upper_ns=bucket_upper(dense).astype(np.int64),
                counts=dense_counts,
                summary=summary,
            )
        )
    return tuple(out)


def over_time(
    decisions: pl.LazyFrame, columns: dict[str, str], window: int
) -> tuple[StageOverTime, ...]:
    """Exact per-window p50/p99 (the higher of two ranks, never interpolated) of each stage's
    timing column (`columns`: stage -> column), all in one scan of decisions."""
    aggregations = []
    for stage, column in columns.items():
        ran = pl.col(column).filter(pl.col(column) >= 0)
        aggregations += [
            (ran.quantile(0.5, interpolation="higher") / 1e3).alias(f"{stage}.p50"),
            (ran.quantile(0.99, interpolation="higher") / 1e3).alias(f"{stage}.p99"),
            ran.len().alias(f"{stage}.n"),
        ]
    rows = (
        decisions.select("ts_recv", *columns.values())
        .group_by((pl.col("ts_recv") // window * window).alias("window"))
        .agg(aggregations)
        .sort("window")
        .collect()
    )
    out = []
    for stage in columns:
        own = rows.filter(pl.col(f"{stage}.n") > 0)
        out.append(
            StageOverTime(
                stage=stage,
                ts=own.get_column("window").to_numpy().astype(np.int64),
                p50_us=own.get_column(f"{stage}.p50").to_numpy().astype(np.float64),
                p99_us=own.get_column(f"{stage}.p99").to_numpy().astype(np.float64),
                samples=own.get_column(f"{stage}.n").to_numpy().astype(np.int64),
            )
        )
    return tuple(out)


def _any_queued(decisions: pl.LazyFrame) -> bool:
    """True for a simulated-time run: only then does any event carry a queueing delay."""
    return bool(decisions.select((pl.col(QUEUE_COLUMN) >= 0).any()).collect().item())


def latency_data(
    decisions: pl.LazyFrame,
    histograms: pl.DataFrame,
    span_ns: int,
    summary: dict[str, float],
) -> LatencyData:
    """Every latency figure of the run. `decisions` is scanned lazily: a 10M-event run's
    timing columns never need to be in memory at once."""
    window = window_ns(span_ns, MAX_WINDOWS)
    queue = None
    if QUEUE_COLUMN in decisions.collect_schema().names() and _any_queued(decisions):
        (queue,) = over_time(decisions, {"queue": QUEUE_COLUMN}, window)
    skipped = summary.get(SKIPPED_KEY)
    return LatencyData(
        stages=stage_histograms(histograms, timing_stats(decisions)),
        over_time=over_time(decisions, {s: f"{s}_ns" for s in OVER_TIME_STAGES}, window),
        window_ns=window,
        queue=queue,
        skipped=None if skipped is None else int(skipped),
    )
