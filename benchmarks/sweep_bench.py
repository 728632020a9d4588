"""Benchmark: what a sweep costs beyond its replays, how it scales with workers, and the
memory of the sweep's own process (not a test).

1. Per-cell overhead: many tiny cells (a few thousand events of obi_mlp, ONNX) on a pool.
   In each cell, `wall_s - load_s - run_s` is the cost around the replay (session lookup,
   model load and warm-up happen in load_s and are reported apart); the pool's start (process
   spawn and imports, paid once per worker) is the time to the first finished cell.
2. Scaling: 8 cells of --events quotes each (obi_mlp) on a pool of 1 and a pool of 2,
   interleaved for --rounds rounds (medians and each round), then once in this process.
3. The sweep's parent: its peak RSS (this process is the parent of every sweep above, so its
   ru_maxrss covers them all), with --many tiny cells, and first with --plan cells planned,
   keyed, built into jobs and written to results.parquet without running (the parent's own
   cost per cell).

    python benchmarks/sweep_bench.py [--events 200000] [--many 200]

Prints one JSON object per measurement. Results depend on the host: on a shared machine run
it alone and say how many cores were free.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from simulator.config import load_strategy
from simulator.sources.synthetic import write_synthetic_session
from simulator.sweep import GridAxis, PoolExecutor, SerialExecutor, Sweep, SweepSpec
from simulator.sweep.cell import CellJob, Row
from simulator.sweep.executors import Executor


def _spec(data: Path, session: str, thresholds: list[str], strategy: str) -> SweepSpec:
    return SweepSpec(
        sessions=(session,),
        data_dir=data,
        config=load_strategy(strategy),
        axes=(GridAxis("policy.threshold", tuple(thresholds)),),
    )


def _thresholds(n: int) -> list[str]:
    return [f"{0.01 + i * 0.4 / n:.6f}" for i in range(n)]


def _timed(
    spec: SweepSpec, out: Path, executor: Executor
) -> tuple[float, float, list[dict[str, float]]]:
    """Sweep wall seconds, seconds to the first finished cell, and the cells' manifests."""
    started = time.perf_counter()
    first: list[float] = []

    def on_row(row: dict[str, object]) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    outcome = Sweep(spec, out).run(executor, on_row)
    wall = time.perf_counter() - started
    bad = [row["status"] for row in outcome.rows if row["status"] != "ok"]
    if bad:
        raise SystemExit(f"cells failed: {bad[:3]}")
    manifests = []
    for row in outcome.rows:
        manifest = json.loads((out / "cells" / str(row["cell"]) / "manifest.json").read_text())
        manifests.append({**manifest["timings"], "wall_s": row["wall_s"]})
    return wall, first[0], manifests


class _PlanOnly:
    """Builds every cell's job (configuration, content key) and runs none of them."""

    name = "plan-only"
    workers = 1

    def results(self, jobs: Iterable[CellJob]) -> Iterator[Row]:
        for _ in jobs:
            pass
        return iter(())


def planning(data: Path, out: Path, n_cells: int) -> dict[str, object]:
    """The sweep's own cost per cell without the replays: plan, key, build each job, write
    results.parquet (every cell `not run`)."""
    write_synthetic_session(data / "bench/TINY/2024-01-02", 2_000)
    spec = _spec(data, "bench/TINY/2024-01-02", _thresholds(n_cells), "obi_mlp")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    Sweep(spec, out).run(_PlanOnly())
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"measure": "planning", "cells": n_cells, "wall_s": round(wall, 2),
            "per_cell_ms": round(wall / n_cells * 1e3, 3), "peak_rss_mb_before": round(before, 1),
            "peak_rss_mb_after": round(peak, 1)}  # fmt: skip


