"""Memory the allocators keep after a long live run freed it goes back to the OS, so RSS stays
flat at max speed.

What grew without this (benchmarks/live_soak.py, obi_mlp on the synthetic feed at max speed,
with the rare tables already spilled; the Python heap and Arrow's allocated bytes were flat):
glibc's arenas, by their free part, and what the allocators held beyond that. glibc's mmap
threshold is dynamic: after the first large block is freed it rises (up to 32 MiB), so the
decision chunks' column copies (512 KiB each), numpy temporaries and frame buffers come from
the arenas, where freed space fragments and stays resident. Two settings, measured together:
- `fix_mmap_threshold`: a fixed 128 KiB threshold (glibc's initial value, now kept) gives the
  large blocks their own mappings, returned on free;
- `release_free_memory`, called at every recording checkpoint (30 s): `malloc_trim(0)` returns
  the free pages inside the arenas, and Arrow's pool (mimalloc) returns what it holds unused.
10-minute soaks on a shared 2-core host, RSS sampled every 30 s after the first minute:
without them 407-487 MB (one run, 26.1k frames/s), with them 378-427 and 396-438 MB (two runs,
20.4k and 27.3k frames/s; a release takes ~18 ms on average, 56 ms at most). The samples swing
by ~40 MB between checkpoints, so a 10-minute run's slope is only good to ~2 MB/min (after the
third minute: +2.5 without, +0.3 and +2.2 with).
A platform without glibc (macOS, musl) keeps its allocator as it is: both are no-ops there.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

M_MMAP_THRESHOLD: Final = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD: Final = 128 * 1024


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


def fix_mmap_threshold() -> bool:
    """Blocks of 128 KiB and more get their own mappings for the rest of the process (glibc);
    False where that could not be set."""
    return _LIBC is not None and _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


@dataclass(slots=True)
class Releases:
    """What `release_free_memory` cost: calls, and their longest and total time."""

    calls: int = 0
    max_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"calls": self.calls, "max_ms": round(self.max_ms, 3),
                "total_ms": round(self.total_ms, 3)}  # fmt: skip


def release_free_memory(releases: Releases) -> None:
    """Free pages of glibc's arenas and Arrow's pool back to the OS (a few ms: off the hot
    path, in the recording thread)."""
    t0 = time.perf_counter()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    pa.default_memory_pool().release_unused()
    ms = (time.perf_counter() - t0) * 1e3
    releases.calls += 1
    releases.max_ms = max(releases.max_ms, ms)
    releases.total_ms += ms
