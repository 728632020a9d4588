"""The report's charts: PnL, latency histograms, latency over time, risk rejections.

Every time chart spans the whole session (first to last event), so charts line up.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import polars as pl

from simulator.report.data import RiskData, RunInfo
from simulator.report.format import duration, micros
from simulator.report.latency import LatencyData, StageHistogram, StageOverTime
from simulator.report.plotting import (
    COLORS,
    REASON_COLORS,
    STAGE_COLORS,
    Figure,
    Trace,
    axis,
    layout,
    line,
    local_ms,
    log_us_axis,
    rgba,
    time_axis,
    typed,
    utc_labels,
)
from simulator.report.pnl import FillMarkers, PnlData

PERCENTILE_LINES: Final = (("p50_us", "solid"), ("p99_us", "dash"), ("p99.9_us", "dot"))
PANEL_PX: Final = 180
"""Height of one histogram or latency-over-time panel, in pixels."""
PANEL_GAP_PX: Final = 64


def axis_id(index: int) -> str:
    """Plotly's axis names: y, y2, y3, ... for index 0, 1, 2, ..."""
    return "" if index == 0 else str(index + 1)


def stacked_domains(n: int, gap: float) -> list[list[float]]:
    """Vertical domains of `n` equal rows, top first, `gap` (paper fraction) between rows."""
    height = (1 - gap * (n - 1)) / n
    return [[1 - i * (height + gap) - height, 1 - i * (height + gap)] for i in range(n)]


def _fill_trace(markers: FillMarkers, zone: str) -> Trace:
    word = "buy" if markers.side == 1 else "sell"
    if markers.window_ns is None:
        what = f"{word} %{{customdata[0]:,~g}} @ %{{y:,.4~f}}<br>fee %{{customdata[1]:,.4f}}"
        when = "at %{text}"
        name = f"{word}s ({markers.total:,} fills)"
    else:
        window = duration(markers.window_ns)
        what = (
            f"%{{customdata[2]:,d}} {word}s in {window}: %{{customdata[0]:,~g}} units"
            "<br>VWAP %{y:,.4~f}, fees %{customdata[1]:,.4f}"
        )
        when = "first at %{text}"
        name = f"{word}s ({markers.total:,} fills, VWAP per {window})"
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": typed(local_ms(markers.ts, zone)),
        "y": typed(markers.price),
        "customdata": np.column_stack([markers.qty, markers.fee, markers.n_fills]).tolist(),
        "text": utc_labels(markers.ts),
        "hovertemplate": f"{what}<br>{when}<extra></extra>",
        "marker": {
            "symbol": "triangle-up" if markers.side == 1 else "triangle-down",
            "size": 6,
            "opacity": 0.85,
            "color": COLORS[word],
        },
    }


def _area(line_trace: Trace, color: str) -> Trace:
    """A line filled down to zero in its own colour, lightly."""
    return {**line_trace, "fill": "tozeroy", "fillcolor": rgba(color, 0.12)}


def _pnl_lines(pnl: PnlData, zone: str) -> list[Trace]:
    position = line(
        pnl.position.ts, pnl.position.values, zone, name="position", yaxis="y2",
        line={"color": COLORS["position"], "width": 1.2, "shape": "hv"},
        hovertemplate="%{y:,~g} units",
    )  # fmt: skip
    equity = line(
        pnl.equity.ts, pnl.equity.values, zone, name="equity (net of fees)", yaxis="y3",
        line={"color": COLORS["equity"], "width": 1.4}, hovertemplate="%{y:,.2f}",
    )  # fmt: skip
    fees = line(
        pnl.fees.ts, pnl.fees.values, zone, name="fees paid (cumulative)", yaxis="y3",
        line={"color": COLORS["fees"], "width": 1.2, "dash": "dash", "shape": "hv"},
        hovertemplate="%{y:,.2f}",
    )  # fmt: skip
    drawdown = line(
        pnl.drawdown.ts, -pnl.drawdown.values, zone, name="drawdown", yaxis="y4",
        line={"color": COLORS["drawdown"], "width": 1}, hovertemplate="%{y:,.2f}",
    )  # fmt: skip
    return [_area(position, COLORS["position"]), equity, fees, _area(drawdown, COLORS["drawdown"])]


