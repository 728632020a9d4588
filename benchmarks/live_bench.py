"""Live mode under the local feed server: receive-to-done latency, inbox depth, conflation,
memory, per feed speed. Each point is a fresh `ticktape feed serve` and `ticktape live`.

    python benchmarks/live_bench.py --strategy obi_mlp --speeds 10,20,40,max
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CRYPTO = ["--set", "policy.lot=0.01", "--set", "policy.max_position=0.1", "--set",
          "risk.max_position=1", "--set", "risk.max_order_size=1", "--set",
          "risk.max_notional=1e9", "--set", "policy.size=0.01"]  # fmt: skip
BIN = Path(sys.executable).parent


def point(strategy: str, speed: str, limit: int | None, inbox: int) -> dict[str, object]:
    serve = [str(BIN / "ticktape"), "feed", "serve", "--speed", speed]
    if limit:
        serve += ["--limit", str(limit)]
    feed = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True)
    try:
        assert feed.stdout is not None
        first = feed.stdout.readline().split()
        url, rest = first[1].removesuffix("/stream"), first[3]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    str(BIN / "ticktape"),
                    "live",
                    "--symbol",
                    "btcusdt",
                    "--strategy",
                    strategy,
                    *CRYPTO,
                    "--url",
                    url,
                    "--rest-url",
                    rest,
                    "--until-idle",
                    "3",
                    "--no-dashboard",
                    "--inbox",
                    str(inbox),
                    "--data-dir",
                    f"{tmp}/data",
                    "--out",
                    f"{tmp}/reports",
                ],
                check=True,
                capture_output=True,
            )
            manifest = json.loads(next(Path(tmp, "reports").glob("*/manifest.json")).read_text())
    finally:
        feed.terminate()
        feed.wait()
    live, timings = manifest["live"], manifest["timings"]
    done = live["recv_to_done_us"]
    return {
        "speed": speed,
        "events": manifest["summary"]["n_events"],
        "msgs_per_s": round(live["inbox"]["received"] / timings["run_s"]),
        "recv_to_done_ms": [round(done[k] / 1e3, 2) for k in ("p50_us", "p99_us", "p99.9_us")],
        "inbox_high_water": live["inbox"]["high_water"],
        "conflated": live["inbox"]["conflated"],
        "gaps": live["normalizer"].get("gaps"),
        "peak_rss_mb": round(live["peak_rss_mb"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", default="obi_mlp")
    parser.add_argument("--speeds", default="10,20,40,max")
    parser.add_argument("--limit", type=int, default=None, help="tape messages served")
    parser.add_argument("--inbox", type=int, default=10_000)
    args = parser.parse_args()
    for speed in args.speeds.split(","):
        print(json.dumps(point(args.strategy, speed, args.limit, args.inbox)), flush=True)


if __name__ == "__main__":
    main()
