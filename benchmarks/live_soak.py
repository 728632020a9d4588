"""A long live run at max speed on the synthetic feed, its RSS sampled at intervals: memory
must stay flat, the inbox bounded, and nothing dropped (a full inbox pauses reading the socket,
so the feed server waits on its socket drain). Prints one JSON line per RSS sample, then the
run's summary: frames/s and events/s, paused time, overflow counts, RSS first/last/max and its
drift after the first minute (MB/min), the run's orders/fills/rejections.

Each sample also has what the live process saw at about that time (a sampler thread inside
it, `--inside`): anonymous RSS, glibc's arenas (`malloc_mb`: in use / free, mallinfo2), Arrow's
allocated bytes, Python's allocated blocks and the rare-table rows held in memory (the rest are
spilled to disk).

    python benchmarks/live_soak.py --minutes 10 --every 30
    python benchmarks/live_soak.py --minutes 1 --speed 10   # paced: 6,000 frames/s to obi_mlp
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CRYPTO = ["--set", "policy.lot=0.01", "--set", "policy.max_position=0.1", "--set",
          "risk.max_position=1", "--set", "risk.max_order_size=1", "--set",
          "risk.max_notional=1e9", "--set", "policy.size=0.01"]  # fmt: skip
BIN = Path(sys.executable).parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def inside(every: float, out: Path, argv: list[str]) -> None:
    """Run `ticktape live` in this process with a thread writing a JSON line to `out` every
    `every` seconds: what RSS is made of, seen from inside."""
    import pyarrow as pa

    import cli
    import simulator.recording as recording

    recorders: list[Any] = []
    init = recording.RunRecorder.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        init(self, *args, **kwargs)
        recorders.append(self)

    recording.RunRecorder.__init__ = keep  # type: ignore[method-assign]
    try:
        libc: Any = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        libc = None

    def sample() -> dict[str, object]:
        status = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        anon_kb = int(status["RssAnon"].split()[0])
        row: dict[str, object] = {
            "anon_mb": round(anon_kb / 1024),
            "arrow_mb": round(pa.total_allocated_bytes() / 2**20),
            "py_blocks_k": round(sys.getallocatedblocks() / 1000),  # Python's live blocks
        }
        if libc is not None:
            info = libc.mallinfo2()
            row["malloc_mb"] = [round(info.uordblks / 2**20), round(info.fordblks / 2**20)]
        for recorder in recorders[:1]:
            tables = recorder.tables
            row["rows_held"] = len(tables.orders) + len(tables.fills) + len(tables.rejections)
        return row

    def loop() -> None:
        with out.open("w") as handle:
            while True:
                time.sleep(every)
                handle.write(json.dumps(sample()) + "\n")
                handle.flush()

    threading.Thread(target=loop, name="soak-sampler", daemon=True).start()
    sys.argv = ["ticktape", *argv]
    cli.main()


def last_line(path: Path) -> dict[str, object]:
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return dict(json.loads(lines[-1])) if lines else {}
    except json.JSONDecodeError:  # a line being written
        return dict(json.loads(lines[-2])) if len(lines) > 1 else {}


def rss_summary(samples: list[tuple[float, float]]) -> dict[str, float] | None:
    """First, last, min and max RSS while running, and its drift (least-squares slope, MB per
    minute) after the first minute, and after the third (`drift_after_3min`: the allocators'
    warm-up is over by then): flat memory has a drift near 0."""
    if not samples:
        return None
    rss = [r for _, r in samples]
    summary: dict[str, float] = {"first": round(rss[0]), "last": round(rss[-1]),
                                 "min": round(min(rss)), "max": round(max(rss))}  # fmt: skip
    for key, after_s in (("drift_mb_per_min", 60), ("drift_after_3min", 180)):
        warm = [(t, r) for t, r in samples if t >= after_s]
        if len(warm) >= 3:
            t_mean = sum(t for t, _ in warm) / len(warm)
            r_mean = sum(r for _, r in warm) / len(warm)
            num = sum((t - t_mean) * (r - r_mean) for t, r in warm)
            den = sum((t - t_mean) ** 2 for t, _ in warm)
            summary[key] = round(60 * num / den, 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--strategy", default="obi_mlp")
    parser.add_argument("--messages", type=int, default=100_000_000, help="synthetic tape")
    parser.add_argument(
        "--speed",
        default="max",
        help="feed pace: max, or N x the synthetic tape's 1,000 messages/s (obi_mlp subscribes "
        "3 in 5: depth and trades)",
    )
    parser.add_argument("--inside", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside is not None:  # the live process itself (see `inside`)
        inside(args.every, Path(os.environ["SOAK_SAMPLES"]), args.inside)
        return
    serve = [str(BIN / "ticktape"), "feed", "serve", "--synthetic", str(args.messages),
             "--speed", args.speed]  # fmt: skip
    feed = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True)
    try:
        assert feed.stdout is not None
        first = feed.stdout.readline().split()
        url, rest = first[1].removesuffix("/stream"), first[3]
        with tempfile.TemporaryDirectory() as tmp:
            inner = Path(tmp, "inside.jsonl")
            live = subprocess.Popen(
                [sys.executable, __file__, "--every", str(args.every), "--inside",
                 "live", "--symbol", "btcusdt", "--strategy",
                 args.strategy, *CRYPTO, "--url", url, "--rest-url", rest, "--duration",
                 str(args.minutes * 60), "--no-dashboard", "--data-dir", f"{tmp}/data",
                 "--out", f"{tmp}/reports"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "SOAK_SAMPLES": str(inner)},
            )  # fmt: skip
            t0 = time.monotonic()
            samples: list[tuple[float, float]] = []  # (t_s, rss_mb) while the run runs
            while live.poll() is None:
                time.sleep(args.every)
                if live.poll() is None:
                    t_s, rss = time.monotonic() - t0, rss_mb(live.pid)
                    finishing = t_s > args.minutes * 60  # consolidating the recording
                    if not finishing:
                        samples.append((t_s, rss))
                    sample: dict[str, object] = {"t_s": round(t_s), "rss_mb": round(rss),
                                                 **last_line(inner)}  # fmt: skip
                    if finishing:
                        sample["finishing"] = True
                    print(json.dumps(sample), flush=True)
            print(live.stdout.read() if live.stdout else "", flush=True)
            manifest = json.loads(next(Path(tmp, "reports").glob("*/manifest.json")).read_text())
    finally:
        feed.terminate()
        feed.wait()
    facts = manifest["live"]
    inbox, elapsed = facts["inbox"], facts["elapsed_s"]
    print(json.dumps({
        "elapsed_s": round(elapsed, 1), "frames_per_s": round(facts["network"]["frames"] / elapsed),
        "events_per_s": round(manifest["summary"]["n_events"] / elapsed),
        "events": manifest["summary"]["n_events"],
        **{k: manifest["summary"][k] for k in ("n_orders", "n_fills", "n_rejections")},
        "memory_released": facts.get("memory_released"),
        "paused_s": round(inbox["paused_s"], 2), "pauses": inbox["pauses"],
        "overflowed": inbox["overflowed"], "conflated": inbox["conflated"],
        "high_water": inbox["high_water"], "capacity": inbox["capacity"],
        "gaps": facts["normalizer"].get("gaps"), "resyncs": facts["normalizer"].get("resyncs"),
        "rss_mb": rss_summary(samples),
        "peak_rss_mb": round(facts["peak_rss_mb"]), "inbox": inbox,
        "normalizer": facts["normalizer"], "recv_to_done_us": facts["recv_to_done_us"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
