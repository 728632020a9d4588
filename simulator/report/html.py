"""One self-contained HTML file per run: plotly.js, data and styles inline, no network.

Sections: run header, PnL, latency, risk and, for stress runs, the scenario comparison. The
page is deterministic: the same run directory gives the same bytes (no build time stamped in).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from simulator.report import figures
from simulator.report.data import ReportData, RunInfo, load_report_data
from simulator.report.downsample import DISPLAY_BUCKETS
from simulator.report.format import count, duration, micros, money
from simulator.report.page import chart as _chart
from simulator.report.page import document
from simulator.report.page import kpi as _kpi
from simulator.report.tables import (
    data_files_table,
    frame_table,
    key_value_table,
    percentile_table,
    reasons_table,
    run_table,
    stats_table,
    switches_table,
    timings_table,
)

REPORT_NAME = "report.html"


def _kpis(data: ReportData) -> str:
    stats = {s.key: s.value for s in data.pnl.stats}
    net = stats.get("net_pnl", stats["final_equity"])  # runs before net_pnl: equity from 0
    tone = "neg" if net < 0 else "pos" if net > 0 else ""
    t2t = next(h for h in data.latency.stages if h.stage == "tick_to_trade").summary
    tiles = [
        _kpi("net PnL", money(net), "quote ccy", tone),
        _kpi("max drawdown", money(stats["max_drawdown"]), "quote ccy"),
        _kpi("fills", count(stats["n_fills"]), f"of {count(stats['n_orders'])} orders"),
        _kpi("tick-to-trade p99", micros(t2t["p99_us"]), "µs"),
        _kpi("events", count(data.info.n_events)),
    ]
    return f'<div class="kpis">{"".join(tiles)}</div>'


def _config_tables(config: tuple[tuple[str, str], ...]) -> str:
    """One small table per configuration section, side by side."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for key, text in config:
        section, _, name = key.rpartition(".")
        sections.setdefault(section or "(top level)", []).append((name, text))
    return (
        '<div class="config-grid" id="config-table">'
        + "".join(
            f"<div><h4>{escape(section)}</h4>{key_value_table(rows, mono=True)}</div>"
            for section, rows in sections.items()
        )
        + "</div>"
    )


def _run_section(data: ReportData) -> str:
    info = data.info
    versions = "".join(
        f'<span class="chip"><b>{escape(k)}</b> {escape(v)}</span>'
        for k, v in info.versions.items()
    )
    checks = ""
    if info.source_checks:
        rows = [(f"{name}: {check}", count(n)) for name, check, n in info.source_checks]
        checks = f'<div class="card"><h3>Source checks</h3>{key_value_table(rows)}</div>'
    return (
        f'<section id="run"><h2>Run</h2>{_kpis(data)}'
        f'<div class="grid"><div class="card"><h3>Run</h3>{run_table(info)}</div>'
        f'<div class="card"><h3>Timings</h3>{timings_table(info.timings)}'
        f'<h3 class="spaced">Versions</h3><div class="chips">{versions}</div></div></div>'
        f'<div class="card spaced"><h3>Data files</h3>{data_files_table(info)}</div>'
        f"{checks}"
        f'<div class="card"><details id="config"><summary>Configuration '
        f'<span class="unit">({len(info.config)} settings)</span></summary>'
        f"{_config_tables(info.config)}</details></div>"
        "</section>"
    )


def _pnl_section(data: ReportData) -> str:
    pnl, info = data.pnl, data.info
    caption = (
        f"{escape(pnl.mid_note)}. Lines keep the first, last, lowest and highest value of each "
        f"of {DISPLAY_BUCKETS:,} time slices (exact at screen resolution); drag to zoom, "
        "double-click to reset."
    )
    figure = figures.pnl_figure(pnl, info)
    in_money = [s for s in pnl.stats if s.kind == "money"]
    activity = [s for s in pnl.stats if s.kind != "money"]
    return (
        '<section id="pnl"><h2>PnL</h2><div class="card">'
        f"{_chart('pnl', figure, caption)}</div>"
        '<div class="grid" id="pnl-stats">'
        f'<div class="card"><h3>Profit and loss</h3>{stats_table(in_money, "pnl-table")}'
        '<p class="note">In the quote currency of the instrument; hover a value for its source.'
        "</p></div>"
        f'<div class="card"><h3>Trading activity</h3>{stats_table(activity, "activity-table")}'
        "</div></div></section>"
    )


def _not_measured(what: str, how: str) -> str:
    return f'<p class="note empty"><b>{escape(what)}</b>: not measured in this run ({how}).</p>'


