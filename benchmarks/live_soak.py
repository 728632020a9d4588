"""A long live run at max speed on the synthetic feed, its RSS sampled at intervals: memory
must stay flat, the inbox bounded, and nothing dropped (a full inbox pauses reading the socket,
so the feed server waits on its socket drain). Prints one JSON line per RSS sample, then the
run's summary: frames/s and events/s, paused time, overflow counts, RSS first/last/max, its
drift (least-squares slope, MB/min) after the 1st, 2nd and 3rd minute and its range (max -
min) after the 2nd, RSS right after each checkpoint's memory release (`rss_floor_mb`, the
live process's own samples) and its drift, the run's orders/fills/rejections, and the time
outside the run (`outside_run_s`: start-up, and the end's wind-down, close and merges).

Each sample also has what the live process saw at about that time (a sampler thread inside
it, `--inside`, see `_Inside`): anonymous RSS and AnonHugePages, resident MB by kind of
mapping (`maps_mb`) and of each glibc thread heap by the threads using it (`heaps_mb`),
glibc's arenas (`malloc_mb`: in use / free, mallinfo2; `mmapped_mb`: blocks / MB in their own
mappings), Arrow's allocated bytes and mimalloc's, Python's allocated blocks, the part
writers' buffered MB and rows, and the rare-table rows held in memory (the rest are spilled).

    python benchmarks/live_soak.py --minutes 10 --every 30
    python benchmarks/live_soak.py --minutes 1 --speed 10   # paced: 6,000 frames/s to obi_mlp
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from live_bench import CRYPTO, served


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _size_class(kb: int) -> str:
    if kb == 1024:
        return "1M"  # pymalloc's arenas (unless merged with a neighbour)
    if kb in (8192, 8188, 8196):
        return "8M"  # thread stacks
    for bound, label in ((256, "<256K"), (1024, "<1M"), (8192, "<8M"), (32768, "<32M"),
                         (65536, "<64M")):  # fmt: skip
        if kb < bound:
            return label
    return "64M+" if kb == 65536 else ">64M"


def smaps_by_mapping() -> dict[str, int]:
    """Resident kB per kind of mapping (/proc/self/smaps): `[heap]`, `[stack]`, `anon` (glibc's
    thread arenas, mimalloc's segments, thread stacks, large blocks), `file:NAME` per mapped
    file (the shared libraries, Parquet read back through a memory map)."""
    kinds: dict[str, int] = {}
    name = "anon"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            path = head[5] if len(head) > 5 else ""
            name = path if path.startswith("[") else f"file:{Path(path).name}" if path else "anon"
            if name == "anon":  # by the mapping's size: what made it
                start, end = (int(x, 16) for x in head[0].split("-"))
                name = f"anon:{_size_class((end - start) >> 10)}"
        elif head and head[0] == "Rss:":
            kinds[name] = kinds.get(name, 0) + int(head[1])
    return kinds


HEAP_MAX = 64 << 20  # glibc's thread heaps: this size, aligned to it


def anon_maps() -> dict[tuple[int, int], int]:
    """Resident kB of each anonymous mapping, by (start, end) address."""
    maps: dict[tuple[int, int], int] = {}
    key: tuple[int, int] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            key = (start, end) if len(head) == 5 else None
        elif key is not None and head and head[0] == "Rss:":
            maps[key] = int(head[1])
    return maps


def rollup() -> dict[str, int]:
    """Resident MB by backing (/proc/self/smaps_rollup): anonymous, file, shared memory."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return {
        k: round(fields[k] / 1024)
        for k in (
            "Rss",
            "Anonymous",
            "AnonHugePages",
            "Shared_Clean",
            "Private_Clean",
            "Private_Dirty",
        )
        if k in fields
    }


def pymalloc_arenas() -> int:
    """pymalloc's arenas allocated now (sys._debugmallocstats, which prints to fd 2)."""
    with tempfile.TemporaryFile("w+") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        for line in sink:
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", ""))
    return -1


def _kept(cls: Any, into: list[Any]) -> None:  # noqa: ANN401
    """Every instance of `cls` made from now on is appended to `into`."""
    init = cls.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        init(self, *args, **kwargs)
        into.append(self)

    cls.__init__ = keep


