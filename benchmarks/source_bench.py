"""Benchmark: stream a synthetic N-quote session through ParquetSource (not a test).

Writes a valid L1 quote file of each size (in chunks, so generation itself stays small), then
in a fresh subprocess per size reads it back with ParquetSource, checks every row and walks
every event field by field. Prints one JSON object per size: events/s of the read-check-walk
loop and the walk alone, and the peak RSS of the reading process.

    python benchmarks/source_bench.py [--sizes 1000000,10000000] [--batch-rows 65536]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator.sources.synthetic import write_synthetic_quotes


def measure(path: Path, batch_rows: int) -> dict[str, float]:
    from simulator.sources.recorded import ParquetSource

    source = ParquetSource(path, batch_rows=batch_rows)
    n, walk_s, touched = 0, 0.0, 0.0
    started = time.perf_counter()
    for batch in source.batches():
        cols = batch.columns
        t0 = time.perf_counter()
        for _ts, bid, bid_sz, ask, ask_sz in zip(
            cols["ts_recv"],
            cols["bid_px"],
            cols["bid_sz"],
            cols["ask_px"],
            cols["ask_sz"],
            strict=True,
        ):
            if bid_sz > ask_sz:  # a trivial per-event use of every field
                touched += ask - bid
        walk_s += time.perf_counter() - t0
        n += len(batch)
    total_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n_events": n,
        "read_check_walk_events_per_s": n / total_s,
        "walk_only_events_per_s": n / walk_s,
        "seconds": total_s,
        "peak_rss_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:  # child process: measure only
        print(json.dumps(measure(args.measure, args.batch_rows)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"quotes_{n}.parquet"
            write_synthetic_quotes(path, n)
            child = [
                sys.executable,
                __file__,
                "--measure",
                str(path),
                "--batch-rows",
                str(args.batch_rows),
            ]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            result = {"case": "parquet_source", "size": n, **json.loads(out)}
            print(json.dumps(result))


if __name__ == "__main__":
    main()
