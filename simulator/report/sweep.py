"""`sweep.html`: one self-contained page for a sweep directory's results.parquet.

Sections: the cells (every row, status included); for each grid key, net PnL, fills and
tick-to-trade p99 against the key's values (every ok cell a dot, the mean a line); for each
pair of keys, a heatmap of the mean net PnL; with latency scales, net PnL against the scale.
Means are over every other dimension (sessions, other keys, scales). Drawn with the run
report's plotly vocabulary and page shell, so it opens offline the same way.
"""

from __future__ import annotations

import itertools
import json
from html import escape
from pathlib import Path
from typing import Any, Final

import polars as pl

from simulator.errors import DataError
from simulator.report.format import count, micros, money
from simulator.report.page import chart, document, kpi
from simulator.report.plotting import COLORS, REASON_COLORS, Figure, Trace, axis, layout, rgba
from simulator.report.tables import number_cell, table

SWEEP_REPORT: Final = "sweep.html"
SWEEP_META: Final = "sweep.json"
RESULTS: Final = "results.parquet"
PNL: Final = "net_pnl"
METRICS: Final = ((PNL, "net PnL"), ("n_fills", "fills"),
                  ("tick_to_trade_p99_us", "tick-to-trade p99 (µs)"))  # fmt: skip
CELL_COLUMNS: Final = (("n_events", "count"), ("n_orders", "count"), ("n_fills", "count"),
                       ("net_pnl", "money"), ("realized_pnl", "money"), ("fees", "money"),
                       ("max_drawdown", "money"), ("tick_to_trade_p50_us", "micros"),
                       ("tick_to_trade_p99_us", "micros"), ("wall_s", "money"))  # fmt: skip
MAX_SERIES: Final = 12
"""Above this many (session, grid values) lines, the latency curve shows their mean and range."""
PAIRS_SHOWN: Final = 6
HEATMAP_CSS: Final = """
table.heatmap td.num { text-align: center; color: #111827; }
table.heatmap { width: auto; } td.nowrap { white-space: nowrap; word-break: normal; }
table.heatmap th.corner { color: var(--muted); font-weight: 500; }
.status-failed { color: var(--bad); } .status-notrun { color: var(--warn); }
"""


def write_sweep_report(sweep_dir: Path) -> Path:
    """Write `sweep_dir/sweep.html` from its results.parquet; return the path."""
    path = Path(sweep_dir) / SWEEP_REPORT
    path.write_text(build_sweep_html(Path(sweep_dir)), encoding="utf-8")
    return path


def build_sweep_html(sweep_dir: Path) -> str:
    results = sweep_dir / RESULTS
    if not results.exists():
        raise DataError(f"{sweep_dir}: no {RESULTS}; is it a `ticktape sweep` directory?")
    frame = pl.read_parquet(results)
    meta = _meta(sweep_dir)
    keys = [k for k in frame.columns if k in meta.get("grid", {})]
    ok = frame.filter(pl.col("status") == "ok")
    body = _summary(frame, ok) + _cells(frame, keys)
    if ok.height:
        body += _by_key(ok, keys) + _heatmaps(ok, keys) + _latency_curve(ok, keys, meta)
    title = f"ticktape sweep · {meta.get('strategy', sweep_dir.name)}"
    header = (
        f'<header class="top"><div class="bar"><h1>{escape(title)}</h1><span class="sub">'
        f"{frame.height:,} cells · seed {escape(str(meta.get('seed', '?')))}</span></div></header>"
    )
    footer = f"ticktape sweep report of {escape(str(sweep_dir))} · self-contained, works offline"
    return document(title, header, body, footer, css=HEATMAP_CSS)


