"""HTML tables of the report. Every number cell carries its exact value in `data-value` and
its manifest key in `data-key`, so a test (or a reader's script) can check a shown figure
against the run without parsing formatted text."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from html import escape
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from simulator.recording import STAGES
from simulator.report.data import RiskData, RunInfo
from simulator.report.format import ValueKind, count, local_time, utc_time, value
from simulator.report.latency import StageHistogram
from simulator.report.pnl import Stat

PERCENTILE_COLUMNS: Final[tuple[tuple[str, str, ValueKind], ...]] = (
    ("count", "calls", "count"),
    ("mean_us", "mean", "micros"),
    ("p50_us", "p50", "micros"),
    ("p90_us", "p90", "micros"),
    ("p99_us", "p99", "micros"),
    ("p99.9_us", "p99.9", "micros"),
    ("max_us", "max", "micros"),
)
"""Columns of the percentile table: (manifest latency_us key, header, kind)."""
MAX_TABLE_ROWS: Final = 2_000


def number_cell(kind: ValueKind, number: float, key: str = "", title: str = "") -> str:
    """A right-aligned number: the formatted text, the exact value in data-value."""
    attrs = f' data-key="{escape(key)}"' if key else ""
    attrs += f' title="{escape(title)}"' if title else ""
    sign = " neg" if kind == "money" and round(number, 2) < 0 else ""
    return f'<td class="num{sign}" data-value="{number!r}"{attrs}>{value(kind, number)}</td>'


def table(
    head: Sequence[str],
    rows: Iterable[str],
    *,
    table_id: str = "",
    numeric: Collection[int] = (),
) -> str:
    """`rows` are ready <tr> strings; the headers of `numeric` columns align right."""
    cells = "".join(
        f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(head)
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def key_value_table(
    rows: Iterable[tuple[str, str]], *, table_id: str = "", mono: bool = False
) -> str:
    """Label and value rows; a newline in a value starts a new line."""
    cls = ' class="mono"' if mono else ""
    body = "".join(
        f"<tr><th>{escape(k)}</th><td{cls}>{escape(v).replace(chr(10), '<br>')}</td></tr>"
        for k, v in rows
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f'<table class="kv"{ident}><tbody>{body}</tbody></table>'


def stats_table(stats: Sequence[Stat], table_id: str) -> str:
    rows = (
        f'<tr data-key="{escape(s.key)}"><th>{escape(s.label)}</th>'
        f"{number_cell(s.kind, s.value, s.key, s.source)}"
        f'<td class="unit">{escape(s.unit)}</td></tr>'
        for s in stats
    )
    return table(("", "value", "unit"), rows, table_id=table_id, numeric=(1,))


def percentile_table(stages: Sequence[StageHistogram]) -> str:
    by_stage = {h.stage: h for h in stages}
    rows = []
    for stage in STAGES:
        summary = by_stage[stage].summary
        cells = "".join(number_cell(kind, summary[key], key) for key, _, kind in PERCENTILE_COLUMNS)
        rows.append(f'<tr data-stage="{stage}"><th>{escape(stage)}</th>{cells}</tr>')
    head = (
        "stage",
        *(
            f"{header} (µs)" if kind == "micros" else header
            for _, header, kind in PERCENTILE_COLUMNS
        ),
    )
    return table(head, rows, table_id="latency-table", numeric=range(1, len(head)))


def run_table(info: RunInfo) -> str:
    zone = ZoneInfo(info.time_zone)
    rows = [
        ("session", info.session),
        (
            "strategy",
            f"{info.strategy} — {info.description}" if info.description else info.strategy,
        ),
        ("seed", str(info.seed)),
        ("events", count(info.n_events)),
        ("first event", f"{local_time(info.ts_first, zone)}\n{utc_time(info.ts_first)}"),
        ("last event", f"{local_time(info.ts_last, zone)}\n{utc_time(info.ts_last)}"),
        ("exchange time zone", info.time_zone),
        ("digest (sha256)", info.digest),
        ("run directory", str(info.run_dir)),
    ]
    return key_value_table(rows, table_id="run-table")


def timings_table(timings: dict[str, float]) -> str:
    labels = {
        "load_s": ("loading", "s"),
        "run_s": ("event loop", "s"),
        "events_per_s": ("throughput", "events/s"),
    }
    rows = []
    ordered = [(k, timings[k]) for k in labels if k in timings]
    ordered += [(k, v) for k, v in timings.items() if k not in labels]
    for key, number in ordered:
        label, unit = labels.get(key, (key, ""))
        shown = f"{number:,.0f}" if unit == "events/s" else f"{number:,.3f}"
        rows.append(
            f'<tr data-key="{escape(key)}"><th>{escape(label)}</th>'
            f'<td class="num" data-value="{number!r}">{shown}</td>'
            f'<td class="unit">{unit}</td></tr>'
        )
    return table(("", "value", "unit"), rows, table_id="timings-table", numeric=(1,))


def data_files_table(info: RunInfo) -> str:
    rows = []
    for f in info.data_files:
        state = "ok" if f.status == "sha256 verified" else "warn"
        rows.append(
            f"<tr><td class=mono>{escape(f.recorded)}</td><td class=mono>{escape(f.sha256)}</td>"
            f'<td><span class="badge {state}">{escape(f.status)}</span></td></tr>'
        )
    return table(("file", "sha256", "on disk now"), rows, table_id="data-files")


def reasons_table(risk: RiskData) -> str:
    total = max(risk.n_rejections, 1)
    rows = (
        f'<tr data-key="{escape(r.reason)}"><th>{escape(r.reason)}</th>'
        f"{number_cell('count', r.total)}{number_cell('percent', r.total / total)}</tr>"
        for r in risk.reasons
    )
    return table(("reason", "rejections", "share"), rows, table_id="reasons-table", numeric=(1, 2))


def switches_table(switches: pl.DataFrame, zone: ZoneInfo) -> str:
    """Every switch, up to MAX_TABLE_ROWS."""
    rows = [
        f'<tr><td class="time">{escape(local_time(ts, zone))}</td>'
        f'<td class="time">{escape(utc_time(ts))}</td>{number_cell("count", event)}'
        f"<td>{escape(state)}</td><td>{escape(reason)}</td></tr>"
        for ts, event, state, reason in switches.head(MAX_TABLE_ROWS).iter_rows()
    ]
    return table(
        ("time (exchange)", "time (UTC)", "event", "state", "reason"),
        rows,
        table_id="breaker-table",
        numeric=(2,),
    ) + _cut_note(switches.height)


def _any_cell(item: object) -> str:
    if isinstance(item, float):
        return number_cell("money", item)
    if isinstance(item, int) and not isinstance(item, bool):
        return number_cell("count", item)
    return f"<td>{'' if item is None else escape(str(item))}</td>"


def frame_table(frame: pl.DataFrame, table_id: str) -> str:
    """Any table (the stress comparison): floats with 2 decimals, integers counted, the rest
    as text; the first MAX_TABLE_ROWS rows."""
    rows = [
        f"<tr>{''.join(_any_cell(item) for item in row)}</tr>"
        for row in frame.head(MAX_TABLE_ROWS).iter_rows()
    ]
    numeric = [i for i, dtype in enumerate(frame.dtypes) if dtype.is_numeric()]
    return table(frame.columns, rows, table_id=table_id, numeric=numeric) + _cut_note(frame.height)


def _cut_note(n_rows: int) -> str:
    if n_rows <= MAX_TABLE_ROWS:
        return ""
    return f'<p class="note">First {MAX_TABLE_ROWS:,} of {n_rows:,} rows shown.</p>'
