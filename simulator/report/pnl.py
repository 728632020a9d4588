"""PnL figures of a run: equity, drawdown, position, fees, fills on the mid price, statistics.

Lines are computed on every event and only then downsampled for display (`m4_indices`, or
`M4Stream` on the same points when decisions are read batch by batch); the statistics come
from the manifest (what the engine measured) or from the full tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.report.batches import column_batches
from simulator.report.downsample import FiniteSpan, M4Stream, m4_indices, window_ns
from simulator.report.format import ValueKind

MAX_MARKERS: Final = 1_000
"""Fill markers per side before fills are merged into one marker per time window. Each SVG
marker costs the browser ~0.15 ms to draw (6,400 GOOG fills: 1 s of the page's load)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """A display series: UTC ns timestamps and values, already downsampled."""

    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    @classmethod
    def downsampled(cls, ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> Line:
        keep = m4_indices(ts, values)
        return cls(ts=ts[keep], values=values[keep])


Series = tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[np.float64]]]
"""One batch of display series: timestamps and each series' values at them."""


def downsampled_lines(read: Callable[[], Iterable[Series]]) -> dict[str, Line]:
    """Every series `read()` yields, downsampled as Line.downsampled would on the whole series,
    in two passes over the batches (placing the buckets, then filling them)."""
    spans: dict[str, FiniteSpan] = {}
    for ts, series in read():
        for name, values in series.items():
            spans.setdefault(name, FiniteSpan()).add(ts, values)
    streams = {name: M4Stream(span) for name, span in spans.items()}
    for ts, series in read():
        for name, values in series.items():
            streams[name].add(ts, values)
    lines = {}
    for name, stream in streams.items():
        ts, values = stream.result()
        lines[name] = Line(ts=ts, values=values)
    return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class FillMarkers:
    """Fills of one side; one marker per fill, or per `window_ns` when there are many."""

    side: int  # 1 buy, -1 sell
    ts: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]  # the fill price, or the window's volume-weighted price
    qty: npt.NDArray[np.float64]
    fee: npt.NDArray[np.float64]
    n_fills: npt.NDArray[np.int64]
    window_ns: int | None  # None: one marker per fill
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat:
    """One row of the PnL statistics table; `key` is the manifest summary key where there is one."""

    key: str
    label: str
    value: float
    kind: ValueKind
    unit: str
    source: str  # where the number comes from, shown as a tooltip


@dataclass(frozen=True, slots=True, kw_only=True)
class PnlData:
    equity: Line
    drawdown: Line
    position: Line
    fees: Line
    mid: Line | None
    mid_note: str  # where the mid came from, or why there is none
    buys: FillMarkers
    sells: FillMarkers
    stats: tuple[Stat, ...]


