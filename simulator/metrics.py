"""Latency histograms with fixed memory (log-linear buckets, HDR-style) and percentiles.

The engine stores each event's stage durations in preallocated columns; `add_samples` bins a
whole chunk at once (vectorised), so recording costs the hot loop one array write per stage.
Buckets: values below 64 ns are exact; above, each power of two is split into 32 buckets, so a
reported percentile is within ~3% of the true value (it is the upper edge of its bucket).
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def add_binned(self, counts: npt.NDArray[np.int64], count: int, total: int, top: int) -> None:
        """What add_samples does, from samples binned elsewhere (`add_rows`)."""
        self.counts += counts
        self.count += count
        self.total_ns += total
        self.max_ns = max(self.max_ns, top)

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


class StageBinner:
    """Bins each row of a (stages, rows) block of durations into its own histogram, with the
    same counts, sums and maxima as `add_samples` row by row, but into scratch arrays kept
    between calls and without copying a row every value of which ran (the recorder bins each
    chunk in the event loop's thread: fresh temporaries faulted in ~3 MB a chunk)."""

    __slots__ = ("_histograms", "_index", "_ran", "_shift")

    def __init__(self, histograms: Sequence[LatencyHistogram], capacity: int) -> None:
        self._histograms = list(histograms)
        self._ran = np.empty((len(self._histograms), capacity), np.bool_)
        self._shift = np.empty(capacity, np.float64)
        self._index = np.empty(capacity, np.int64)

    def add(self, samples: npt.NDArray[np.int64]) -> None:
        """Row k of `samples` (at most `capacity` columns) into histogram k."""
        width = samples.shape[1]
        ran = np.greater_equal(samples, 0, out=self._ran[:, :width])
        counts = np.count_nonzero(ran, axis=1).tolist()
        for row, count in enumerate(counts):
            if count == 0:
                continue
            values = samples[row] if count == width else samples[row][ran[row]]
            # bucket_index for values >= 0: the float's exponent field is frexp's exponent
            # + 1022; EXACT + (shift - 1) * SUB + (v >> shift) - SUB is shift * SUB + (v >> shift)
            # as EXACT == 2 * SUB, which also gives a value below EXACT (shift 0) its own bucket
            floats = self._shift[:count]
            np.copyto(floats, values, casting="unsafe")
            shift = floats.view(np.int64)
            np.right_shift(shift, 52, out=shift)
            shift -= 1022 + 6  # shift = max(bit length - 6, 0), as in bucket_index
            np.maximum(shift, 0, out=shift)
            index = np.right_shift(values, shift, out=self._index[:count])
            shift *= SUB
            index += shift
            binned = np.bincount(index, minlength=N_BUCKETS)
            self._histograms[row].add_binned(binned, count, int(values.sum()), int(values.max()))
