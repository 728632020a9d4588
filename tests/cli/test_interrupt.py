"""Ctrl-C (SIGINT) sent to a real `ticktape` process: exit code 130, never an abort or a
traceback, and no unfinished run left behind (an existing run in --out stays as it was)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.sources.synthetic import write_synthetic_quotes, write_synthetic_session
from tests.conftest import REPO

TICKTAPE = Path(sys.executable).parent / "ticktape"
INTERRUPTED = "Interrupted: stopped by Ctrl-C; nothing unfinished kept"


@pytest.fixture(scope="module")
def big_quotes(tmp_path_factory):
    """Quotes enough for a replay of several seconds (obi_rule: ~1 µs per event and more)."""
    return write_synthetic_quotes(tmp_path_factory.mktemp("big") / "quotes.parquet", 1_500_000)


def _staging(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial-")]


def _wait_for(condition, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"ended before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "the point to interrupt at never came"
        time.sleep(0.01)


def _interrupt(args, out, when, *, times=1, group=False):
    """Start `ticktape ARGS --out OUT`, wait until `when(out)`, send SIGINT `times` times."""
    proc = subprocess.Popen(
        [str(TICKTAPE), *args, "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=group,
    )  # fmt: skip
    _wait_for(lambda: when(out), proc)
    for _ in range(times):
        if group:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


def _started(out: Path) -> bool:
    """The run directory (or its staging directory) exists."""
    return out.exists() or bool(_staging(out))


def _recording(out: Path) -> bool:
    """The run has flushed decisions: the event loop and the writer thread are busy."""
    return any((d / "decisions.parquet").exists() for d in (out, *_staging(out)))


def _recording_aside(out: Path) -> bool:
    """As _recording, for a new run beside an existing one in `out`."""
    return any((d / "decisions.parquet").exists() for d in _staging(out))


def _assert_clean_interrupt(rc, stderr, out, *, before=None):
    assert rc == 130, stderr  # not 1 ("Aborted!"), not -6 (SIGABRT)
    assert "Traceback" not in stderr
    assert "terminate called" not in stderr
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert _staging(out) == []
    if before is None:
        assert not out.exists()
    else:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("when", "times"), [(_started, 1), (_recording, 1), (_recording, 4)],
    ids=["at-start", "while-recording", "four-times"],
)  # fmt: skip
def test_sigint_during_replay_exits_130_and_keeps_nothing(big_quotes, tmp_path, when, times):
    out = tmp_path / "run"
    args = ["replay", str(big_quotes), "--strategy", "obi_rule", "--no-report"]
    rc, _, stderr = _interrupt(args, out, when, times=times)
    _assert_clean_interrupt(rc, stderr, out)


def test_sigint_into_an_existing_run_keeps_that_run_whole(big_quotes, tmp_path):
    out = tmp_path / "run"
    small = write_synthetic_quotes(tmp_path / "small.parquet", 2_000)
    args = ["replay", str(small), "--strategy", "obi_rule", "--no-report", "--out", str(out)]
    subprocess.run([str(TICKTAPE), *args], cwd=REPO, check=True, capture_output=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "manifest.json" in before
    args = ["replay", str(big_quotes), "--strategy", "obi_rule", "--no-report"]
    rc, _, stderr = _interrupt(args, out, _recording_aside)
    _assert_clean_interrupt(rc, stderr, out, before=before)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["obi_mlp", "gru_stream"])
def test_sigint_during_a_model_replay(tmp_path, strategy):
    session = write_synthetic_session(tmp_path / "session", 600_000)
    out = tmp_path / "run"
    args = ["replay", str(session), "--strategy", strategy, "--no-report"]
    for when in (_started, _recording):
        rc, _, stderr = _interrupt(args, out, when, group=True)
        _assert_clean_interrupt(rc, stderr, out)


@pytest.mark.slow
def test_sigint_during_stress_stops_the_workers(big_quotes, tmp_path):
    out = tmp_path / "stress"
    args = ["stress", str(big_quotes), "--strategy", "obi_rule", "--scenario", "calm",
            "--scenario", "dirty_feed", "--workers", "2", "--no-report"]  # fmt: skip
    rc, _, stderr = _interrupt(args, out, _recording_stress, group=True)
    _assert_clean_interrupt(rc, stderr, out)


def _recording_stress(out: Path) -> bool:
    return any(any(s.glob("*/decisions.parquet")) for s in _staging(out))


@pytest.mark.slow
def test_sigint_during_train_keeps_nothing(tmp_path):
    out = tmp_path / "model"
    args = ["train", "nasdaq/GOOG/2012-06-21", "--strategy", "obi_mlp"]
    rc, _, stderr = _interrupt(args, out, lambda _: _sleep(4.0), group=True)
    _assert_clean_interrupt(rc, stderr, out)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True