def drawdown(equity: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Peak-to-current equity loss per event, the peak starting at 0 as the engine's does.

    The same float operations as the engine (peak - equity), so its maximum equals the
    manifest's max_drawdown exactly.
    """
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    return peak - equity


def decision_series(path: Path) -> Iterator[Series]:
    """Equity, drawdown and position of decisions.parquet, batch by batch; the drawdown's
    running peak carries across batches (the same maxima as `drawdown` on the whole column)."""
    peak = 0.0
    for batch in column_batches(path, ("ts_recv", "equity", "position")):
        equity = batch["equity"].astype(np.float64)
        running = np.maximum.accumulate(np.maximum(equity, peak))
        if running.size:
            peak = float(running[-1])
        yield (
            batch["ts_recv"].astype(np.int64),
            {
                "equity": equity,
                "drawdown": running - equity,
                "position": batch["position"].astype(np.float64),
            },
        )


def cumulative_fees(
    fills: pl.DataFrame, ts_first: int, ts_last: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Fees paid so far as a step series from the first to the last event of the run."""
    ts = fills.get_column("ts_recv").to_numpy().astype(np.int64)
    fees = np.cumsum(fills.get_column("fee").to_numpy().astype(np.float64))
    total = float(fees[-1]) if fees.size else 0.0
    end = int(np.max(ts, initial=ts_last))  # a late fill report may follow the last event
    return np.concatenate([[ts_first], ts, [end]]), np.concatenate([[0.0], fees, [total]])


def fill_markers(fills: pl.DataFrame, side: int, max_markers: int = MAX_MARKERS) -> FillMarkers:
    """One side's fills as markers; above `max_markers`, one per time window at the VWAP."""
    own = fills.filter(pl.col("side") == side)
    window: int | None = None
    if own.height > max_markers:
        ts = own.get_column("ts_recv").to_numpy()
        window = window_ns(int(ts[-1]) - int(ts[0]), max_markers)
        own = (
            own.group_by((pl.col("ts_recv") // window).alias("window"), maintain_order=True)
            .agg(
                pl.col("ts_recv").first(),
                ((pl.col("px") * pl.col("qty")).sum() / pl.col("qty").sum()).alias("px"),
                pl.col("qty").sum(),
                pl.col("fee").sum(),
                pl.len().alias("n"),
            )
            .sort("ts_recv")
        )
    else:
        own = own.with_columns(pl.lit(1, pl.Int64).alias("n"))
    return FillMarkers(
        side=side,
        ts=own.get_column("ts_recv").to_numpy().astype(np.int64),
        price=own.get_column("px").to_numpy().astype(np.float64),
        qty=own.get_column("qty").to_numpy().astype(np.float64),
        fee=own.get_column("fee").to_numpy().astype(np.float64),
        n_fills=own.get_column("n").to_numpy().astype(np.int64),
        window_ns=window,
        total=int((fills.get_column("side") == side).sum()),
    )


def round_trips(fills: pl.DataFrame) -> npt.NDArray[np.float64]:
    """Net PnL (fees included) of each flat-to-flat round trip, in fill order.

    A trip ends where the running position is exactly 0.0; np.cumsum adds in fill order, as
    the portfolio does, so 'exactly' matches the portfolio's own flat test. A position still
    open at the end is not a trip.
    """
    side = fills.get_column("side").to_numpy().astype(np.float64)
    signed = side * fills.get_column("qty").to_numpy().astype(np.float64)
    cash = -signed * fills.get_column("px").to_numpy() - fills.get_column("fee").to_numpy()
    flat = np.flatnonzero(np.cumsum(signed) == 0.0)
    if flat.size == 0:
        return np.zeros(0, dtype=np.float64)
    starts = np.concatenate([[0], flat[:-1] + 1])
    return np.add.reduceat(cash[: flat[-1] + 1], starts).astype(np.float64)


SUMMARY_ROWS: Final[tuple[tuple[str, str, ValueKind, str], ...]] = (
    ("net_pnl", "Net PnL (after fees)", "money", "quote ccy"),
    ("final_equity", "Final equity", "money", "quote ccy"),
    ("realized_pnl", "Realized PnL", "money", "quote ccy"),
    ("unrealized_pnl", "Unrealized PnL", "money", "quote ccy"),
    ("fees", "Fees", "money", "quote ccy"),
    ("max_drawdown", "Max drawdown", "money", "quote ccy"),
    ("final_position", "Final position", "quantity", "units"),
    ("n_orders", "Orders", "count", "orders"),
    ("n_fills", "Fills", "count", "fills"),
    ("n_rejections", "Risk rejections", "count", "orders"),
    ("breaker_trips", "Breaker trips", "count", "trips"),
)
"""Manifest summary keys shown in the statistics table, in order: (key, label, kind, unit)."""


def statistics(summary: dict[str, float], fills: pl.DataFrame) -> tuple[Stat, ...]:
    """The manifest's summary figures, then figures derived from the full fills table."""
    rows = [
        Stat(
            key=key,
            label=label,
            value=float(summary[key]),
            kind=kind,
            unit=unit,
            source=f"manifest.json summary.{key}",
        )
        for key, label, kind, unit in SUMMARY_ROWS
        if key in summary
    ]
    trips = round_trips(fills)
    derived: list[tuple[str, str, float, ValueKind, str]] = [
        ("volume", "Traded volume", float(fills.get_column("qty").sum()), "quantity", "units"),
        ("round_trips", "Round trips (flat to flat)", float(trips.size), "count", "trips"),
    ]
    for liquidity in ("maker", "taker"):  # resting orders' fills vs taking the book
        own = fills.filter(pl.col("liquidity") == liquidity)
        label = "Maker" if liquidity == "maker" else "Taker"
        derived.append(
            (f"{liquidity}_fills", f"{label} fills", float(own.height), "count", "fills")
        )
        fee = float(own.get_column("fee").sum())
        derived.append(
            (f"{liquidity}_fees", f"{label} fees (< 0: rebates)", fee, "money", "quote ccy")
        )
    if trips.size:
        hit_rate = float((trips > 0).mean())
        derived.append(
            ("hit_rate", "Hit rate (winning trips, net of fees)", hit_rate, "percent", "of trips")
        )
    rows += [
        Stat(
            key=key,
            label=label,
            value=number,
            kind=kind,
            unit=unit,
            source="computed from fills.parquet",
        )
        for key, label, number, kind, unit in derived
    ]
    return tuple(rows)


def pnl_data(
    decisions: Path,
    span: tuple[int, int],
    fills: pl.DataFrame,
    summary: dict[str, float],
    mid: tuple[Line | None, str],
) -> PnlData:
    """Every PnL figure of the run from its decisions (read in batches; `span`: the first and
    last event's ts_recv), fills and manifest summary."""
    lines = downsampled_lines(lambda: decision_series(decisions))
    fee_ts, fees = cumulative_fees(fills, *span)
    return PnlData(
        equity=lines["equity"],
        drawdown=lines["drawdown"],
        position=lines["position"],
        fees=Line.downsampled(fee_ts, fees),
        mid=mid[0],
        mid_note=mid[1],
        buys=fill_markers(fills, 1),
        sells=fill_markers(fills, -1),
        stats=statistics(summary, fills),
    )
