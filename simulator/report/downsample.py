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