def overhead(data: Path, out: Path, n_cells: int) -> dict[str, object]:
    write_synthetic_session(data / "bench/TINY/2024-01-02", 2_000)
    spec = _spec(data, "bench/TINY/2024-01-02", _thresholds(n_cells), "obi_mlp")
    wall, first, cells = _timed(spec, out, PoolExecutor(2))
    around = [c["wall_s"] - c["load_s"] - c["run_s"] for c in cells]
    return {
        "measure": "per_cell_overhead",
        "cells": n_cells,
        "workers": 2,
        "sweep_wall_s": round(wall, 3),
        "pool_start_to_first_cell_s": round(first, 3),
        "cell_load_s_median": round(statistics.median(c["load_s"] for c in cells), 4),
        "cell_run_s_median": round(statistics.median(c["run_s"] for c in cells), 4),
        "cell_around_replay_s_median": round(statistics.median(around), 4),
        "cell_wall_s_median": round(statistics.median(c["wall_s"] for c in cells), 4),
        "sweep_wall_per_cell_s": round(wall / n_cells * 2, 4),  # per cell per worker
    }


def scaling(data: Path, out: Path, events: int, rounds: int) -> list[dict[str, object]]:
    """Pools of 1 and 2 workers, interleaved for `rounds` rounds (medians reported), then
    once in this process (last: it loads the pipeline here, the pools do not)."""
    write_synthetic_session(data / "bench/BIG/2024-01-02", events)
    spec = _spec(data, "bench/BIG/2024-01-02", _thresholds(8), "obi_mlp")
    rates: dict[str, list[float]] = {"pool-1": [], "pool-2": []}
    runs: dict[str, list[float]] = {"pool-1": [], "pool-2": []}
    for i in range(rounds):
        for name, workers in (("pool-1", 1), ("pool-2", 2)):
            wall, _, cells = _timed(spec, out / f"{name}-{i}", PoolExecutor(workers))
            rates[name].append(8 / wall)
            runs[name].append(statistics.median(c["run_s"] for c in cells))
    results: list[dict[str, object]] = [
        {"measure": "scaling", "executor": name, "cells": 8, "quotes_per_cell": events,
         "rounds": rounds, "cells_per_s_median": round(statistics.median(rates[name]), 4),
         "cells_per_s_each": [round(r, 4) for r in rates[name]],
         "cell_run_s_median": round(statistics.median(runs[name]), 3)}
        for name in rates
    ]  # fmt: skip
    ratios = [two / one for one, two in zip(rates["pool-1"], rates["pool-2"], strict=True)]
    results.append({"measure": "speedup_2_vs_1_workers",
                    "median": round(statistics.median(ratios), 3),
                    "each_round": [round(r, 3) for r in ratios]})  # fmt: skip
    results.append(_parent_rss("after every pool sweep (tiny cells and scaling)"))
    wall, _, cells = _timed(spec, out / "in-process", SerialExecutor())
    run_s = statistics.median(c["run_s"] for c in cells)
    results.append({"measure": "scaling", "executor": "in-process", "cells": 8,
                    "quotes_per_cell": events, "cells_per_s": round(8 / wall, 4),
                    "cell_run_s_median": round(run_s, 3)})  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="Quotes per scaling cell.")
    parser.add_argument("--many", type=int, default=200, help="Tiny cells for overhead/RSS.")
    parser.add_argument("--plan", type=int, default=20_000, help="Cells planned, not run.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved 1/2-worker rounds.")
    args = parser.parse_args()
    print(json.dumps({"host_cpus": os.cpu_count(), "load_avg": os.getloadavg()}))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(json.dumps(planning(root / "data", root / "planning", args.plan)), flush=True)
        print(json.dumps(overhead(root / "data", root / "overhead", args.many)), flush=True)
        print(json.dumps(_parent_rss(f"after {args.many} pool cells")), flush=True)
        for row in scaling(root / "data", root / "scaling", args.events, args.rounds):
            print(json.dumps(row), flush=True)
    print(json.dumps(_parent_rss("at the end, in-process cells included")))


def _parent_rss(when: str) -> dict[str, object]:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"measure": "parent_peak_rss_mb", "value": round(peak_mb, 1), "when": when}


if __name__ == "__main__":
    main()