def _libc() -> Any:  # noqa: ANN401
    try:
        libc: Any = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    return libc


class _Inside:
    """The sampler inside the live process: what RSS is made of, every `every` seconds.

    Environment switches for finding a leak: SOAK_SMAPS=DIR dumps /proc/self/smaps at each
    sample, SOAK_FLOOR_SMAPS=DIR dumps it (and glibc's malloc_info) right after each
    checkpoint's release; SOAK_TRIM=1 trims once more after sampling and reports the
    anonymous RSS left; SOAK_TRACEMALLOC=1 traces Python's allocations and reports the lines
    that grew most; SOAK_PYMALLOC=1 counts pymalloc's arenas (1 MiB each) in use."""

    def __init__(self, every: float, out: Path) -> None:
        import simulator.live.parts as parts
        import simulator.recording as recording

        self.every, self.out = every, out
        self.recorders: list[Any] = []
        self.writers: list[Any] = []
        _kept(recording.RunRecorder, self.recorders)
        _kept(parts.PartWriter, self.writers)
        self.libc = _libc()
        self.heaps: dict[int, str] = {}  # glibc's thread heaps (64 MiB aligned) -> threads
        if self.libc is not None:
            self._locate_heaps()
        self.trim = os.environ.get("SOAK_TRIM") == "1"
        self.dump = Path(os.environ["SOAK_SMAPS"]) if os.environ.get("SOAK_SMAPS") else None
        self.traced = os.environ.get("SOAK_TRACEMALLOC") == "1"
        self.pymalloc = os.environ.get("SOAK_PYMALLOC") == "1"
        if self.traced:  # what Python (and numpy) allocated, by line: slow
            tracemalloc.start(4)
        self.base: list[tracemalloc.Snapshot] = []
        if os.environ.get("SOAK_FLOOR_SMAPS"):
            self._dump_after_release(Path(os.environ["SOAK_FLOOR_SMAPS"]))

    @staticmethod
    def _dump_after_release(directory: Path) -> None:
        """/proc/self/smaps right after each checkpoint's release (RSS's floor: the part
        buffers just written, the free pages returned), for diffing what the floor holds."""
        import simulator.live.parts as parts
        import simulator.live.run as run

        release = getattr(run, "release_free_memory")  # noqa: B009 - imported there, patched
        flush = parts.SessionParts.flush

        def timed(self: Any) -> None:  # noqa: ANN401
            """How long the checkpoint waits for the part writers (the raw thread is held)."""
            t0 = time.perf_counter()
            flush(self)
            with (directory / "parts_flush_ms").open("a") as waits:
                waits.write(f"{(time.perf_counter() - t0) * 1e3:.1f}\n")

        parts.SessionParts.flush = timed  # type: ignore[method-assign]

        libc: Any = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.fclose.argtypes = (ctypes.c_void_p,)

        def dumped(releases: Any) -> None:  # noqa: ANN401
            release(releases)
            text = Path("/proc/self/smaps").read_text()
            (directory / f"floor.{releases.calls:03d}").write_text(text)
            # glibc's arenas one by one: in use, free (by size), and what each holds
            stream = libc.fopen(str(directory / f"malloc.{releases.calls:03d}").encode(), b"w")
            if stream:
                libc.malloc_info(0, stream)
                libc.fclose(stream)
            with (directory / "pymalloc_arenas").open("a") as arenas:
                arenas.write(f"{releases.calls} {pymalloc_arenas()}\n")

        setattr(run, "release_free_memory", dumped)  # noqa: B010 - the name run.py calls

    def _locate_heaps(self) -> None:
        """Each thread started from now on names the glibc heap its arena allocates from."""
        run, libc, heaps = threading.Thread.run, self.libc, self.heaps

        def located(thread: threading.Thread) -> None:
            block = libc.malloc(600)  # from this thread's arena
            base = block & ~(HEAP_MAX - 1)
            heaps[base] = f"{heaps[base]},{thread.name}" if base in heaps else thread.name
            libc.free(block)
            run(thread)

        threading.Thread.run = located  # type: ignore[method-assign,assignment]

    def by_heap(self) -> dict[str, float]:
        """Resident MB of each glibc thread heap, named by its threads (others by address)."""
        rss: dict[str, float] = {}
        for (start, _), kb in anon_maps().items():
            if start % HEAP_MAX == 0:  # a heap's used part (or mimalloc's arena, > 64 MiB)
                name = self.heaps.get(start, f"{start:x}")
                rss[name] = round(rss.get(name, 0) + kb / 1024, 1)
        return {name: mb for name, mb in rss.items() if mb >= 1}

    def sample(self) -> dict[str, object]:
        import pyarrow as pa

        big = {k: round(v / 1024, 1) for k, v in smaps_by_mapping().items() if v >= 1024}
        buffered = sum(w._buffered_bytes for w in self.writers)  # parts not yet written
        row: dict[str, object] = {
            "anon_mb": round(_status_kb("RssAnon") / 1024),
            "arrow_mb": round(pa.total_allocated_bytes() / 2**20),  # the default pool's
            "arrow_pool": pa.default_memory_pool().backend_name,
            "mimalloc_mb": round(pa.mimalloc_memory_pool().bytes_allocated() / 2**20),
            "py_blocks_k": round(sys.getallocatedblocks() / 1000),  # Python's live blocks
            "threads": threading.active_count(),
            "tasks": len(os.listdir("/proc/self/task")),
            "rollup_mb": rollup(),
            "maps_mb": dict(sorted(big.items(), key=lambda kv: -kv[1])),
            "parts_buffered": [round(buffered / 2**20), sum(w._pending for w in self.writers)],
        }
        if self.libc is not None:
            info = self.libc.mallinfo2()
            row["malloc_mb"] = [round(info.uordblks / 2**20), round(info.fordblks / 2**20)]
            row["mmapped_mb"] = [info.hblks, round(info.hblkhd / 2**20)]  # glibc's own maps
            row["heaps_mb"] = self.by_heap()
        for recorder in self.recorders[:1]:
            tables = recorder.tables
            row["rows_held"] = len(tables.orders) + len(tables.fills) + len(tables.rejections)
        return row

    def grown(self) -> list[str]:
        """The lines whose live allocations grew most since the first traced sample."""
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if not self.base:
            self.base.append(snapshot)
            return []
        return [f"{s.size_diff / 1024:+.0f} KiB {s.count_diff:+d}: "
                + " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in s.traceback)
                for s in snapshot.compare_to(self.base[0], "traceback")[:8]]  # fmt: skip

    def loop(self) -> None:
        with self.out.open("w") as handle:
            for n in range(1_000_000):
                time.sleep(self.every)
                row = self.sample()
                if self.trim and self.libc is not None:  # what one more trim gives back
                    self.libc.malloc_trim(0)
                    row["anon_after_trim_mb"] = round(_status_kb("RssAnon") / 1024)
                if self.pymalloc:
                    row["py_arenas"] = pymalloc_arenas()
                if self.traced and n >= 1:
                    row["grown"] = self.grown()
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                if self.dump is not None:  # every mapping, for diffing which ones grew
                    (self.dump / f"smaps.{n:03d}").write_text(Path("/proc/self/smaps").read_text())


