"""The report's plotly vocabulary: colours, axes, layout, typed arrays and time conversion.

Figures are plain dicts that `Plotly.newPlot` takes directly, not `plotly.graph_objects`
(which validates every property on assignment and embeds its template in each figure): the
report of a 10M-event run builds in about a second, and every array travels as a base64 typed
array (`bdata`: 8 bytes a float instead of ~18 characters of JSON). The tests validate each
figure with plotly's own schema instead.

Time axes show the exchange's wall clock. Plotly date axes have no time zones, so each UTC
timestamp becomes "local wall-clock milliseconds" before plotting; the axis title names the
zone and its UTC offset, and fill markers carry their UTC time in the hover text.
"""

from __future__ import annotations

import base64
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.report.data import RunInfo
from simulator.report.format import utc_offset

Figure = dict[str, Any]
Trace = dict[str, Any]

FONT: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK: Final = "#1f2933"
GRID: Final = "#eceff3"
AXIS_LINE: Final = "#9aa5b1"
COLORS: Final = {
    "mid": "#64748b",
    "buy": "#16a34a",
    "sell": "#dc2626",
    "position": "#7c3aed",
    "equity": "#2563eb",
    "fees": "#d97706",
    "drawdown": "#dc2626",
    "breaker": "#0f172a",
}
STAGE_COLORS: Final = {
    "features": "#2563eb",
    "inference": "#d97706",
    "decision": "#059669",
    "risk": "#db2777",
    "order": "#7c3aed",
    "tick_to_trade": "#0f172a",
    "queue": "#0891b2",
}
REASON_COLORS: Final = ("#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
CONFIG: Final = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
}
LOG_TICKS_US: Final = {
    0.001: "1 ns",
    0.01: "10 ns",
    0.1: "100 ns",
    1.0: "1 µs",
    10.0: "10 µs",
    100.0: "100 µs",
    1e3: "1 ms",
    1e4: "10 ms",
    1e5: "100 ms",
    1e6: "1 s",
}


def typed(values: npt.ArrayLike, dtype: str = "f8") -> dict[str, str]:
    """A plotly typed array: little-endian bytes in base64, decoded by plotly.js itself."""
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}


def local_ms(ts_ns: npt.NDArray[np.int64], zone: str) -> npt.NDArray[np.float64]:
    """UTC ns -> the exchange's wall clock as ms since 1970, what a plotly date axis draws.

    Converted per timestamp, so a session that spans a DST change stays right.
    """
    local = (
        pl.Series(ts_ns, dtype=pl.Int64)
        .cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone(zone)
        .dt.replace_time_zone(None)
        .dt.epoch("ns")
    )
    return local.to_numpy().astype(np.float64) / 1e6


def utc_labels(ts_ns: npt.NDArray[np.int64], digits: int = 6) -> list[str]:
    """'13:30:23.681445 UTC' for each timestamp (hover text; the axes show exchange time)."""
    series = pl.Series(ts_ns, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
    fraction = f"%.{digits}f" if digits else ""
    return [str(label) for label in series.dt.strftime(f"%H:%M:%S{fraction} UTC").to_list()]


def time_axis_title(ts_first: int, zone: str) -> str:
    offset = utc_offset(ts_first, ZoneInfo(zone))
    return f"time, {zone}" if offset == zone else f"time, {zone} ({offset})"


def rgba(color: str, alpha: float) -> str:
    """'#2563eb' with transparency, for fills under lines."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def axis(title: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - plotly attributes
    return {
        "title": {"text": title, "font": {"size": 12}, "standoff": 8},
        "gridcolor": GRID,
        "zeroline": False,
        "linecolor": AXIS_LINE,
        "showline": True,
        "ticks": "outside",
        "tickcolor": AXIS_LINE,
        "ticklen": 4,
        "automargin": True,
        **extra,
    }


def time_axis(info: RunInfo, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """The session's first to last event on the exchange's wall clock."""
    return axis(
        time_axis_title(info.ts_first, info.time_zone),
        type="date",
        range=local_ms(np.array([info.ts_first, info.ts_last]), info.time_zone).tolist(),
        hoverformat="%H:%M:%S.%L",
        showspikes=True,
        spikemode="across",
        spikethickness=1,
        spikecolor=AXIS_LINE,
        spikedash="dot",
        **extra,
    )


def log_us_axis(title: str, low_us: float, high_us: float, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """A log axis in µs with ticks named in ns/µs/ms, spanning [low_us, high_us]."""
    ticks = {v: t for v, t in LOG_TICKS_US.items() if low_us / 10 <= v <= high_us * 10}
    return axis(
        title,
        type="log",
        range=[float(np.log10(low_us)), float(np.log10(high_us))],
        tickvals=list(ticks),
        ticktext=list(ticks.values()),
        **extra,
    )


def layout(height: int, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - plotly attributes
    return {
        "height": height,
        "margin": {"l": 64, "r": 24, "t": 64, "b": 48},  # the legend sits under the modebar
        "font": {"family": FONT, "size": 12, "color": INK},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        "hoverlabel": {"font": {"family": FONT, "size": 12}},
        **extra,
    }


def line(
    ts: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    zone: str,
    **extra: Any,  # noqa: ANN401 - plotly attributes
) -> Trace:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": typed(local_ms(ts, zone)),
        "y": typed(values),
        **extra,
    }
