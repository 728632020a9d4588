"""Several sessions replayed one after the other, each on its own: the aggregate summary.

Every session starts flat, with no cash, fresh features and a fresh model state: positions
do not carry over from one session to the next (a session is a day or a recording; the gap
between two is not traded). Each run has its own run directory under the output directory;
`summary.json` beside them holds one row per session and the totals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from simulator import runtime
from simulator.errors import InvariantViolation
from simulator.session import SessionRef
from simulator.settings import Settings

SUMMARY_FILE: Final = "summary.json"
INDEPENDENCE: Final = (
    "each session is replayed independently: positions, cash, features and model state "
    "start fresh and do not carry over"
)
SUMMED: Final = ("n_events", "n_orders", "n_fills", "n_rejections", "net_pnl", "realized_pnl",
                 "unrealized_pnl", "fees", "final_equity")  # fmt: skip
"""Totals add these up; max_drawdown's total is the worst session's (drawdowns of separate
accounts do not add)."""


@dataclass(frozen=True, slots=True)
class SessionRun:
    session: str
    run_dir: Path
    manifest: dict[str, object]


def replay_into(
    ref: SessionRef,
    config: Settings,
    out_root: Path,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SessionRun:
    """Replay one session from scratch into its own `out_root/<run-id>/`."""
    out_dir = runtime.unique_dir(out_root, runtime.run_id(config, ref, seed))
    result = runtime.replay(ref, config, out_dir=out_dir, seed=seed, progress=progress)
    return SessionRun(ref.name, out_dir, result.manifest)


def session_row(run: SessionRun) -> dict[str, object]:
    """One session's line of the aggregate: its summary figures, digest and run directory."""
    summary = run.manifest["summary"]
    if not isinstance(summary, dict):
        raise InvariantViolation("a run manifest's summary must be a dict")
    row: dict[str, object] = {"session": run.session}
    row.update({key: summary[key] for key in (*SUMMED, "max_drawdown", "final_position")})
    row["digest"] = summary["digest"]
    row["run_dir"] = str(run.run_dir)
    return row


def totals(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {"sessions": len(rows)}
    for key in SUMMED:
        out[key] = sum(_number(row[key]) for row in rows)
    out["max_drawdown"] = max((_number(row["max_drawdown"]) for row in rows), default=0.0)
    return out


def aggregate(rows: Sequence[dict[str, object]], *, strategy: str, seed: int) -> dict[str, object]:
    return {
        "strategy": strategy,
        "seed": seed,
        "independent": INDEPENDENCE,
        "sessions": list(rows),
        "totals": totals(rows),
    }


def write_summary(out_root: Path, summary: dict[str, object]) -> Path:
    path = out_root / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvariantViolation(f"summary figure {value!r} is not a number")
    return value
