"""One sweep cell: a normal replay into its own run directory, and its row of results.

`run_cell` runs in whatever process the executor chose (the sweep's own, a local worker or
a Ray worker) and takes and returns plain picklable values only. It never raises for a
failing cell: the error becomes the row's status, so one bad cell never stops the sweep.
`cell.json`, written last and atomically, marks the cell done: a resumed sweep trusts a
cell directory only when its `cell.json` holds the same content key and status ok.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Final

from simulator.errors import SimulatorError
from simulator.settings import Settings

CELL_FILE: Final = "cell.json"
SUMMARY_FIELDS: Final = ("n_events", "n_orders", "n_fills", "n_rejections", "net_pnl",
                          "realized_pnl", "unrealized_pnl", "fees", "final_equity",
                          "max_drawdown")  # fmt: skip
LATENCY_FIELDS: Final = ("tick_to_trade_p50_us", "tick_to_trade_p99_us")
OK: Final = "ok"

Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class CellJob:
    """Everything a worker needs for one cell (plain values: it crosses process boundaries)."""

    index: int
    session: str
    data_dir: str
    config: Settings
    seed: int
    out_dir: str
    key: str
    reports: bool = False
    labels: Row = field(default_factory=dict)
    """The row's identifying columns: session, one per grid key, latency_scale."""


def run_cell(job: CellJob) -> Row:
    """Replay the cell; return its row (status ok or failed: ...) after writing cell.json."""
    from simulator.runtime import replay  # here: a spawned worker imports what it runs
    from simulator.session import resolve_session

    started = perf_counter()
    out_dir = Path(job.out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)  # a half-written cell of an interrupted sweep
    row: Row = {"index": job.index, "cell": out_dir.name, **job.labels}
    try:
        ref = resolve_session(job.session, Path(job.data_dir))
        result = replay(ref, job.config, out_dir=out_dir, seed=job.seed)
        if job.reports:
            from simulator.report import write_report

            write_report(out_dir)
        row.update(result_fields(result.manifest), status=OK)
    except SimulatorError as e:
        row.update(status=failed(e))
    except Exception as e:  # a bug in one cell (a user's plug-in, say) fails that cell only
        row.update(status=failed(e))
    row["wall_s"] = perf_counter() - started
    row["key"] = job.key
    out_dir.mkdir(parents=True, exist_ok=True)
    write_cell_file(out_dir, row)
    return row


def failed_row(job: CellJob, why: str) -> Row:
    """The row of a cell that could not even report (its process died)."""
    row: Row = {"index": job.index, "cell": Path(job.out_dir).name, **job.labels,
                "status": f"failed: {why}", "key": job.key}  # fmt: skip
    return row


def failed(error: BaseException) -> str:
    return f"failed: {type(error).__name__}: {' '.join(str(error).split())}"


def result_fields(manifest: dict[str, object]) -> Row:
    summary, latency = manifest["summary"], manifest["latency_us"]
    if not isinstance(summary, dict) or not isinstance(latency, dict):
        raise SimulatorError("the run manifest lacks its summary or latency_us")
    row: Row = {name: summary[name] for name in SUMMARY_FIELDS}
    row["tick_to_trade_p50_us"] = latency["tick_to_trade"]["p50_us"]
    row["tick_to_trade_p99_us"] = latency["tick_to_trade"]["p99_us"]
    row["digest"] = summary["digest"]
    return row


def write_cell_file(out_dir: Path, row: Row) -> None:
    partial = out_dir / f"{CELL_FILE}.tmp"
    partial.write_text(json.dumps(row, indent=2, sort_keys=True) + "\n")
    partial.replace(out_dir / CELL_FILE)


def read_cell_file(out_dir: Path, key: str) -> Row | None:
    """The row in the cell's cell.json when it holds this content key (any status)."""
    path = out_dir / CELL_FILE
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged marker: the cell simply runs again
    return row if isinstance(row, dict) and row.get("key") == key else None


def finished_row(out_dir: Path, key: str) -> Row | None:
    """The row of a cell already done with this content key, else None."""
    row = read_cell_file(out_dir, key)
    return row if row is not None and row.get("status") == OK else None