def inside(every: float, out: Path, argv: list[str]) -> None:
    """Run `ticktape live` in this process with a thread writing a JSON line to `out` every
    `every` seconds: what RSS is made of, seen from inside (see `_Inside`)."""
    # what `ticktape live` sets first thing, before pyarrow loads: the sampler imports it
    # before the command runs (simulator/live/memory.py)
    from simulator.live.memory import set_allocator_options

    set_allocator_options()
    import cli

    sampler = _Inside(every, out)
    threading.Thread(target=sampler.loop, name="soak-sampler", daemon=True).start()
    sys.argv = ["ticktape", *argv]
    cli.main()


def last_line(path: Path) -> dict[str, object]:
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return dict(json.loads(lines[-1])) if lines else {}
    except json.JSONDecodeError:  # a line being written
        return dict(json.loads(lines[-2])) if len(lines) > 1 else {}


def drift(samples: list[tuple[float, float]], after_s: float) -> float | None:
    """Least-squares slope of (seconds, MB) samples from `after_s` on, in MB per minute."""
    warm = [(t, r) for t, r in samples if t >= after_s]
    if len(warm) < 3:
        return None
    t_mean = sum(t for t, _ in warm) / len(warm)
    r_mean = sum(r for _, r in warm) / len(warm)
    num = sum((t - t_mean) * (r - r_mean) for t, r in warm)
    den = sum((t - t_mean) ** 2 for t, _ in warm)
    return round(60 * num / den, 2)


