"""Benchmark: peak RSS of a default `replay` (report included) and of `report` alone (not a test).

Writes a synthetic L1 quote session of N quotes (in bounded memory), then runs, each in a fresh
subprocess whose peak RSS is read with resource.getrusage(RUSAGE_CHILDREN):

- `ticktape replay QUOTES --strategy S --out RUN` (the default: report included),
- `ticktape report RUN` (the report build alone, on the run the replay wrote),
- `ticktape replay QUOTES --strategy S --no-report` (the replay alone, for comparison).

Prints one JSON object: peak RSS in MB and wall seconds of each. Everything is written under a
temporary directory (or --dir) and deleted afterwards unless --keep.

    python benchmarks/report_memory.py [--events 10000000] [--strategy obi_rule] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator.sources.synthetic import write_synthetic_quotes

MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
sys.exit(done.returncode)
"""
"""A fresh wrapper per command, so RUSAGE_CHILDREN's maximum is that one command's."""


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `command` run in a fresh subprocess."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--strategy", default="obi_rule")
    parser.add_argument("--dir", type=Path, help="Work directory (default: a temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="ticktape-report-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-c", "from cli import main; main()"]
    try:
        quotes = write_synthetic_quotes(work / "quotes.parquet", args.events)
        run = work / "run"
        replay = [*cli, "replay", str(quotes), "--strategy", args.strategy, "--out", str(run)]
        replay_mb, replay_s = peak_rss_mb(replay)
        report_mb, report_s = peak_rss_mb([*cli, "report", str(run)])
        bare = [*replay[:-2], "--out", str(work / "bare"), "--no-report"]
        bare_mb, bare_s = peak_rss_mb(bare)
        print(
            json.dumps(
                {
                    "events": args.events,
                    "strategy": args.strategy,
                    "replay_with_report_peak_mb": round(replay_mb, 1),
                    "replay_with_report_s": round(replay_s, 1),
                    "report_peak_mb": round(report_mb, 1),
                    "report_s": round(report_s, 1),
                    "replay_no_report_peak_mb": round(bare_mb, 1),
                    "replay_no_report_s": round(bare_s, 1),
                }
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
