"""Live hands the memory its allocators keep back to the OS (simulator/live/memory.py): large
blocks get their own mappings even after glibc's dynamic threshold rose, and the periodic
release is counted and timed."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from simulator.live import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc's allocator only")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _mapped_bytes() -> int:
    """Bytes glibc holds in blocks of their own mapping (mallinfo2's hblkhd)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)


def test_after_fixing_the_threshold_a_large_block_has_its_own_mapping_again():
    big = np.ones(16 << 20, dtype=np.uint8)  # freed: a dynamic threshold rises to 16 MiB
    del big
    assert memory.fix_mmap_threshold()
    before = _mapped_bytes()
    block = np.ones(1 << 20, dtype=np.uint8)  # 1 MiB, above the fixed 128 KiB
    assert _mapped_bytes() - before >= 1 << 20
    del block
    assert _mapped_bytes() == before  # unmapped on free: back to the OS at once


def test_each_release_is_counted_and_timed():
    releases = memory.Releases()
    memory.release_free_memory(releases)
    memory.release_free_memory(releases)
    assert releases.calls == 2
    assert 0.0 < releases.max_ms <= releases.total_ms
    assert releases.as_dict()["calls"] == 2
