"""A real `ticktape live` against a real `ticktape feed serve`, killed with SIGKILL; then
`ticktape data recover` cuts every table at the last checkpoint all of them hold, and
`ticktape replay SESSION --latency recorded` reproduces every live decision up to there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import BUNDLED_DATA

TICKTAPE = Path(sys.executable).parent / "ticktape"
CRYPTO = ("policy.lot=0.01", "policy.max_position=0.1", "risk.max_position=1",
          "risk.max_order_size=1", "risk.max_notional=1e9")  # fmt: skip
SETS = [arg for s in CRYPTO for arg in ("--set", s)]


def _session(data_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    for path in data_dir.glob("*/*/*/meta.json"):
        try:
            return path.parent, json.loads(path.read_text())
        except json.JSONDecodeError:  # being replaced: read it again
            continue
    return None, {}


def _live_killed(tmp_path: Path, after_checkpoints: int, extra_s: float) -> Path:
    """Run live on the bundled tape at max speed; SIGKILL it `extra_s` after its
    `after_checkpoints`-th checkpoint; return the session directory it left."""
    data_dir = tmp_path / "data"
    feed = subprocess.Popen(
        [str(TICKTAPE), "feed", "serve", "--speed", "max", "--data-dir", str(BUNDLED_DATA)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert feed.stdout is not None
        words = feed.stdout.readline().split()
        url, rest = words[1].removesuffix("/stream"), words[3]
        live = subprocess.Popen(
            [str(TICKTAPE), "live", "--symbol", "btcusdt", "--strategy", "obi_mlp", *SETS,
             "--url", url, "--rest-url", rest, "--checkpoint", "0.3", "--no-dashboard",
             "--data-dir", str(data_dir), "--out", str(tmp_path / "reports")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < after_checkpoints:
            assert live.poll() is None, live.communicate()
            assert time.monotonic() < deadline, "no checkpoint came"
            checkpoint = _session(data_dir)[1].get("checkpoint")
            if checkpoint is not None:
                seen.add(checkpoint["seq"])
            time.sleep(0.005)
        time.sleep(extra_s)
        live.send_signal(signal.SIGKILL)
        live.communicate(timeout=20)
        assert live.returncode == -signal.SIGKILL
    finally:
        feed.send_signal(signal.SIGINT)
        feed.communicate(timeout=20)
    directory, meta = _session(data_dir)
    assert directory is not None
    assert meta["closed"] is False
    return directory


def _table(path: Path):
    return pq.read_table(path) if path.exists() else None


def _recover_and_replay(tmp_path: Path, directory: Path) -> dict[str, Any]:
    """Recover the killed session, replay it with its decision times; return the manifest."""
    checkpoint = json.loads((directory / "meta.json").read_text())["checkpoint"]
    recover = subprocess.run([str(TICKTAPE), "data", "recover", str(directory)],
                             capture_output=True, text=True)  # fmt: skip
    assert recover.returncode == 0, recover.stderr
    lines = recover.stdout.splitlines()
    assert "every table cut at its last checkpoint" in lines[0]
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["recovered"] is True
    for name, cut in meta["cut"].items():  # said per table, as the meta records it
        line = next(line for line in lines[1:] if line.split()[0] == name)
        assert line == f"  {name} {meta['rows'][name]:,} rows" + (f", {cut:,} cut" if cut else "")
    check = subprocess.run([str(TICKTAPE), "data", "check", str(directory)],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr  # a session like any other
    for kind in ("book", "trades", "status"):
        seq = pq.read_table(directory / f"{kind}.parquet").column("seq").to_pylist()
        assert max(seq) <= checkpoint["seq"]
    out = tmp_path / "replayed"
    replay = subprocess.run(
        [str(TICKTAPE), "replay", str(directory), "--strategy", "obi_mlp", *SETS,
         "--latency", "recorded", "--no-report", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["n_events"] == checkpoint["events"]
    for name, table in (("orders", "order_requests"), ("fills", "fills")):  # bit for bit
        recorded, replayed = (
            _table(directory / f"{table}.parquet"),
            pq.read_table(out / f"{name}.parquet"),
        )
        assert replayed.num_rows == checkpoint[name]
        if recorded is not None:
            assert recorded.equals(replayed)
        else:
            assert replayed.num_rows == 0
    return manifest  # type: ignore[no-any-return]


def test_a_killed_live_session_recovers_to_a_replayable_cut(tmp_path):
    directory = _live_killed(tmp_path, after_checkpoints=2, extra_s=0.2)
    replayed = _recover_and_replay(tmp_path, directory)
    assert replayed["summary"]["n_events"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("after_checkpoints", "extra_s"), [(1, 0.0), (1, 0.25), (2, 0.05), (3, 0.15)]
)
def test_sigkill_at_several_moments_recovers_to_a_replayable_cut(
    tmp_path, after_checkpoints, extra_s
):
    directory = _live_killed(tmp_path, after_checkpoints, extra_s)
    replayed = _recover_and_replay(tmp_path, directory)
    assert replayed["summary"]["n_events"] > 0
