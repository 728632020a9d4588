"""Live hands the memory its allocators keep back to the OS (simulator/live/memory.py): large
blocks get their own mappings even after glibc's dynamic threshold rose, and the periodic
release is counted and timed; what a live run sets for the process is undone after it, or
(the threshold, which glibc cannot undo) set only by the command whose process is the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.server import serving
from simulator.live import memory
from simulator.live.run import LiveOptions, LiveView, run_live
from tests.conftest import REPO
from tests.live.test_keep_warm import CRYPTO

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="glibc's allocator only")


_BLOCK_SCRIPT = """
import ctypes, json, sys
import numpy as np
from simulator.live import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
big = np.ones(16 << 20, dtype=np.uint8)  # freed: glibc's dynamic threshold rises to 16 MiB
del big
fixed = memory.fix_mmap_threshold() if sys.argv[1] == "fix" else False
before = libc.mallinfo2().hblkhd
block = np.ones(4 << 20, dtype=np.uint8)
mapped = libc.mallinfo2().hblkhd - before
del block
after_free = libc.mallinfo2().hblkhd - before
print(json.dumps({"fixed": fixed, "mapped": mapped, "after_free": after_free}))
"""


def _large_block(mode: str) -> dict[str, int]:
    """In a fresh interpreter (its heap has no 4 MiB hole yet): how a 4 MiB block is held."""
    done = subprocess.run([sys.executable, "-c", _BLOCK_SCRIPT, mode], capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return dict(json.loads(done.stdout))


def test_after_fixing_the_threshold_a_large_block_has_its_own_mapping_again():
    assert _large_block("keep") == {"fixed": False, "mapped": 0, "after_free": 0}  # the heap
    fixed = _large_block("fix")
    assert fixed["fixed"] == 1
    assert fixed["mapped"] >= 4 << 20  # its own mapping ...
    assert fixed["after_free"] == 0  # ... unmapped on free: back to the OS at once


def test_each_release_is_counted_and_timed():
    releases = memory.Releases()
    memory.release_free_memory(releases)
    memory.release_free_memory(releases)
    assert releases.calls == 2
    assert 0.0 < releases.max_ms <= releases.total_ms
    assert releases.as_dict()["calls"] == 2


def test_rss_after_the_releases_is_kept_and_stays_short_over_a_long_run():
    releases = memory.Releases()
    memory.release_free_memory(releases)
    assert len(releases.rss_mb) == 1
    assert 1.0 < releases.rss_mb[0] < 1e6
    for _ in range(2 * memory.RSS_KEPT + 6):  # the samples thin out evenly: every 2nd, 4th...
        releases.calls += 1
        releases.add_rss(float(releases.calls))
    assert releases.rss_every == 4
    assert len(releases.rss_mb) < memory.RSS_KEPT
    assert releases.rss_mb[1:4] == [5.0, 9.0, 13.0]  # calls 1, 5, 9, 13: every 4th
    assert releases.as_dict()["rss_every"] == 4


_THP_SCRIPT = """
import sys
from pathlib import Path
from simulator.live import memory

def enabled():
    status = Path("/proc/self/status").read_text()
    return status.split("THP_enabled:")[1].split()[0] if "THP_enabled:" in status else "?"

before = enabled()
done = memory.disable_huge_pages()
print(before, done, enabled())
"""


def test_huge_pages_are_disabled_for_the_process():
    done = subprocess.run([sys.executable, "-c", _THP_SCRIPT], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    before, disabled, after = done.stdout.split()
    if before == "?":
        pytest.skip("this kernel does not report THP_enabled")
    assert (disabled, after) == ("True", "0")  # before: "1", unless a parent disabled them


def test_ticktape_live_has_mimalloc_give_freed_pages_back_at_once(tmp_path):
    """The live command sets MIMALLOC_PURGE_DELAY before Arrow's first allocation: mimalloc
    (verbose) reports the option as it read it when it started."""
    ticktape = Path(sys.executable).parent / "ticktape"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    done = subprocess.run(
        [str(ticktape), "live", "--symbol", "btcusdt", "--strategy", "obi_mlp",
         "--url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9", "--duration", "0.5",
         "--no-dashboard", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**env, "MIMALLOC_VERBOSE": "1"},
    )  # fmt: skip
    if "mimalloc: process init" not in done.stderr:
        pytest.skip("pyarrow without mimalloc")
    assert "option 'purge_delay': 0" in done.stderr


_THRESHOLD_SCRIPT = """
import ctypes, json, sys, threading
from pathlib import Path
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

