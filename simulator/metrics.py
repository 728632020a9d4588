"""Latency histograms with fixed memory (log-linear buckets, HDR-style) and percentiles.

The engine stores each event's stage durations in preallocated columns; `add_samples` bins a
whole chunk at once (vectorised), so recording costs the hot loop one array write per stage.
Buckets: values below 64 ns are exact; above, each power of two is split into 32 buckets, so a
reported percentile is within ~3% of the true value (it is the upper edge of its bucket).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

EXACT: Final = 64
SUB: Final = 32
N_BUCKETS: Final = EXACT + 58 * SUB
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)


def bucket_index(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Bucket of each non-negative duration in ns."""
    v = np.maximum(values, 0).astype(np.int64)
    _, bits = np.frexp(v.astype(np.float64))  # bit length, exact below 2**53 ns (104 days)
    shift = np.maximum(bits - 6, 0)
    return np.where(v < EXACT, v, EXACT + (shift - 1) * SUB + (v >> shift) - SUB)


def bucket_upper(index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Largest value that falls into each bucket."""
    i = np.asarray(index, dtype=np.int64)
    shift = np.maximum((i - EXACT) // SUB + 1, 0)
    mantissa = (i - EXACT) % SUB + SUB
    return np.where(i < EXACT, i, ((mantissa + 1) << shift) - 1)


class LatencyHistogram:
    """Counts of durations per bucket, plus exact count, sum and max."""

    __slots__ = ("count", "counts", "max_ns", "name", "total_ns")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts = np.zeros(N_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def add_samples(self, samples: npt.NDArray[np.int64]) -> None:
        """Bin durations; negative values mean 'stage did not run' and are skipped."""
        ran = samples[samples >= 0]
        if ran.size == 0:
            return
        self.counts += np.bincount(bucket_index(ran), minlength=N_BUCKETS)[:N_BUCKETS]
        self.count += int(ran.size)
        self.total_ns += int(ran.sum())
        self.max_ns = max(self.max_ns, int(ran.max()))

    def percentile(self, q: float) -> int:
        """Upper edge of the bucket holding the q-th percentile (0 when empty)."""
        if self.count == 0:
            return 0
        rank = max(1, int(np.ceil(self.count * q / 100.0)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(int(bucket_upper(np.array([index]))[0]), self.max_ns)

    def summary(self) -> dict[str, float]:
        """count, mean, p50/p90/p99/p99.9 and max, in microseconds."""
        out: dict[str, float] = {"count": float(self.count)}
        out["mean_us"] = self.total_ns / self.count / 1e3 if self.count else 0.0
        for q in PERCENTILES:
            out[f"p{q:g}_us"] = self.percentile(q) / 1e3
        out["max_us"] = self.max_ns / 1e3
        return out