def _latency_section(data: ReportData) -> str:
    latency, info = data.latency, data.info
    histograms = _chart(
        "histograms",
        figures.histogram_figure(latency),
        "Calls per bucket on a log duration axis; solid p50, dashed p99, dotted p99.9.",
    )
    over_time = _chart(
        "latency-over-time",
        figures.over_time_figure(latency.over_time, latency.window_ns, info),
        f"p50 of every call in each {duration(latency.window_ns)} window (line) and the band "
        "up to its p99: exact ranks, never interpolated. Click a legend entry to hide it.",
    )
    queue = _not_measured("Queueing delay", "decisions.parquet has no queue_ns column")
    if latency.queue is not None:
        queue = _chart("queue", figures.over_time_figure((latency.queue,), latency.window_ns, info))
    skipped = _not_measured("Skipped events", "the manifest summary has no n_skipped")
    if latency.skipped is not None:
        skipped = f'<p class="note">Skipped events: <b>{count(latency.skipped)}</b>.</p>'
    return (
        '<section id="latency"><h2>Latency</h2>'
        f'<div class="card"><h3>Per-stage percentiles (µs)</h3>{percentile_table(latency.stages)}'
        '<p class="note">Upper edge of the histogram bucket holding each percentile (within 3%), '
        "capped at the exact maximum; the same numbers as the manifest's latency_us.</p></div>"
        f'<div class="card"><h3>Histograms</h3>{histograms}</div>'
        f'<div class="card"><h3>Latency over time</h3>{over_time}</div>'
        f'<div class="card"><h3>Queueing and skips</h3>{queue}{skipped}</div></section>'
    )


def _risk_section(data: ReportData) -> str:
    risk, info = data.risk, data.info
    figure = figures.risk_figure(risk, info)
    chart = '<p class="note empty">No risk rejections and no breaker switches.</p>'
    if figure is not None:
        chart = _chart("risk", figure, f"Rejections per {duration(risk.window_ns)}, by reason.")
    reasons = reasons_table(risk) if risk.reasons else '<p class="note empty">No rejections.</p>'
    if risk.switches is None:
        breaker = (
            '<p class="note empty">Not recorded in this run (no breaker_switches.parquet).</p>'
        )
    elif risk.switches.height == 0:
        state = "enabled" if risk.breaker_enabled else "disabled in the configuration"
        breaker = f'<p class="note empty">No switches (breaker {state}).</p>'
    else:
        breaker = switches_table(risk.switches, ZoneInfo(info.time_zone))
    # a switches table needs the full width; two short notes sit side by side
    layout = "stack" if risk.switches is not None and risk.switches.height else "grid"
    return (
        f'<section id="risk"><h2>Risk</h2><div class="card">{chart}</div><div class="{layout}">'
        f'<div class="card"><h3>Rejections by reason</h3>{reasons}</div>'
        f'<div class="card"><h3>Circuit breaker switches</h3>{breaker}</div></div></section>'
    )


COMPARISON_COLUMNS: Final = (
    "scenario", "status", "n_events", "n_fills", "pnl", "pnl_vs_baseline", "fees",
    "max_drawdown", "n_rejections", "breaker_trips", "features_p99_us", "inference_p99_us",
    "tick_to_trade_p99_us",
)  # fmt: skip
SCENARIO_DETAILS: Final = (
    "description",
    "definition",
    "rejections",
    "injected",
    "faults",
    "digest",
)


def _stress_section(data: ReportData) -> str:
    """The comparison's headline columns as a table, then each scenario's definition and
    counts (JSON columns) in a collapsible block, so wide text never stretches the table."""
    frame = data.comparison
    if frame is None:
        return ""
    shown = frame.select([c for c in COMPARISON_COLUMNS if c in frame.columns])
    details = "".join(_scenario_details(row) for row in frame.iter_rows(named=True))
    return (
        '<section id="stress"><h2>Stress scenarios</h2><div class="card">'
        f"{frame_table(shown, 'comparison-table')}</div>"
        f'<div class="card"><h3>Scenario definitions and counts</h3>{details}</div></section>'
    )


def _scenario_details(row: dict[str, Any]) -> str:
    items = []
    for key in SCENARIO_DETAILS:
        text = row.get(key)
        if text in (None, "", "[]", "{}"):
            continue
        if key in ("definition", "rejections", "injected", "faults"):
            text = json.dumps(json.loads(str(text)), indent=1)
        items.append(f"<dt>{escape(key)}</dt><dd><pre>{escape(str(text))}</pre></dd>")
    return (
        f"<details><summary>{escape(str(row.get('scenario')))} "
        f"({escape(str(row.get('status')))})</summary><dl>{''.join(items)}</dl></details>"
    )


def _header(info: RunInfo, stress: bool) -> str:
    links = [("run", "Run"), ("pnl", "PnL"), ("latency", "Latency"), ("risk", "Risk")]
    links += [("stress", "Stress")] if stress else []
    nav = "".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in links)
    return (
        '<header class="top"><div class="bar">'
        f"<h1>{escape(info.strategy)} · {escape(info.session)}</h1>"
        f'<span class="sub">seed {info.seed} · digest {escape(info.digest[:12])}…</span>'
        f"<nav>{nav}</nav></div></header>"
    )


def render(data: ReportData) -> str:
    """The whole page for already-loaded run data."""
    body = (
        _run_section(data)
        + _pnl_section(data)
        + _latency_section(data)
        + _risk_section(data)
        + _stress_section(data)
    )
    info = data.info
    title = f"ticktape · {info.strategy} on {info.session}"
    footer = (
        f"ticktape report of {escape(str(info.run_dir))} · self-contained, works "
        "offline · times in the exchange's time zone unless marked UTC"
    )
    return document(title, _header(info, data.comparison is not None), body, footer)


def build_report_html(run_dir: Path) -> str:
    """The self-contained HTML report of the run in `run_dir` (DataError if incomplete)."""
    return render(load_report_data(Path(run_dir)))


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of `run_dir` to `out` (default: run_dir/report.html); return the path."""
    path = Path(run_dir) / REPORT_NAME if out is None else Path(out)
    html = build_report_html(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