tmp = Path(sys.argv[2])
if sys.argv[1] == "library":
    from simulator.config import apply_overrides, load_strategy
    from simulator.feedsim.tape import load_tape
    from simulator.feedsim.server import serving
    from simulator.live.run import LiveOptions, run_live

    tape = load_tape(["binance/BTCUSDT/2024-08-08"], Path(sys.argv[3])).slice(0, 1_000)
    config = apply_overrides(load_strategy("obi_rule"), sets=json.loads(sys.argv[4]))
    with serving(tape, speed=None) as server:
        options = LiveOptions(symbols=("btcusdt",), data_dir=tmp / "data",
                              out_root=tmp / "reports", url=server.ws_url,
                              rest_url=server.rest_url, until_idle_s=0.3)
        run_live(config, options, stop=threading.Event())
else:  # the command, against a feed that is not there
    import cli
    sys.argv = ["ticktape", "live", "--symbol", "btcusdt", "--strategy", "obi_mlp", "--url",
                "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9", "--duration", "0.2",
                "--no-dashboard", "--data-dir", str(tmp / "data"), "--out", str(tmp / "out")]
    try:
        cli.main()
    except SystemExit:
        pass
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
big = np.ones(16 << 20, dtype=np.uint8)  # freed: a dynamic threshold rises to 16 MiB
del big
before = libc.mallinfo2().hblkhd
block = np.ones(4 << 20, dtype=np.uint8)
found = {"mapped": libc.mallinfo2().hblkhd - before}
import pyarrow as pa  # after the run: the command set jemalloc's options before its import
import pyarrow.compute as pc

def anon_mb():
    return int(Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]) / 1024

def recording():  # a thread allocating from Arrow's pool, as the recording's do
    ones = pa.array(np.ones(4096, dtype=np.int64))
    before = anon_mb()
    held = [pc.add(ones, i) for i in range(2000)]  # 2,000 buffers of 32 KiB
    found["allocated"] = anon_mb() - before
    del held
    found["kept"] = anon_mb() - before

thread = threading.Thread(target=recording)
thread.start()
thread.join()
found["pool"] = pa.default_memory_pool().backend_name
print(json.dumps(found))
"""


@pytest.mark.parametrize(("caller", "fixed"), [("library", False), ("command", True)])
def test_only_the_live_command_fixes_the_mmap_threshold_and_arrows_pool_for_good(
    tmp_path, caller, fixed
):
    """glibc cannot go back to moving its threshold once it was set: run_live, called from a
    library, leaves it moving and Arrow's pool as it was; `ticktape live`, whose process is
    the run, fixes the threshold and has Arrow allocate from jemalloc (where it is built in)."""

    env = {k: v for k, v in os.environ.items() if not k.startswith("JE_ARROW_")}
    done = subprocess.run(
        [sys.executable, "-c", _THRESHOLD_SCRIPT, caller, str(tmp_path), str(REPO / "data"),
         json.dumps(CRYPTO)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert (found["mapped"] >= 4 << 20) is fixed  # own mapping only under a fixed threshold
    default = pa.default_memory_pool().backend_name  # this process's: nobody switched it
    jemalloc = "jemalloc" in pa.supported_memory_backends()
    assert found["pool"] == ("jemalloc" if fixed and jemalloc else default)
    assert found["allocated"] > 50  # 64 MB touched
    if found["pool"] == "jemalloc":  # freed pages back at once, not after its decay (1 s)
        assert found["kept"] < 0.2 * found["allocated"]


def test_a_live_run_disables_huge_pages_while_it_runs_and_restores_the_setting_after(
    tmp_path, tape
):
    before = memory.huge_pages_disabled()
    if before is None:
        pytest.skip("this kernel does not report PR_GET_THP_DISABLE")

    seen: list[bool | None] = []

    def on_view(view: LiveView) -> None:
        seen.append(memory.huge_pages_disabled())

    config = apply_overrides(load_strategy("obi_rule"), sets=CRYPTO)
    for setting in (False, True):  # either setting the caller had comes back
        assert memory.disable_huge_pages(setting)
        seen.clear()
        with serving(tape.slice(0, 1_000), speed=20.0) as server:
            options = LiveOptions(symbols=("btcusdt",), data_dir=tmp_path / f"data{setting}",
                                  out_root=tmp_path / "reports", url=server.ws_url,
                                  rest_url=server.rest_url, until_idle_s=0.3)  # fmt: skip
            run_live(config, options, stop=threading.Event(), on_view=on_view)
        assert seen
        assert set(seen) == {True}
        assert memory.huge_pages_disabled() is setting
    memory.disable_huge_pages(before)
