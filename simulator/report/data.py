"""Load a run directory into everything the report shows: pure, no HTML.

`load_report_data(run_dir)` validates the directory once (DataError naming each missing file,
manifest key or column), then computes the figures' data with polars/numpy on the full
tables. Display series are downsampled (see downsample.py); tables and statistics never are.
The per-event tables (decisions, the session's quotes) are read in batches (batches.py), so
the report's memory stays bounded whatever the length of the run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.errors import DataError
from simulator.recording import TIMING_COLUMNS
from simulator.report.batches import column_batches, row_count
from simulator.report.downsample import window_ns
from simulator.report.latency import LatencyData, latency_data
from simulator.report.pnl import Line, PnlData, Series, downsampled_lines, pnl_data
from simulator.store import file_sha256
from simulator.types import RejectReason

RUN_FILES: Final[dict[str, tuple[str, ...]]] = {
    "decisions.parquet": ("ts_recv", "equity", "position", *TIMING_COLUMNS),
    "fills.parquet": ("side", "px", "qty", "fee", "ts_recv", "liquidity"),
    "orders.parquet": ("order_id",),
    "risk_rejections.parquet": ("ts", "reason"),
    "latency_histograms.parquet": ("stage", "bucket", "count"),
}
"""Parquet files a replay writes and the columns the report reads from each."""
BREAKER_COLUMNS: Final = ("ts", "event_index", "state", "reason")
MANIFEST_KEYS: Final = (
    "session",
    "strategy",
    "config",
    "seed",
    "data_files",
    "versions",
    "time_zone",
    "timings",
    "latency_us",
    "summary",
    "digest",
)
SUMMARY_KEYS: Final = (
    "n_events",
    "n_orders",
    "n_fills",
    "n_rejections",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "final_position",
    "final_equity",
    "max_drawdown",
)
MAX_RISK_WINDOWS: Final = 300
QUOTE_COLUMN_SETS: Final = (("bid_px", "ask_px"), ("bid_px_0", "ask_px_0"))
"""Best bid/ask columns of a quotes file, then of a book file (quotes preferred: fewer bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataFile:
    recorded: str  # the path as the manifest recorded it
    sha256: str
    path: Path | None  # where it was found, None when not found
    status: str  # "sha256 verified", "sha256 differs" or "not found"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    run_dir: Path
    session: str
    strategy: str
    description: str
    seed: int
    digest: str
    time_zone: str
    ts_first: int
    ts_last: int
    n_events: int
    config: tuple[tuple[str, str], ...]  # (section.key, value), in file order
    data_files: tuple[DataFile, ...]
    versions: dict[str, str]
    timings: dict[str, float]
    source_checks: tuple[tuple[str, str, int], ...]  # (file, check, count), non-zero only


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasonCounts:
    reason: str  # a RejectReason name
    ts: npt.NDArray[np.int64]  # window starts with at least one rejection, UTC ns
    counts: npt.NDArray[np.int64]
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskData:
    window_ns: int
    reasons: tuple[ReasonCounts, ...]  # most frequent first
    n_rejections: int
    breaker_enabled: bool
    switches: pl.DataFrame | None  # None: the run predates breaker_switches.parquet


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    info: RunInfo
    pnl: PnlData
    latency: LatencyData
    risk: RiskData
    comparison: pl.DataFrame | None  # stress runs only


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json after checking that the run dir is complete (DataError names the gaps)."""
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory; `ticktape replay` writes one")
    missing = [name for name in ("manifest.json", *RUN_FILES) if not (run_dir / name).exists()]
    if missing:
        raise DataError(
            f"{run_dir}: incomplete run directory, missing {', '.join(missing)}; "
            "replay the session again (`ticktape replay SESSION --strategy NAME --out DIR`)"
        )
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{run_dir / 'manifest.json'}: not valid JSON ({e})") from e
    absent = [key for key in MANIFEST_KEYS if key not in manifest]
    absent += [f"summary.{k}" for k in SUMMARY_KEYS if k not in manifest.get("summary", {})]
    if absent:
        raise DataError(f"{run_dir / 'manifest.json'}: missing {', '.join(absent)}")
    return dict(manifest)


def scan_run_file(run_dir: Path, name: str, columns: tuple[str, ...]) -> pl.LazyFrame:
    """A run Parquet file, lazily; DataError when it lacks a column the report reads."""
    frame = pl.scan_parquet(run_dir / name)
    try:
        present = set(frame.collect_schema().names())
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{run_dir / name}: not a readable Parquet file ({e})") from e
    lacking = [c for c in columns if c not in present]
    if lacking:
        raise DataError(f"{run_dir / name}: missing column(s) {', '.join(lacking)}")
    return frame


def flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """('section.key', 'value') rows of a nested configuration, lists as comma lists."""
    rows: list[tuple[str, str]] = []
    for key, item in config.items():
        if isinstance(item, dict):
            rows += flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list):
            rows.append((f"{prefix}{key}", ", ".join(map(str, item)) or "[]"))
        elif isinstance(item, bool):
            rows.append((f"{prefix}{key}", str(item).lower()))
        else:
            rows.append((f"{prefix}{key}", str(item)))
    return rows


def data_file(recorded: str, sha256: str, run_dir: Path) -> DataFile:
    """Find a session file the run read (as recorded: absolute, or relative to where the
    replay ran, often an ancestor of the run dir) and check it is still the same bytes."""
    given = Path(recorded)
    candidates = (
        [given] if given.is_absolute() else [given, *(p / given for p in run_dir.resolve().parents)]
    )
    for path in candidates:
        if path.is_file():
            same = file_sha256(path) == sha256
            status = "sha256 verified" if same else "sha256 differs"
            return DataFile(recorded=recorded, sha256=sha256, path=path, status=status)
    return DataFile(recorded=recorded, sha256=sha256, path=None, status="not found")


def _mid_series(path: Path, bid: str, ask: str) -> Iterator[Series]:
    """(best bid + best ask) / 2 of the rows where both are positive, batch by batch."""
    for batch in column_batches(path, ("ts_recv", bid, ask)):
        bids, asks = batch[bid].astype(np.float64), batch[ask].astype(np.float64)
        both = (bids > 0) & (asks > 0)  # a null (NaN) side is not > 0
        yield batch["ts_recv"][both].astype(np.int64), {"mid": (bids[both] + asks[both]) / 2}


def mid_line(files: tuple[DataFile, ...]) -> tuple[Line | None, str]:
    """Mid price ((best bid + best ask) / 2) of the run's own quotes or book, with a note."""
    for bid, ask in QUOTE_COLUMN_SETS:
        for file in files:
            if file.path is None or file.status != "sha256 verified":
                continue
            path = file.path
            if not {bid, ask, "ts_recv"} <= set(pl.scan_parquet(path).collect_schema().names()):
                continue
            lines = downsampled_lines(functools.partial(_mid_series, path, bid, ask))
            mid = lines.get("mid", Line(ts=np.zeros(0, np.int64), values=np.zeros(0)))
            return mid, f"mid = ({bid} + {ask}) / 2 from {file.recorded}"
    states = "; ".join(f"{f.recorded}: {f.status}" for f in files) or "no data files recorded"
    return None, f"no mid price: no verified quotes or book file among the run's data ({states})"


def run_info(run_dir: Path, manifest: dict[str, Any], ts_first: int, ts_last: int) -> RunInfo:
    config = manifest["config"]
    checks = [
        (name, check, int(n))
        for name, counts in manifest.get("source_checks", {}).items()
        for check, n in counts.items()
        if n
    ]
    return RunInfo(
        run_dir=run_dir,
        session=str(manifest["session"]),
        strategy=str(manifest["strategy"]),
        description=str(config.get("strategy", {}).get("description", "")),
        seed=int(manifest["seed"]),
        digest=str(manifest["digest"]),
        time_zone=str(manifest["time_zone"]),
        ts_first=ts_first,
        ts_last=ts_last,
        n_events=int(manifest["summary"]["n_events"]),
        config=tuple(flatten(config)),
        data_files=tuple(
            data_file(path, sha, run_dir) for path, sha in manifest["data_files"].items()
        ),
        versions={str(k): str(v) for k, v in manifest["versions"].items()},
        timings={str(k): float(v) for k, v in manifest["timings"].items()},
        source_checks=tuple(checks),
    )


def reason_name(code: int | str) -> str:
    """A rejection reason as stored: by name (runs since named reasons) or by built-in code."""
    if isinstance(code, str):
        return code
    try:
        return RejectReason(code).name
    except ValueError:  # a reason code newer than this RejectReason: still shown, by number
        return f"reason {code}"


def risk_data(
    rejections: pl.DataFrame, span_ns: int, breaker_enabled: bool, switches: pl.DataFrame | None
) -> RiskData:
    """Rejections per reason and time window (most frequent reason first), breaker switches."""
    window = window_ns(span_ns, MAX_RISK_WINDOWS)
    binned = (
        rejections.group_by("reason", (pl.col("ts") // window * window).alias("window"))
        .agg(pl.len().alias("n"))
        .sort("window")
    )
    totals = binned.group_by("reason").agg(pl.col("n").sum())
    reasons = []
    for code in totals.sort(["n", "reason"], descending=[True, False]).get_column("reason"):
        rows = binned.filter(pl.col("reason") == code)
        counts = rows.get_column("n").to_numpy().astype(np.int64)
        reasons.append(
            ReasonCounts(
                reason=reason_name(code if isinstance(code, str) else int(code)),
                ts=rows.get_column("window").to_numpy().astype(np.int64),
                counts=counts,
                total=int(counts.sum()),
            )
        )
    return RiskData(
        window_ns=window,
        reasons=tuple(reasons),
        n_rejections=rejections.height,
        breaker_enabled=breaker_enabled,
        switches=switches,
    )


def check_counts(run_dir: Path, summary: dict[str, Any], tables: dict[str, int]) -> None:
    """Row counts must equal the manifest's: a mismatch means files of different runs."""
    for name, key in (
        ("fills", "n_fills"),
        ("orders", "n_orders"),
        ("risk_rejections", "n_rejections"),
        ("decisions", "n_events"),
    ):
        if tables[name] != int(summary[key]):
            raise DataError(
                f"{run_dir / (name + '.parquet')} has {tables[name]:,} rows but manifest.json "
                f"summary.{key} is {int(summary[key]):,}; the files come from different runs"
            )
    if tables["decisions"] == 0:
        raise DataError(f"{run_dir / 'decisions.parquet'}: the run has no events to report")


def optional_table(run_dir: Path, name: str, columns: tuple[str, ...]) -> pl.DataFrame | None:
    """A table only some runs have (older runs, stress runs); None when absent."""
    if not (run_dir / name).exists():
        return None
    return scan_run_file(run_dir, name, columns).collect()


def _first_last_ts(decisions: Path) -> tuple[int, int]:
    """ts_recv of the first and the last event (decisions are in receive order)."""
    first = last = None
    for batch in column_batches(decisions, ("ts_recv",)):
        ts = batch["ts_recv"]
        if ts.size:
            first = int(ts[0]) if first is None else first
            last = int(ts[-1])
    if first is None or last is None:
        raise DataError(f"{decisions}: the run has no events to report")
    return first, last


def load_report_data(run_dir: Path) -> ReportData:
    """Everything the report shows about the run in `run_dir`."""
    manifest = load_manifest(run_dir)
    summary, config = manifest["summary"], manifest["config"]
    lazy = {name: scan_run_file(run_dir, name, cols) for name, cols in RUN_FILES.items()}
    decisions = run_dir / "decisions.parquet"
    fills = lazy["fills.parquet"].collect()
    rejections = lazy["risk_rejections.parquet"].collect()
    rows = {"fills": fills.height, "risk_rejections": rejections.height,
            "orders": row_count(run_dir / "orders.parquet"),
            "decisions": row_count(decisions)}  # fmt: skip
    check_counts(run_dir, summary, rows)
    ts_first, ts_last = _first_last_ts(decisions)
    info = run_info(run_dir, manifest, ts_first, ts_last)
    histograms = lazy["latency_histograms.parquet"].collect()
    breaker = bool(config.get("breaker", {}).get("enabled", False))
    switches = optional_table(run_dir, "breaker_switches.parquet", BREAKER_COLUMNS)
    return ReportData(
        info=info,
        pnl=pnl_data(decisions, (ts_first, ts_last), fills, summary, mid_line(info.data_files)),
        latency=latency_data(decisions, histograms, ts_last - ts_first, summary),
        risk=risk_data(rejections, ts_last - ts_first, breaker, switches),
        comparison=optional_table(run_dir, "comparison.parquet", ()),
    )