def pnl_figure(pnl: PnlData, info: RunInfo) -> Figure:
    """Price with fills, position, equity and fees, drawdown: four rows on one time axis,
    so zooming one zooms all and the hover reads every row at the same instant."""
    zone = info.time_zone
    traces: list[Trace] = []
    if pnl.mid is not None:
        mid = line(
            pnl.mid.ts,
            pnl.mid.values,
            zone,
            name="mid price",
            line={"color": COLORS["mid"], "width": 1},
            text=utc_labels(pnl.mid.ts, digits=3),
            hovertemplate="%{y:,.4~f}   (%{text})",
        )
        traces.append(mid)
    traces += [_fill_trace(pnl.buys, zone), _fill_trace(pnl.sells, zone)]
    traces += _pnl_lines(pnl, zone)
    for trace in traces:
        trace["xaxis"] = "x"
        trace.setdefault("yaxis", "y")
    return {
        "data": traces,
        "layout": layout(
            880,
            hovermode="x unified",
            hoversubplots="axis",
            xaxis=time_axis(info, anchor="y4"),
            yaxis=axis("price (quote ccy)", domain=[0.57, 1.0], tickformat=",.2f"),
            yaxis2=axis("position (units)", domain=[0.42, 0.53]),
            yaxis3=axis("PnL (quote ccy)", domain=[0.18, 0.38], tickformat=",.0f"),
            yaxis4=axis("drawdown (quote ccy)", domain=[0.0, 0.14], tickformat=",.0f"),
        ),
    }


def _histogram_trace(h: StageHistogram, suffix: str) -> Trace:
    """A step outline of the buckets; x in µs (log axis), y = calls per bucket."""
    edges_us = np.maximum(np.concatenate([h.lower_ns, h.upper_ns[-1:] + 1]), 1) / 1e3
    return {
        "type": "scatter",
        "mode": "lines",
        "name": h.stage,
        "showlegend": False,
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        "x": typed(edges_us),
        "y": typed(np.concatenate([h.counts, [0]]).astype(np.float64)),
        "line": {"shape": "hv", "width": 1.2, "color": STAGE_COLORS[h.stage]},
        "fill": "tozeroy",
        "fillcolor": rgba(STAGE_COLORS[h.stage], 0.35),
        "hovertemplate": f"{h.stage}: %{{y:,d}} calls from %{{x:,.3f}} µs<extra></extra>",
    }


def _percentile_shapes(h: StageHistogram, suffix: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "line",
            "xref": f"x{suffix}",
            "yref": f"y{suffix} domain",
            "x0": h.summary[key],
            "x1": h.summary[key],
            "y0": 0,
            "y1": 1,
            "line": {"color": "#334155", "width": 1, "dash": dash},
        }
        for key, dash in PERCENTILE_LINES
    ]


def _panel_title(h: StageHistogram, x: float, y: float) -> dict[str, Any]:
    s = h.summary
    text = (
        f"<b>{h.stage}</b>   {s['count']:,.0f} calls · p50 {micros(s['p50_us'])} µs · "
        f"p99 {micros(s['p99_us'])} µs · p99.9 {micros(s['p99.9_us'])} µs"
    )
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": x,
        "y": y,
        "xanchor": "left",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 12},
    }


