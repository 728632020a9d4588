"""Live mode under the local feed server: receive-to-done latency, inbox depth, conflation,
how frames reached the pipeline, memory. Each case is a fresh `ticktape feed serve` and
`ticktape live` (subprocesses, as a user runs them) on the bundled BTCUSDT recording.

The issue #11 targets, in one command (1x obi_mlp on the first 3,000 tape messages, ~20 s;
20x obi_mlp and obi_rule on the whole tape, ~35 s each; one JSON line per case):

    python benchmarks/live_bench.py
    python benchmarks/live_bench.py --repeat 3          # each case 3 times, interleaved
    python benchmarks/live_bench.py --variants=--keep-warm,--no-keep-warm   # A/B, interleaved
    python benchmarks/live_bench.py --busy-poll         # every live run with --busy-poll
    python benchmarks/live_bench.py --cases obi_mlp@1:3000 --repeat 4 --variants=,--busy-poll

Other cases: STRATEGY@SPEED[:LIMIT] (LIMIT: tape messages served), e.g.

    python benchmarks/live_bench.py --cases obi_mlp@10,obi_mlp@max,obi_rule@2:5000

recv_to_done_ms is [p50, p99, p99.9] over the quotes and books (the decisions' events);
`model_runs` counts the events the model ran on (the features are warmed from the served
session first, `--no-warm` to start cold);
`conflated` counts quotes replaced while the pipeline was behind (the issue's target at 20x:
0), `cost_us` the pipeline's time per frame in bursts that the conflation rule goes by;
`inline`/`handed_off` say how many frames the network thread ran itself and how many the
consumer thread ran; `net_cpu_share` is the network thread's CPU time over its wall time
(~1 with --busy-poll), `checkpoints` the recording's checkpoints (every 30 s). To compare two
checkouts, run this file with each one's python (or PYTHONPATH) alternately and compare
medians: the latencies are sensitive to the host's load, printed as `load`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

CRYPTO = ["--set", "policy.lot=0.01", "--set", "policy.max_position=0.1", "--set",
          "risk.max_position=1", "--set", "risk.max_order_size=1", "--set",
          "risk.max_notional=1e9", "--set", "policy.size=0.01"]  # fmt: skip
BIN = Path(sys.executable).parent
DEFAULT_CASES = "obi_mlp@1:3000,obi_mlp@20,obi_rule@20"
SERVED = Path(__file__).resolve().parents[1] / "data" / "binance" / "BTCUSDT" / "2024-08-08"
"""The session `feed serve` serves by default; --warm (the default) warms the features from it:
else obi_mlp's features are not ready within the 1x case's 3,000 messages and the model never
runs (the latency would leave out inference)."""


@contextlib.contextmanager
def served(args: list[str]) -> Iterator[tuple[str, str]]:
    """`ticktape feed serve ARGS` running (stopped after): its websocket base URL and REST URL,
    from the line it prints first."""
    feed = subprocess.Popen(
        [str(BIN / "ticktape"), "feed", "serve", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert feed.stdout is not None
        first = feed.stdout.readline().split()  # feed: <ws url>/stream  rest: <rest url>
        yield first[1].removesuffix("/stream"), first[3]
    finally:
        feed.terminate()
        feed.wait()


def point(
    strategy: str,
    speed: str,
    limit: int | None,
    inbox: int,
    variant: str = "",
    warm: bool = True,
    extra: tuple[str, ...] = (),
) -> dict[str, object]:
    serve = ["--speed", speed]
    if limit:
        serve += ["--limit", str(limit)]
    with served(serve) as (url, rest), tempfile.TemporaryDirectory() as tmp:
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
                *(["--warm-from", str(SERVED)] if warm else []),
                *extra,
                *shlex.split(variant),
            ],
            check=True,
            capture_output=True,
        )
        manifest = json.loads(next(Path(tmp, "reports").glob("*/manifest.json")).read_text())
    live, timings = manifest["live"], manifest["timings"]
    done, box = live["recv_to_done_us"], live["inbox"]
    frames = box.get("frames", box["received"])
    return {
        "case": f"{strategy}@{speed}" + (f":{limit}" if limit else ""),
        **({"variant": " ".join([*extra, variant]).strip()} if variant or extra else {}),
        "events": manifest["summary"]["n_events"],
        "model_runs": int(manifest["latency_us"]["inference"]["count"]),
        "msgs_per_s": round(frames / timings["run_s"]),
        "recv_to_done_ms": [round(done[k] / 1e3, 3) for k in ("p50_us", "p99_us", "p99.9_us")],
        "conflated": box["conflated"],
        "cost_us": box.get("cost_us"),
        "overflowed": box["overflowed"],
        "inline": box.get("inline"),
        "handed_off": box.get("handed_off"),
        "warm_passes": box.get("warm_passes"),
        "inbox_high_water": box["high_water"],
        "gaps": live["normalizer"].get("gaps"),
        "net_cpu_share": live.get("network_thread", {}).get("cpu_share"),
        "checkpoints": live.get("memory_released", {}).get("calls"),
        "peak_rss_mb": round(live["peak_rss_mb"]),
        "load": round(os.getloadavg()[0], 2),
    }


def _case(text: str) -> tuple[str, str, int | None]:
    strategy, _, rest = text.partition("@")
    speed, _, limit = rest.partition(":")
    if not strategy or not speed:
        raise SystemExit(f"--cases: {text!r} is not STRATEGY@SPEED[:LIMIT]")
    return strategy, speed, int(limit) if limit else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default=DEFAULT_CASES, help=f"STRATEGY@SPEED[:LIMIT],... ({DEFAULT_CASES})"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the cases")
    parser.add_argument("--inbox", type=int, default=10_000)
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated extra `ticktape live` arguments; each case runs once per "
        "variant per round (A/B interleaved), e.g. --variants=--keep-warm,--no-keep-warm",
    )
    parser.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="warm the features from the served session first (--warm-from), so the model "
        "runs from the first event",
    )
    parser.add_argument(
        "--busy-poll",
        action="store_true",
        help="every live run with --busy-poll (the network thread never sleeps: one core)",
    )
    parser.add_argument("--strategy", help="old form: with --speeds, one case per speed")
    parser.add_argument("--speeds", help="old form, e.g. 10,20,max (with --strategy)")
    parser.add_argument("--limit", type=int, default=None, help="old form: tape messages served")
    args = parser.parse_args()
    if args.speeds:
        strategy = args.strategy or "obi_mlp"
        cases = [(strategy, speed, args.limit) for speed in args.speeds.split(",")]
    else:
        cases = [_case(text) for text in args.cases.split(",")]
    variants = args.variants.split(",") if args.variants else [""]
    extra = ("--busy-poll",) if args.busy_poll else ()
    for _ in range(args.repeat):
        for strategy, speed, limit in cases:
            for variant in variants:
                print(
                    json.dumps(
                        point(strategy, speed, limit, args.inbox, variant, args.warm, extra)
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
