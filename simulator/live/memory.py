"""Memory the allocators keep after a long live run freed it goes back to the OS, so RSS stays
flat at max speed.

What grew without this (benchmarks/live_soak.py, obi_mlp on the synthetic feed at max speed,
with the rare tables already spilled; the Python heap and Arrow's allocated bytes were flat):
glibc's arenas, by their free part, and what the allocators held beyond that. glibc's mmap
threshold is dynamic: after the first large block is freed it rises (up to 32 MiB), so the
decision chunks' column copies (512 KiB each), numpy temporaries and frame buffers come from
the arenas, where freed space fragments and stays resident. The settings:
- `fix_mmap_threshold` (`ticktape live`, for the whole process): a fixed 128 KiB threshold
  (glibc's initial value, now kept) gives the large blocks their own mappings, returned on
  free;
- `release_free_memory`, called at every recording checkpoint (30 s): `malloc_trim(0)` returns
  the free pages inside the arenas, and Arrow's pool (mimalloc) returns what it holds unused;
- `huge_pages_off` (run_live, for the run; the setting is restored after): mimalloc madvises
  its 1 GiB arena for transparent huge pages, and the kernel's khugepaged then fills whole
  2 MiB pages around what is in use (up to 90 MB of AnonHugePages; RSS rose toward that
  ceiling and stayed there);
- `ticktape live` sets MIMALLOC_PURGE_DELAY=0 before Arrow's first allocation (mimalloc reads
  its options once, when it starts): pages mimalloc freed go back at once, not after 1 s.
  mimalloc's arena held 150-190 MB resident for ~30 MB allocated; with the last two settings
  60-72 MB (measured together; each alone made no clear difference);
- `prompt_arrow_pool` (`ticktape live`, for the whole process): Arrow allocates from jemalloc
  with no decay (JE_ARROW_MALLOC_CONF, set by the command before pyarrow loads) instead of
  mimalloc, whose arena still held 25-50 MB resident for the 6-23 MB Arrow had allocated, up
  and down with the part buffers: most of the noise in RSS over a 10-minute soak (range
  17-22 MB and +0.9 to +1.2 MB/min after the second minute in 3 runs; with jemalloc 14-22
  MB, and flat in 2 of 3 runs). Over 30 minutes both pools end alike, flat: the early drift
  is warm-up (glibc's heaps and pymalloc's arenas settling), not a leak.
10-minute soaks on a shared 2-core host, RSS sampled every 30 s after the first minute:
without the first two 407-487 MB (one run, 26.1k frames/s), with them 378-427 and 396-438 MB
(two runs, 20.4k and 27.3k frames/s; a release takes ~18 ms on average, 56 ms at most), and
drifting up by +1 to +3 MB/min after the second minute. With the rest: see CHANGELOG.md.
A platform without glibc (macOS, musl) keeps its allocator as it is: these are no-ops there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

M_MMAP_THRESHOLD: Final = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD: Final = 128 * 1024
PR_SET_THP_DISABLE: Final = 41  # prctl's option numbers (linux/prctl.h)
PR_GET_THP_DISABLE: Final = 42
RSS_KEPT: Final = 128
"""At most this many RSS samples in `Releases.rss_mb` (an hour of 30 s checkpoints)."""


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc


_LIBC: Final = _glibc()


def huge_pages_disabled() -> bool | None:
    """Whether transparent huge pages are disabled for this process (PR_GET_THP_DISABLE);
    None where that cannot be told."""
    if _LIBC is None or not hasattr(_LIBC, "prctl"):
        return None
    found = _LIBC.prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
    return None if found < 0 else bool(found)


def disable_huge_pages(disabled: bool = True) -> bool:
    """No transparent huge pages for this process from now on (Linux's PR_SET_THP_DISABLE; its
    children inherit it), or (`disabled` False) the system's setting again; False where that
    could not be set."""
    return (
        _LIBC is not None
        and hasattr(_LIBC, "prctl")
        and _LIBC.prctl(PR_SET_THP_DISABLE, int(disabled), 0, 0, 0) == 0
    )


@contextlib.contextmanager
def huge_pages_off() -> Iterator[None]:
    """No transparent huge pages while the block runs; the process's setting as it was after
    (a library caller's later work gets its huge pages back)."""
    before = huge_pages_disabled()
    disable_huge_pages()
    try:
        yield
    finally:
        if before is not None:
            disable_huge_pages(before)


def fix_mmap_threshold() -> bool:
    """Blocks of 128 KiB and more get their own mappings for the rest of the process (glibc);
    False where that could not be set.

    For good: glibc can neither tell the threshold it had nor go back to moving it (its
    dynamic mode), so only a process that is the live run calls this (`ticktape live`); a
    library calling run_live decides for its own process.
    """
    return _LIBC is not None and _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


ALLOCATOR_OPTIONS: Final = {
    "MIMALLOC_PURGE_DELAY": "0",  # mimalloc: freed pages go back at once, not after 1 s
    "JE_ARROW_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0",  # jemalloc: no decay
}


def set_allocator_options() -> None:
    """Set ALLOCATOR_OPTIONS in the environment, where not set already: Arrow's allocators
    read them once, when they start (jemalloc when pyarrow loads, mimalloc at its first
    allocation), so a process that is the live run calls this before pyarrow's import. This
    module imports pyarrow inside its functions for that reason."""
    for name, value in ALLOCATOR_OPTIONS.items():
        os.environ.setdefault(name, value)


def prompt_arrow_pool() -> None:
    """Arrow allocates from jemalloc from now on, where this pyarrow has it.

    For the whole process, like `fix_mmap_threshold` (`ticktape live` calls it). After
    `set_allocator_options` before pyarrow's import, jemalloc hands the pages Arrow frees back
    at once: RSS follows what the recording holds. Buffers already allocated stay with the
    pool they came from.
    """
    import pyarrow as pa

    if "jemalloc" in pa.supported_memory_backends():
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """This process's resident memory (RSS) in MB; NaN where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return float("nan")


@dataclass(slots=True)
class Releases:
    """What `release_free_memory` cost: calls, and their longest and total time; and RSS
    right after each (`rss_mb`): its floor, with the recording's part buffers just written
    and the free pages returned, so a trend in it is memory the run keeps."""

    calls: int = 0
    max_ms: float = 0.0
    total_ms: float = 0.0
    rss_mb: list[float] = field(default_factory=list)
    rss_every: int = 1  # rss_mb holds every this many releases' RSS: it stays short

    def add_rss(self, mb: float) -> None:
        """Keep RSS after every `rss_every`-th call; when RSS_KEPT are held, every second."""
        if (self.calls - 1) % self.rss_every:
            return
        self.rss_mb.append(mb)
        if len(self.rss_mb) >= RSS_KEPT:
            del self.rss_mb[1::2]
            self.rss_every *= 2

    def as_dict(self) -> dict[str, object]:
        import pyarrow as pa

        return {"calls": self.calls, "max_ms": round(self.max_ms, 3),
                "total_ms": round(self.total_ms, 3),
                "rss_mb": [round(mb, 1) for mb in self.rss_mb],
                "rss_every": self.rss_every,
                "arrow_pool": pa.default_memory_pool().backend_name}  # fmt: skip


def release_free_memory(releases: Releases) -> None:
    """Free pages of glibc's arenas and Arrow's pool back to the OS (a few ms: off the hot
    path, in the recording thread)."""
    import pyarrow as pa

    t0 = time.perf_counter()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    pool = pa.default_memory_pool()
    if pool.backend_name != "system":  # the system pool's release is that same trim
        pool.release_unused()
    ms = (time.perf_counter() - t0) * 1e3
    releases.calls += 1
    releases.max_ms = max(releases.max_ms, ms)
    releases.total_ms += ms
    releases.add_rss(resident_mb())
