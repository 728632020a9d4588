"""The live dashboard: one rich renderable built from a `LiveView` (the CLI shows it)."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Group
from rich.table import Table

from simulator.live.run import LiveView
from simulator.live.session import SymbolRun


def _us(value: object) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def render(view: LiveView) -> Group:
    """Position and PnL, stage latency percentiles, feed health, per symbol."""
    trading = Table(title=f"ticktape live · {view.elapsed_s:,.0f} s", show_edge=False)
    for column in ("session", "events", "position", "PnL", "orders", "fills", "rejects",
                   "feed", "book"):  # fmt: skip
        trading.add_column(column, justify="right" if column != "session" else "left")
    latency = Table(title="latency (µs): p50 / p99 / p99.9", show_edge=False)
    latency.add_column("session")
    for column in ("recv→done", "features", "inference", "tick→trade", "feed lag ms p50/p99"):
        latency.add_column(column, justify="right")
    for run in view.runs:
        state, tables = run.engine.state, run.recorder.tables
        rejects = {name.lower(): n for name, n in tables.rejection_counts().items()}
        book = "-"
        synced = getattr(run.normalizer, "synced", None)
        if run.levels > 1 and synced is not None:
            book = "synced" if synced else "[yellow]syncing[/yellow]"
        pnl = run.portfolio.cash + state.position * state.mid if state.mid == state.mid else 0.0
        trading.add_row(
            str(run.key),
            f"{state.n_events:,}",
            f"{state.position:g}",
            f"{pnl:,.2f}",
            str(tables.n_orders),
            str(tables.n_fills),
            ", ".join(f"{k} {v}" for k, v in rejects.items()) or "0",
            "ok" if state.feed_ok else "[red]down[/red]",
            book,
        )
        done = run.engine.recv_to_done.summary()
        live = {stage: _recent(run, stage) for stage in ("features", "inference", "tick_to_trade")}
        lag50, lag99 = run.feed_latency_ms()
        latency.add_row(
            str(run.key),
            _triple(done),
            *(_triple(live[s]) for s in ("features", "inference", "tick_to_trade")),
            f"{lag50:,.1f} / {lag99:,.1f}" if math.isfinite(lag50) else "-",
        )
    stats, inbox = view.network.stats, view.inbox.stats
    health = Table(show_header=False, show_edge=False, box=None)
    health.add_row(
        "feed",
        f"frames {stats.frames:,} · reconnects {stats.reconnects} · rollovers {stats.rollovers}"
        f" · idle/dead-peer timeouts {stats.idle_timeouts}/{stats.dead_peer_timeouts}"
        f" · REST {stats.rest_requests} (429: {stats.rest_429})",
    )
    gaps = sum(getattr(getattr(r.normalizer, "stats", None), "gaps", 0) for r in view.runs)
    health.add_row(
        "inbox",
        f"waiting {len(view.inbox):,} (max {inbox.high_water:,}) · conflated quotes "
        f"{inbox.conflated:,} · overflow gaps {inbox.overflowed:,} · gaps {gaps}"
        f" · reading paused {inbox.pauses:,} times, {inbox.paused_s:,.1f} s"
        + (" (now)" if view.inbox.paused else ""),
    )
    return Group(trading, latency, health)


def _triple(summary: dict[str, float]) -> str:
    return " / ".join(_us(summary.get(k)) for k in ("p50_us", "p99_us", "p99.9_us"))


def _recent(run: SymbolRun, stage: str) -> dict[str, float]:
    """Percentiles of a stage over the events of the recorder's current chunk (the recent
    window; the run's histograms take a chunk only when it is full)."""
    filled = run.engine.filled_rows
    column = run.recorder.arrays[f"{stage}_ns"][:filled]
    values = np.asarray(column, dtype=np.float64)
    values = values[values >= 0]
    if values.size == 0:
        return run.recorder.histograms[stage].summary()
    p50, p99, p999 = np.percentile(values, (50, 99, 99.9)) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "p99.9_us": float(p999)}