def rss_summary(samples: list[tuple[float, float]]) -> dict[str, float | None] | None:
    """First, last, min and max RSS while running, its drift (least-squares slope, MB per
    minute) after the first, second and third minute (the allocators' warm-up is over by
    then) and its range (max - min) after the second: flat memory has a drift near 0."""
    if not samples:
        return None
    rss = [r for _, r in samples]
    summary: dict[str, float | None] = {"first": round(rss[0]), "last": round(rss[-1]),
                                        "min": round(min(rss)), "max": round(max(rss))}  # fmt: skip
    for minutes in (1, 2, 3):
        summary[f"drift_after_{minutes}min"] = drift(samples, 60 * minutes)
    warm = [r for t, r in samples if t >= 120]
    summary["range_after_2min"] = round(max(warm) - min(warm)) if warm else None
    return summary


def floor_summary(released: dict[str, Any], checkpoint_s: float) -> dict[str, object]:
    """RSS right after each checkpoint's release (the live process's own samples: part
    buffers just written, free pages returned), its drift after the second minute, and its
    last value against its value at the second minute."""
    every = int(released.get("rss_every", 1))
    series = [(checkpoint_s * (1 + every * i), mb) for i, mb in enumerate(released["rss_mb"])]
    at_2min = [mb for t, mb in series if t >= 120]
    return {
        "every_s": checkpoint_s * every,
        "mb": [round(mb) for _, mb in series],
        "drift_after_2min": drift(series, 120),
        "last_minus_2min": round(series[-1][1] - at_2min[0], 1) if at_2min else None,
    }


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
    serve = ["--synthetic", str(args.messages), "--speed", args.speed]
    with served(serve) as (url, rest), tempfile.TemporaryDirectory() as tmp:
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
            with contextlib.suppress(subprocess.TimeoutExpired):
                live.wait(args.every)  # returns early when the run ends
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
        exited_s = time.monotonic() - t0
        print(live.stdout.read() if live.stdout else "", flush=True)
        manifest = json.loads(next(Path(tmp, "reports").glob("*/manifest.json")).read_text())
    facts = manifest["live"]
    inbox, elapsed = facts["inbox"], facts["elapsed_s"]
    print(json.dumps({
        "elapsed_s": round(elapsed, 1),
        # start-up (imports, the model) and the end (wind-down, close, consolidation)
        "outside_run_s": round(exited_s - elapsed, 1),
        "frames_per_s": round(facts["network"]["frames"] / elapsed),
        "events_per_s": round(manifest["summary"]["n_events"] / elapsed),
        "events": manifest["summary"]["n_events"],
        **{k: manifest["summary"][k] for k in ("n_orders", "n_fills", "n_rejections")},
        "memory_released": {k: v for k, v in facts["memory_released"].items() if k != "rss_mb"},
        "paused_s": round(inbox["paused_s"], 2), "pauses": inbox["pauses"],
        "overflowed": inbox["overflowed"], "conflated": inbox["conflated"],
        "high_water": inbox["high_water"], "capacity": inbox["capacity"],
        "gaps": facts["normalizer"].get("gaps"), "resyncs": facts["normalizer"].get("resyncs"),
        "rss_mb": rss_summary(samples),
        "rss_floor_mb": floor_summary(facts["memory_released"], 30.0),
        "peak_rss_mb": round(facts["peak_rss_mb"]), "inbox": inbox,
        "normalizer": facts["normalizer"], "recv_to_done_us": facts["recv_to_done_us"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