def histogram_figure(latency: LatencyData) -> Figure:
    """Small multiples, one per stage that ran, on one shared log µs range; vertical lines at
    p50 (solid), p99 (dashed) and p99.9 (dotted)."""
    stages = [h for h in latency.stages if h.counts.size]
    low = min((float(h.lower_ns[0]) for h in stages), default=100.0) / 1e3
    high = max((float(h.upper_ns[-1]) for h in stages), default=1e6) / 1e3
    columns, rows = 2, max(1, -(-len(stages) // 2))
    height = rows * PANEL_PX + (rows - 1) * PANEL_GAP_PX
    domains = stacked_domains(rows, PANEL_GAP_PX / height)
    traces, shapes, titles, axes = [], [], [], {}
    for index, h in enumerate(stages):
        suffix, y_domain = axis_id(index), domains[index // columns]
        x_domain = [0.0, 0.46] if index % columns == 0 else [0.54, 1.0]
        traces.append(_histogram_trace(h, suffix))
        shapes += _percentile_shapes(h, suffix)
        titles.append(_panel_title(h, x_domain[0], y_domain[1] + 0.01))
        bottom = index >= len(stages) - columns
        axes[f"xaxis{suffix}"] = log_us_axis(
            "duration" if bottom else "", max(low, 1e-3), high, domain=x_domain, anchor=f"y{suffix}"
        )
        axes[f"yaxis{suffix}"] = axis(
            "calls" if index % columns == 0 else "",
            domain=y_domain,
            anchor=f"x{suffix}",
            rangemode="tozero",
        )
    return {
        "data": traces,
        "layout": layout(
            height + 110,
            shapes=shapes,
            annotations=titles,
            hovermode="closest",
            margin={"l": 64, "r": 24, "t": 64, "b": 48},
            updatemenus=[_log_toggle(len(stages))],
            **axes,
        ),
    }


def _log_toggle(n: int) -> dict[str, Any]:
    """Buttons switching every count axis between linear and log (tails show on log)."""
    names = [f"yaxis{axis_id(i)}" for i in range(n)]
    return {
        "type": "buttons",
        "direction": "left",
        "showactive": True,
        "x": 1.0,
        "xanchor": "right",
        "y": 1.0,
        "yanchor": "bottom",
        "pad": {"b": 30},
        "font": {"size": 11},
        "buttons": [
            {
                "label": f"{kind} counts",
                "method": "relayout",
                "args": [{f"{name}.type": kind for name in names}],
            }
            for kind in ("linear", "log")
        ],
    }


def _band_traces(stage: StageOverTime, window_ns: int, zone: str, yaxis: str) -> list[Trace]:
    """p50 as a line and the p50..p99 spread as a shaded band above it."""
    middle = stage.ts + window_ns // 2
    color = STAGE_COLORS[stage.stage]
    common = {"xaxis": "x", "yaxis": yaxis, "legendgroup": stage.stage}
    p50 = line(
        middle,
        stage.p50_us,
        zone,
        name=f"{stage.stage} p50",
        **common,
        line={"color": color, "width": 1.3},
        text=utc_labels(middle, digits=0),
        hovertemplate="%{y:,.2f} µs   (%{text})",
    )
    p99 = line(
        middle,
        stage.p99_us,
        zone,
        name=f"{stage.stage} p99",
        **common,
        line={"color": color, "width": 0.6},
        fill="tonexty",
        fillcolor=rgba(color, 0.18),
        hovertemplate="%{y:,.2f} µs",
    )
    return [p50, p99]


def over_time_figure(stages: tuple[StageOverTime, ...], window_ns: int, info: RunInfo) -> Figure:
    """One row per stage on a shared time axis: the p50 line and the band up to p99."""
    height = len(stages) * PANEL_PX + (len(stages) - 1) * 24
    domains = stacked_domains(len(stages), 24 / height)
    traces: list[Trace] = []
    axes: dict[str, Any] = {}
    for index, (stage, domain) in enumerate(zip(stages, domains, strict=True)):
        traces += _band_traces(stage, window_ns, info.time_zone, f"y{axis_id(index)}")
        values = np.concatenate([stage.p50_us, stage.p99_us])
        positive = values[values > 0]  # a log axis: zeros (e.g. no queueing) are not drawn
        low = positive.min() if positive.size else 0.1
        high = max(positive.max(), low * 10) if positive.size else 1e3
        axes[f"yaxis{axis_id(index)}"] = log_us_axis(
            stage.stage, float(low) / 1.3, float(high) * 1.3, domain=domain
        )
    return {
        "data": traces,
        "layout": layout(
            height + 120,
            hovermode="x unified",
            hoversubplots="axis",
            xaxis=time_axis(info, anchor=f"y{axis_id(len(stages) - 1)}"),
            **axes,
        ),
    }


def risk_figure(risk: RiskData, info: RunInfo) -> Figure | None:
    """Rejections per window, stacked by reason; breaker switches as markers on the axis."""
    traces: list[Trace] = []
    for index, reason in enumerate(risk.reasons):
        bars = {
            "type": "bar",
            "name": f"{reason.reason} ({reason.total:,})",
            "x": typed(local_ms(reason.ts + risk.window_ns // 2, info.time_zone)),
            "y": typed(reason.counts.astype(np.float64)),
            "width": risk.window_ns / 1e6 * 0.9,
            "marker": {"color": REASON_COLORS[index % len(REASON_COLORS)]},
            "text": utc_labels(reason.ts, digits=0),
            "textposition": "none",
            "hovertemplate": f"%{{y:,d}} {reason.reason} (window from %{{text}})<extra></extra>",
        }
        traces.append(bars)
    if risk.switches is not None and risk.switches.height:
        traces.append(_switch_trace(risk.switches, info.time_zone))
    if not traces:
        return None
    return {
        "data": traces,
        "layout": layout(
            340,
            barmode="stack",
            showlegend=True,
            hovermode="x unified",
            xaxis=time_axis(info),
            yaxis=axis(f"rejections per {duration(risk.window_ns)}", rangemode="tozero"),
        ),
    }


def _switch_trace(switches: pl.DataFrame, zone: str) -> Trace:
    ts = switches.get_column("ts").to_numpy().astype(np.int64)
    labels = [
        f"breaker {state}: {reason}<br>{utc}"
        for state, reason, utc in zip(
            switches.get_column("state").to_list(),
            switches.get_column("reason").to_list(),
            utc_labels(ts),
            strict=True,
        )
    ]
    return {
        "type": "scatter",
        "mode": "markers",
        "name": f"breaker switches ({switches.height:,})",
        "x": typed(local_ms(ts, zone)),
        "y": typed(np.zeros(ts.size)),
        "text": labels,
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {
            "symbol": "x-thin",
            "size": 10,
            "line": {"width": 2, "color": COLORS["breaker"]},
        },
    }
