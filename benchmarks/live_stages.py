"""Where a live frame's receive->done goes, stage by stage, against `feed serve` (1x by
default: where the caches are cold): for each depth frame, wall time and the network
thread's CPU time from its receive stamp through the connection, the hand-off, the
normaliser, the stepper and the engine's step; ONNX Runtime's run inside it; garbage
collections that ran inside a frame; and ONNX Runtime's run in the keep-warm dry passes.

    python benchmarks/live_stages.py                  # obi_mlp at 1x, first 3,000 messages
    python benchmarks/live_stages.py --speed 20 --limit 0 -- --no-keep-warm

Thread CPU time equal to wall time in a stage means the thread ran the whole time: no wait
for the GIL (a run of ONNX Runtime releases it) and no preemption; the stage is then slow
only by what it executes (cold caches after the idle gap, at 1x). The stages are timed by
wrapping the named methods in the child process (a few hundred ns each: compare runs of
this script, not its totals with `live_bench.py`).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from live_bench import CRYPTO, SERVED, served

_STAGES = ("on_frame", "offer", "process", "stepper", "step", "step_end")
"""Stamps of a frame, in path order: FeedConnection._on_frame, Handoff.offer,
SymbolRun.process, EventStepper.book, LiveEngine.step_one (start and end)."""


class _Stamps:
    """The stamps of the frame being run and of those run so far (the child process)."""

    def __init__(self) -> None:
        self.frame: dict[str, Any] = {}
        self.frames: list[dict[str, Any]] = []
        self.dry_runs: list[int] = []

    def stamped(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        frame = self.frame

        def wrapper(*args: Any) -> Any:  # noqa: ANN401 - any method
            frame[name] = (time.time_ns(), time.thread_time_ns())
            return method(*args)

        return wrapper

    def process(self, process: Callable[..., None]) -> Callable[..., None]:
        """SymbolRun.process: the frame starts here (its receive stamp is the last frame's)."""
        frame = self.frame

        def wrapper(run: Any, batch: list[Any]) -> None:  # noqa: ANN401
            frame["process"] = (time.time_ns(), time.thread_time_ns())
            if batch:
                frame["recv"], frame["stream"] = batch[-1].ts_recv, batch[-1].stream
            process(run, batch)
            self.frames.append(dict(frame))
            frame.clear()

        return wrapper

    def step(self, step_one: Callable[..., None]) -> Callable[..., None]:
        frame = self.frame

        def wrapper(engine: Any, prepared: Any) -> None:  # noqa: ANN401
            frame["step"] = (time.time_ns(), time.thread_time_ns())
            step_one(engine, prepared)
            frame["step_end"] = (time.time_ns(), time.thread_time_ns())

        return wrapper

    def raw_run(self, raw_run: Callable[..., Callable[[], None]]) -> Callable[..., Any]:
        """onnx_runner._raw_run: each run timed, in a frame or in a keep-warm dry pass."""
        frame = self.frame

        def wrapper(session: Any, binding: Any) -> Callable[[], None]:  # noqa: ANN401
            run = raw_run(session, binding)

            def timed() -> None:
                start = time.time_ns()
                run()
                took = time.time_ns() - start
                if "process" in frame:
                    frame["ort"] = took
                else:
                    self.dry_runs.append(took)

            return timed

        return wrapper

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        frame = self.frame
        if phase == "start":
            frame["gc_start"] = time.time_ns()
        elif "process" in frame and "gc_start" in frame:
            frame["gc_ns"] = frame.get("gc_ns", 0) + time.time_ns() - frame.pop("gc_start")


def _child(out: str) -> None:
    """Run `ticktape live` (argv) with the stage stamps; write them to `out` at exit."""
    from simulator.engine_live import LiveEngine
    from simulator.live.connection import FeedConnection
    from simulator.live.handoff import Handoff
    from simulator.live.session import SymbolRun
    from simulator.live.stepper import EventStepper
    from simulator.models import onnx_runner

    stamps = _Stamps()
    patched: Any = (FeedConnection, Handoff, EventStepper, SymbolRun, LiveEngine, onnx_runner)
    connection, handoff, stepper, run, engine, runner = patched
    connection._on_frame = stamps.stamped("on_frame", FeedConnection._on_frame)
    handoff.offer = stamps.stamped("offer", Handoff.offer)
    stepper.book = stamps.stamped("stepper", EventStepper.book)
    run.process = stamps.process(SymbolRun.process)
    engine.step_one = stamps.step(LiveEngine.step_one)
    runner._raw_run = stamps.raw_run(onnx_runner._raw_run)
    gc.callbacks.append(stamps.on_gc)

    def dump() -> None:
        Path(out).write_text(json.dumps({"frames": stamps.frames, "dry_runs": stamps.dry_runs}))

    atexit.register(dump)
    import cli

    sys.argv = ["ticktape", *sys.argv[1:]]
    cli.main()


def _median_us(values: list[int]) -> float | None:
    return round(statistics.median(values) / 1e3, 1) if values else None


def report(path: Path) -> dict[str, object]:
    """Medians over the depth frames that ran every stage, in µs."""
    data = json.loads(path.read_text())
    rows = [f for f in data["frames"] if "depth" in f.get("stream", "")]
    rows = [f for f in rows if all(s in f for s in _STAGES)]
    stages: dict[str, object] = {
        "receive->on_frame": _median_us([f["on_frame"][0] - f["recv"] for f in rows])
    }
    for a, b in itertools.pairwise(_STAGES):
        stages[f"{a}->{b}"] = {
            "wall": _median_us([f[b][0] - f[a][0] for f in rows]),
            "cpu": _median_us([f[b][1] - f[a][1] for f in rows]),
        }
    return {
        "depth_frames": len(rows),
        "receive->done": _median_us([f["step_end"][0] - f["recv"] for f in rows]),
        "stages_p50_us": stages,
        "ort_run_p50_us": _median_us([f["ort"] for f in rows if "ort" in f]),
        "dry_pass_ort_run_p50_us": _median_us(data["dry_runs"]),
        "frames_with_gc": sum(1 for f in rows if "gc_ns" in f),
        "gc_in_frames_us": sorted(round(f["gc_ns"] / 1e3) for f in rows if "gc_ns" in f),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strategy", default="obi_mlp")
    parser.add_argument("--speed", default="1")
    parser.add_argument("--limit", type=int, default=3000, help="tape messages (0: all)")
    parser.add_argument("live_args", nargs="*", help="extra `ticktape live` arguments")
    args = parser.parse_args()
    serve = ["--speed", args.speed]
    if args.limit:
        serve += ["--limit", str(args.limit)]
    with served(serve) as (url, rest), tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "stages.json")
        subprocess.run(
            [sys.executable, __file__, "--child", str(out), "live", "--symbol", "btcusdt",
             "--strategy", args.strategy, *CRYPTO, "--url", url, "--rest-url", rest,
             "--until-idle", "3", "--no-dashboard", "--data-dir", f"{tmp}/data",
             "--out", f"{tmp}/reports", "--warm-from", str(SERVED), *args.live_args],
            check=True,
            capture_output=True,
        )  # fmt: skip
        print(json.dumps({**report(out), "load": round(os.getloadavg()[0], 2)}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        out_path = sys.argv[2]
        del sys.argv[1:3]
        _child(out_path)
    else:
        main()
