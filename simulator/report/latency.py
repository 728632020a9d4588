"""Latency figures of a run: per-stage histograms and percentiles, and latency over time.

The percentile table is computed by `simulator.metrics.LatencyHistogram` itself, rebuilt from
latency_histograms.parquet (bucket counts) and decisions.parquet (exact count, sum and max),
so every figure equals the manifest's `latency_us` to the last bit. Latency over time is
exact per window, from every recorded timing. decisions.parquet is read batch by batch
(`column_batches`): only per-stage totals and the current time window are ever in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.errors import DataError
from simulator.metrics import LatencyHistogram, bucket_upper
from simulator.recording import STAGES
from simulator.report.batches import column_batches
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
    stage: str,
    buckets: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    stats: Mapping[str, int],
) -> LatencyHistogram:
    """The run's LatencyHistogram of `stage`: bucket counts from the histogram table, exact
    count, sum and max from decisions (`stats`: n_, sum_, max_<stage>).

    DataError when the two files disagree on the number of samples (a mixed-up run dir).
    """
    histogram = LatencyHistogram(stage)
    np.add.at(histogram.counts, buckets, counts)
    histogram.count = int(counts.sum())
    found = stats[f"n_{stage}"]
    if found != histogram.count:
        raise DataError(
            f"latency_histograms.parquet counts {histogram.count:,} {stage} timings but "
            f"decisions.parquet has {found:,}; the files come from different runs — replay again"
        )
    if found:
        histogram.total_ns = stats[f"sum_{stage}"]
        histogram.max_ns = stats[f"max_{stage}"]
    return histogram


def timing_stats(decisions: Path) -> dict[str, int]:
    """Count, sum and max of every stage's timings that ran (>= 0), in one batched scan."""
    stats = {f"{agg}_{stage}": 0 for stage in STAGES for agg in ("n", "sum", "max")}
    for batch in column_batches(decisions, [f"{stage}_ns" for stage in STAGES]):
        for stage in STAGES:
            values = batch[f"{stage}_ns"]
            ran = values[values >= 0].astype(np.int64)
            if ran.size:
                stats[f"n_{stage}"] += int(ran.size)
                stats[f"sum_{stage}"] += int(ran.sum())
                stats[f"max_{stage}"] = max(stats[f"max_{stage}"], int(ran.max()))
    return stats


def stage_histograms(
    histograms: pl.DataFrame, stats: Mapping[str, int]
) -> tuple[StageHistogram, ...]:
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


def _window_rows(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """Exact p50/p99 in ns (the higher of two ranks, never interpolated) and sample count of
    each stage's timing column per window of `frame` (a "window" column holds its start)."""
    aggregations = []
    for stage, column in columns.items():
        ran = pl.col(column).filter(pl.col(column) >= 0)
        aggregations += [
            ran.quantile(0.5, interpolation="higher").alias(f"{stage}.p50"),
            ran.quantile(0.99, interpolation="higher").alias(f"{stage}.p99"),
            ran.len().alias(f"{stage}.n"),
        ]
    return frame.group_by("window").agg(aggregations)


def _windows(decisions: Path, columns: dict[str, str], window: int) -> pl.DataFrame:
    """`_window_rows` of the whole file, batch by batch: decisions are in ts_recv order, so a
    window is complete once a later one starts; only the open window is carried over."""
    parts, carry = [], None
    for batch in column_batches(decisions, ("ts_recv", *columns.values())):
        frame = pl.DataFrame(batch).select(
            (pl.col("ts_recv") // window * window).alias("window"), *columns.values()
        )
        if carry is not None:
            frame = pl.concat([carry, frame])
        starts = frame.get_column("window")
        if not starts.is_sorted():
            raise DataError(
                "decisions.parquet: ts_recv goes backwards; a run records events in receive "
                "order — replay again"
            )
        last = starts[-1]
        done = frame.filter(pl.col("window") < last)
        if done.height:
            parts.append(_window_rows(done, columns))
        carry = frame.filter(pl.col("window") == last)
    if carry is not None:
        parts.append(_window_rows(carry, columns))
    return pl.concat(parts).sort("window")


def over_time(decisions: Path, columns: dict[str, str], window: int) -> tuple[StageOverTime, ...]:
    """Exact per-window p50/p99 of each stage's timing column (`columns`: stage -> column),
    all in one batched scan of decisions."""
    rows = _windows(decisions, columns, window)
    out = []
    for stage in columns:
        own = rows.filter(pl.col(f"{stage}.n") > 0)
        out.append(
            StageOverTime(
                stage=stage,
                ts=own.get_column("window").to_numpy().astype(np.int64),
                # numpy's true division: polars' `/ 1e3` may multiply by 0.001 (1 ulp off)
                p50_us=own.get_column(f"{stage}.p50").to_numpy().astype(np.float64) / 1e3,
                p99_us=own.get_column(f"{stage}.p99").to_numpy().astype(np.float64) / 1e3,
                samples=own.get_column(f"{stage}.n").to_numpy().astype(np.int64),
            )
        )
    return tuple(out)


def _any_queued(decisions: Path) -> bool:
    """True for a simulated-time run: only then does any event carry a queueing delay."""
    return any(
        bool((batch[QUEUE_COLUMN] >= 0).any())
        for batch in column_batches(decisions, (QUEUE_COLUMN,))
    )


def latency_data(
    decisions: Path,
    histograms: pl.DataFrame,
    span_ns: int,
    summary: dict[str, float],
) -> LatencyData:
    """Every latency figure of the run. `decisions` (the file) is read in batches: a
    10M-event run's timing columns are never in memory at once."""
    window = window_ns(span_ns, MAX_WINDOWS)
    queue = None
    if _any_queued(decisions):
        (queue,) = over_time(decisions, {"queue": QUEUE_COLUMN}, window)
    skipped = summary.get(SKIPPED_KEY)
    return LatencyData(
        stages=stage_histograms(histograms, timing_stats(decisions)),
        over_time=over_time(decisions, {s: f"{s}_ns" for s in OVER_TIME_STAGES}, window),
        window_ns=window,
        queue=queue,
        skipped=None if skipped is None else int(skipped),
    )
