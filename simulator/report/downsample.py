"""Fewer points for display, chosen so the chart looks the same at screen resolution.

A trading day has millions of events; a chart is about 1,000 pixels wide. `m4_indices` keeps,
in each of `buckets` equal time windows, the first, last, lowest and highest point (M4
aggregation, Jugel et al. 2014): the line drawn through them covers exactly the pixels the
full series would, so spikes and drawdowns survive. Tables never use downsampled data.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from simulator.report.format import NS_PER_S

DISPLAY_BUCKETS: Final = 1_500
"""Time windows per line chart: 4 points each at most, enough for a wide screen."""

NICE_WINDOWS_S: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def m4_indices(
    ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64], buckets: int = DISPLAY_BUCKETS
) -> npt.NDArray[np.int64]:
    """Sorted indices of the first, last, min and max finite value of each time bucket.

    `ts` must be non-decreasing, so each bucket is a contiguous run of rows and numpy's
    reduceat finds every bucket's min and max in one pass. Non-finite values (NaN: no
    two-sided market yet) are never kept; with at most 4 x `buckets` finite points, all are.
    """
    finite = np.isfinite(values)
    if finite.all():  # the usual case: no copy of a 10M-row column
        kept_ts, kept, index = ts, values, None
    else:
        index = np.flatnonzero(finite).astype(np.int64)
        kept_ts, kept = ts[index], values[index]
    if kept.size <= 4 * buckets:
        return np.arange(kept.size, dtype=np.int64) if index is None else index
    first, span = int(kept_ts[0]), int(kept_ts[-1]) - int(kept_ts[0])
    # bucket edges as timestamps; float steps: span * buckets can overflow int64
    edges = first + (np.arange(buckets) * ((span + 1) / buckets)).astype(np.int64)
    starts = np.unique(np.searchsorted(kept_ts, edges, side="left"))
    starts = starts[starts < kept.size]
    ends = np.append(starts[1:], kept.size) - 1
    lows, highs = _arg_extreme(kept, starts, np.minimum), _arg_extreme(kept, starts, np.maximum)
    picked = np.unique(np.concatenate([starts, ends, lows, highs]))
    return picked if index is None else index[picked]


def _arg_extreme(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], ufunc: np.ufunc
) -> npt.NDArray[np.int64]:
    """Index of the first min (np.minimum) or max (np.maximum) of each run starting at `starts`."""
    extreme = ufunc.reduceat(values, starts)
    lengths = np.diff(np.append(starts, values.size))
    hits = np.flatnonzero(values == np.repeat(extreme, lengths))
    run = np.searchsorted(starts, hits, side="right") - 1
    _, first_hit = np.unique(run, return_index=True)
    return hits[first_hit].astype(np.int64)


def window_ns(span_ns: int, max_windows: int) -> int:
    """The shortest round window (1 s, 2 s, 5 s, ... 6 h, then whole days) giving at most
    `max_windows` windows over `span_ns`."""
    for seconds in NICE_WINDOWS_S:
        if span_ns // (seconds * NS_PER_S) < max_windows:
            return seconds * NS_PER_S
    day = 86_400 * NS_PER_S
    return (span_ns // (day * max_windows) + 1) * day


class FiniteSpan:
    """Count, first and last timestamp of a series' finite values, fed batch by batch: what
    M4Stream needs to place its buckets exactly where `m4_indices` puts them."""

    __slots__ = ("count", "ts_first", "ts_last")

    def __init__(self) -> None:
        self.count, self.ts_first, self.ts_last = 0, 0, 0

    def add(self, ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        finite = np.flatnonzero(np.isfinite(values))
        if finite.size == 0:
            return
        if self.count == 0:
            self.ts_first = int(ts[finite[0]])
        self.ts_last = int(ts[finite[-1]])
        self.count += int(finite.size)


class M4Stream:
    """`m4_indices` over a series read in consecutive batches, in memory bounded by `buckets`.

    A second pass after FiniteSpan: the bucket edges are those m4_indices computes from the
    whole series, and each bucket keeps its first, last, first-lowest and first-highest
    point across batches, so `result()` is exactly the whole-series `ts[keep], values[keep]`.
    """

    __slots__ = ("_all", "_edges", "_index", "_offset", "_small", "_ts", "_values")

    def __init__(self, span: FiniteSpan, buckets: int = DISPLAY_BUCKETS) -> None:
        self._small = span.count <= 4 * buckets  # then every finite point is kept
        first, width = span.ts_first, span.ts_last - span.ts_first
        self._edges = first + (np.arange(buckets) * ((width + 1) / buckets)).astype(np.int64)
        self._offset = 0  # global row index of the next batch's first row
        self._all: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        # per role (first, last, min, max) and bucket: global row index (-1: none), ts, value
        self._index = np.full((4, buckets), -1, np.int64)
        self._ts = np.zeros((4, buckets), np.int64)
        self._values = np.zeros((4, buckets), np.float64)

    def add(self, ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        finite = np.flatnonzero(np.isfinite(values))
        offset, self._offset = self._offset, self._offset + values.size
        if finite.size == 0:
            return
        kept_ts, kept = ts[finite], values[finite]
        if self._small:
            self._all.append((kept_ts.astype(np.int64), kept.astype(np.float64)))
            return
        bucket = np.searchsorted(self._edges, kept_ts, side="right") - 1
        starts = np.flatnonzero(np.diff(bucket, prepend=-1))
        ends = np.append(starts[1:], kept.size) - 1
        lows, highs = _arg_extreme(kept, starts, np.minimum), _arg_extreme(kept, starts, np.maximum)
        ids = bucket[starts]
        for role, local in enumerate((starts, ends, lows, highs)):
            self._merge(role, ids, offset + finite[local], kept_ts[local], kept[local])

    def _merge(
        self,
        role: int,
        ids: npt.NDArray[np.int64],
        index: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Fold one batch's candidates into the buckets' best so far; earlier wins ties."""
        held, known = self._values[role, ids], self._index[role, ids] >= 0
        if role == 0:  # first: only where the bucket had none yet
            take = ~known
        elif role == 1:  # last: always the later batch
            take = np.ones(ids.size, np.bool_)
        elif role == 2:
            take = ~known | (values < held)
        else:
            take = ~known | (values > held)
        at = ids[take]
        self._index[role, at] = index[take]
        self._ts[role, at] = ts[take]
        self._values[role, at] = values[take]

    def result(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The kept points' timestamps and values, in series order."""
        if self._small:
            if not self._all:
                return np.zeros(0, np.int64), np.zeros(0, np.float64)
            ts, values = zip(*self._all, strict=True)
            return np.concatenate(ts), np.concatenate(values)
        index = self._index.ravel()
        held = index >= 0
        _, first = np.unique(index[held], return_index=True)  # sorted by series position
        return self._ts.ravel()[held][first], self._values.ravel()[held][first]
