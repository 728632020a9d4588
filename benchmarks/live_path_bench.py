"""The live consumer path in-process, without sockets: the bundled BTCUSDT recording's frames
handed to one symbol's run one frame per drain (what the pipeline thread does at any speed
below saturation), timed per frame: normalise, check, record, engine.

    python benchmarks/live_path_bench.py --strategy obi_mlp --frames 20000 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

from simulator.config import apply_overrides, load_strategy
from simulator.live.frames import Direction, Frame, stream_of
from simulator.live.session import SymbolRun
from simulator.live.venues import adapter
from simulator.types import SessionKey

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "data" / "binance" / "BTCUSDT" / "2024-08-08"
CRYPTO = ("policy.lot=0.01", "policy.max_position=0.1", "risk.max_position=1",
          "risk.max_order_size=1", "risk.max_notional=1e9", "policy.size=0.01")  # fmt: skip
STREAMS = {"quotes": "@bookTicker", "trades": "@trade", "book": "@depth@100ms"}


def frames(kinds: list[str], limit: int) -> list[Frame]:
    """The recording's frames of the strategy's streams (and the REST snapshot)."""
    raw = zstandard.ZstdDecompressor().stream_reader((SESSION / "raw.txt.zst").open("rb"))
    wanted = tuple(STREAMS[k] for k in kinds)
    out: list[Frame] = []
    for line in io.TextIOWrapper(raw).read().splitlines():
        ts, _, body = line.partition(" ")
        payload = body.encode()
        stream = stream_of(payload)
        if not stream:
            out.append(
                Frame(len(out), 1, int(ts), Direction.HTTP_RESP, "btcusdt@snapshot", payload)
            )
        elif stream.endswith(wanted):
            out.append(Frame(len(out), 1, int(ts), Direction.IN, stream, payload))
        if len(out) >= limit:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", default="obi_mlp")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    config = apply_overrides(load_strategy(args.strategy), sets=CRYPTO)
    kinds = [k for k in config.strategy.kinds if k in STREAMS]
    venue = adapter("binance", kinds)
    tape = frames(kinds, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        run = SymbolRun(
            key=SessionKey("binance", "BTCUSDT", "bench"),
            prefix="btcusdt@",
            normalizer=venue.normalizer("btcusdt"),
            config=config,
            levels=20 if "book" in kinds else 1,
            data_dir=Path(tmp, "data"),
            run_dir=Path(tmp, "run"),
            meta={},
        )
        cost = np.zeros(len(tape), dtype=np.int64)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        clock = time.perf_counter_ns
        for i, frame in enumerate(tape):
            t0 = clock()
            run.process([frame])
            cost[i] = clock() - t0
        if profiler is not None:
            profiler.disable()
        run.engine.end()
        run.parts.close()
    us = cost / 1e3
    by_stream: dict[str, list[float]] = {}
    for frame, value in zip(tape, us, strict=True):
        by_stream.setdefault(frame.stream.partition("@")[2] or frame.stream, []).append(value)
    print(json.dumps({
        "strategy": args.strategy, "frames": len(tape), "events": run.engine.state.n_events,
        "per_frame_us": {q: round(float(np.percentile(us, q)), 1) for q in (50, 90, 99, 99.9)},
        "mean_us": round(float(us.mean()), 1),
        "p50_us_by_stream": {k: round(float(np.median(v)), 1) for k, v in by_stream.items()},
    }))  # fmt: skip
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
