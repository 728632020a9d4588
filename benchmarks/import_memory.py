"""Benchmark: peak RSS and throughput of the streaming importers on large inputs (not a test).

Generates (in bounded memory, under a temporary directory or --dir) a Binance spot recording
and a LOBSTER level-10 message/orderbook pair of about --mb MB each, imports each in a fresh
subprocess (`ticktape data import binance|lobster`), and prints one JSON object per importer:
input MB, wall seconds, MB of raw input per second, CPU seconds (all threads) and MB per CPU
second, and the importing process's peak RSS (resource.getrusage(RUSAGE_CHILDREN) of a
wrapper that runs only that import). Everything is
deleted afterwards unless --keep.

    python benchmarks/import_memory.py [--mb 1024] [--only binance|lobster] [--keep]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.importers.generate: the generators the tests use

from tests.importers.generate import write_binance_recording, write_lobster_pair  # noqa: E402

MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)
sys.exit(done.returncode)
"""
BINANCE_BYTES_PER_STEP = 670
"""About what one generated step (diff + bookTicker + most often a trade) takes."""
LOBSTER_BYTES_PER_ROW = 290
"""About what one generated level-10 event takes (message line + orderbook line)."""


def run_import(command: list[str], input_mb: float) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_mb, cpu_s = (float(x) for x in done.stdout.strip().splitlines()[-1].split())
    return {
        "input_mb": round(input_mb, 1),
        "seconds": round(seconds, 1),
        "mb_per_s": round(input_mb / seconds, 1),
        "cpu_s": round(cpu_s, 1),  # all threads: on a busy host, wall time says little
        "mb_per_cpu_s": round(input_mb / cpu_s, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1024.0, help="Input size of each, in MB.")
    parser.add_argument("--only", choices=("binance", "lobster"))
    parser.add_argument("--dir", type=Path, help="Work directory (default: a temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files.")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="ticktape-import-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-c", "from cli import main; main()"]
    target = args.mb * 1e6
    try:
        if args.only in (None, "binance"):
            path = write_binance_recording(
                work / "binance.txt", int(target / BINANCE_BYTES_PER_STEP)
            )
            size = path.stat().st_size / 1e6
            command = [*cli, "data", "import", "binance", str(path), "--data-dir", str(work)]
            print(json.dumps({"importer": "binance", **run_import(command, size)}), flush=True)
            path.unlink()
        if args.only in (None, "lobster"):
            message, orderbook = write_lobster_pair(
                work / "lobster", int(target / LOBSTER_BYTES_PER_ROW)
            )
            size = (message.stat().st_size + orderbook.stat().st_size) / 1e6
            command = [*cli, "data", "import", "lobster", str(message), "--data-dir", str(work)]
            print(json.dumps({"importer": "lobster", **run_import(command, size)}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