def _meta(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_META
    if not path.exists():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def _summary(frame: pl.DataFrame, ok: pl.DataFrame) -> str:
    failed = frame.filter(pl.col("status").str.starts_with("failed")).height
    tiles = [kpi("cells", count(frame.height), f"{ok.height:,} ok")]
    tiles.append(kpi("failed", count(failed), "", "neg" if failed else ""))
    if ok.height:
        best = float(ok[PNL].max())  # type: ignore[arg-type]
        tiles.append(kpi("best net PnL", money(best), "quote ccy", "neg" if best < 0 else "pos"))
        median = float(ok["tick_to_trade_p99_us"].median())  # type: ignore[arg-type]
        tiles.append(kpi("median t2t p99", micros(median), "µs"))
    return f'<section id="summary"><div class="kpis">{"".join(tiles)}</div></section>'


def _cells(frame: pl.DataFrame, keys: list[str]) -> str:
    head = ["session", *keys, "latency scale", "status", *(c for c, _ in CELL_COLUMNS), "cell"]
    rows = []
    for row in frame.iter_rows(named=True):
        status = str(row["status"])
        tone = "" if status == "ok" else "failed" if status.startswith("failed") else "notrun"
        cells = [f'<td class="nowrap">{escape(str(row["session"]))}</td>']
        cells += [f'<td data-key="{escape(k)}">{escape(_text(row[k]))}</td>' for k in keys]
        cells.append(f'<td class="num" data-key="latency_scale">{row["latency_scale"]:g}</td>')
        cells.append(f'<td class="status-{tone}" data-key="status">{escape(status)}</td>')
        for name, kind in CELL_COLUMNS:
            value = row.get(name)
            cells.append("<td></td>" if value is None else number_cell(kind, value, name))  # type: ignore[arg-type]
        cells.append(f'<td class="mono nowrap">{escape(str(row.get("cell") or ""))}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    numeric = {i for i, h in enumerate(head) if h in dict(CELL_COLUMNS) or h == "latency scale"}
    return (
        '<section id="cells"><h2>Cells</h2><div class="card" style="overflow-x:auto">'
        f"{table(head, rows, table_id='cells-table', numeric=numeric)}"
        '<p class="note">net_pnl is after fees (realised + unrealised - fees); each '
        "cell's run directory is cells/&lt;cell&gt;/.</p></div></section>"
    )


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _x(values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """x values and axis settings: numbers on a linear axis, anything else as categories."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return values, {}
    return [str(v) for v in values], {"type": "category"}


def _by_key(ok: pl.DataFrame, keys: list[str]) -> str:
    """Each metric against each grid key: one row of three small charts per key."""
    charts = []
    for key in keys:
        means = ok.group_by(key).agg([pl.col(m).mean() for m, _ in METRICS]).sort(key)
        x_all, extra = _x(ok[key].to_list())
        x_mean, _ = _x(means[key].to_list())
        traces: list[Trace] = []
        for i, (metric, _label) in enumerate(METRICS):
            axes = {"xaxis": f"x{i + 1}", "yaxis": f"y{i + 1}"}
            traces.append({"type": "scatter", "mode": "markers", "x": x_all,
                           "y": ok[metric].to_list(), "name": "cells", "showlegend": i == 0,
                           "marker": {"color": rgba(COLORS["equity"], 0.35), "size": 7},
                           "legendgroup": "cells", **axes})  # fmt: skip
            traces.append({"type": "scatter", "mode": "lines+markers", "x": x_mean,
                           "y": means[metric].to_list(), "name": "mean", "showlegend": i == 0,
                           "line": {"color": COLORS["breaker"], "width": 2},
                           "legendgroup": "mean", **axes})  # fmt: skip
        figure: Figure = {"data": traces, "layout": layout(300, **_three_panels(key, extra))}
        charts.append(f'<div class="card"><h3>{escape(key)}</h3>{chart(_slug(key), figure)}</div>')
    if not charts:
        return ""
    return '<section id="by-key"><h2>Across each grid key</h2>' + "".join(charts) + "</section>"


def _three_panels(key: str, extra: dict[str, Any]) -> dict[str, Any]:
    panels: dict[str, Any] = {}
    for i, (_metric, label) in enumerate(METRICS):
        lo = i / 3 + (0.04 if i else 0)
        panels[f"xaxis{i + 1}"] = axis(key, domain=[lo, (i + 1) / 3 - 0.04], anchor=f"y{i + 1}",
                                       **extra)  # fmt: skip
        panels[f"yaxis{i + 1}"] = axis(label, anchor=f"x{i + 1}")
    return panels


def _slug(key: str) -> str:
    return "key-" + "".join(c if c.isalnum() else "-" for c in key)


def _heatmaps(ok: pl.DataFrame, keys: list[str]) -> str:
    """Mean net PnL for each pair of grid keys, as a colour-scaled table."""
    pairs = list(itertools.combinations(keys, 2))[:PAIRS_SHOWN]
    if not pairs:
        return ""
    cards = [_heatmap(ok, rows, cols) for rows, cols in pairs]
    return '<section id="heatmaps"><h2>Net PnL heatmaps</h2>' + "".join(cards) + "</section>"


def _heatmap(ok: pl.DataFrame, rows: str, cols: str) -> str:
    means = ok.group_by([rows, cols]).agg(pl.col(PNL).mean())
    lookup = {(r[rows], r[cols]): r[PNL] for r in means.iter_rows(named=True)}
    row_values, col_values = sorted(set(ok[rows].to_list())), sorted(set(ok[cols].to_list()))
    scale = max((abs(v) for v in lookup.values()), default=0.0) or 1.0
    body = []
    for r in row_values:
        tds = [f"<th>{escape(_text(r))}</th>"]
        for c in col_values:
            value = lookup.get((r, c))
            if value is None:
                tds.append("<td></td>")
                continue
            color = rgba(COLORS["buy"] if value >= 0 else COLORS["sell"], abs(value) / scale * 0.8)
            tds.append(number_cell("money", value, PNL).replace(
                "<td ", f'<td style="background:{color}" ', 1))  # fmt: skip
        body.append(f"<tr>{''.join(tds)}</tr>")
    head = "".join(f"<th class=num>{escape(_text(c))}</th>" for c in col_values)
    corner = f"{escape(rows)} ↓ · {escape(cols)} →"
    return (
        f'<div class="card"><h3>{escape(rows)} &times; {escape(cols)}</h3>'
        f'<table class="heatmap" id="heatmap-{_slug(rows)}--{_slug(cols)}"><thead><tr>'
        f'<th class="corner">{corner}</th>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        "</table><p class=note>Mean net PnL over every other dimension; green gains, red "
        "losses, deeper for larger amounts.</p></div>"
    )


def _latency_curve(ok: pl.DataFrame, keys: list[str], meta: dict[str, Any]) -> str:
    """Net PnL against the latency scale: what the strategy earns as it gets slower."""
    if not meta.get("latency_scale"):
        return ""
    series = ["session", *keys]
    groups = ok.sort("latency_scale").group_by(series, maintain_order=True)
    traces: list[Trace] = []
    n_groups = ok.select(series).unique().height
    if n_groups <= MAX_SERIES:
        for i, (labels, group) in enumerate(groups):
            name = " · ".join(
                [str(labels[0])]
                + [f"{k}={_text(v)}" for k, v in zip(keys, labels[1:], strict=True)]
            )
            color = REASON_COLORS[i % len(REASON_COLORS)]
            traces.append(_curve(group, name, color, width=1.5))
    means = ok.group_by("latency_scale").agg(
        pl.col(PNL).mean().alias("mean"), pl.col(PNL).min().alias("lo"),
        pl.col(PNL).max().alias("hi"),
    ).sort("latency_scale")  # fmt: skip
    if n_groups > MAX_SERIES:
        x = means["latency_scale"].to_list()
        traces.append({"type": "scatter", "mode": "lines", "x": x, "y": means["lo"].to_list(),
                       "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"})  # fmt: skip
        traces.append({"type": "scatter", "mode": "lines", "x": x, "y": means["hi"].to_list(),
                       "fill": "tonexty", "fillcolor": rgba(COLORS["equity"], 0.15),
                       "line": {"width": 0}, "name": "range of the cells"})  # fmt: skip
    mean = means.rename({"mean": PNL})
    traces.append(_curve(mean, "mean of all cells", COLORS["breaker"], width=3))
    figure = {"data": traces, "layout": layout(380, xaxis=axis("latency scale (times every stage, "
              "feed and order latency)", type="log" if min(means["latency_scale"]) > 0 else "-"),
              yaxis=axis("net PnL"))}  # fmt: skip
    return (
        '<section id="latency-curve"><h2>PnL versus latency</h2><div class="card">'
        f"{chart('latency-curve', figure)}<p class=note>Each cell replays the same data with "
        "every simulated latency multiplied by the scale; one line per session and grid values."
        "</p></div></section>"
    )


def _curve(frame: pl.DataFrame, name: str, color: str, *, width: float) -> Trace:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "x": frame["latency_scale"].to_list(),
        "y": frame[PNL].to_list(),
        "name": name,
        "line": {"color": color, "width": width},
    }
