"""`ticktape live --busy-poll`: the network thread polls its sockets without ever sleeping
(live/network.py BusyPollSelector). What it decides is unchanged: the run replays to its
digest; the thread's CPU time is (nearly) its wall time; keep-warm's idle calls still run."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from simulator.config import load_strategy
from simulator.live.network import BusyPollSelector
from tests.conftest import BUNDLED_DATA
from tests.live.processes import live_against_feed
from tests.live.test_parity import _replay_digest

BTC = "binance/BTCUSDT/2024-08-08"


def _cpu_share_of_select(
    selector: selectors.BaseSelector, wait_s: float
) -> tuple[float, list[tuple[selectors.SelectorKey, int]]]:
    """Thread CPU time over wall time of one `select(wait_s)` with nothing to read."""
    cpu, wall = time.thread_time(), time.monotonic()
    ready = selector.select(wait_s)
    return (time.thread_time() - cpu) / (time.monotonic() - wall), ready


def test_the_selector_spins_until_the_timeout_and_returns_what_is_ready():
    a, b = socket.socketpair()
    with a, b, BusyPollSelector() as busy, selectors.EpollSelector() as plain:
        for sel in (busy, plain):
            sel.register(a, selectors.EVENT_READ)
        start = time.monotonic()
        busy_share, ready = _cpu_share_of_select(busy, 0.05)
        assert ready == []
        assert time.monotonic() - start >= 0.05
        plain_share, _ = _cpu_share_of_select(plain, 0.05)
        # spinning, the thread runs whenever the host gives it a core; sleeping, it does not
        assert busy_share > 0.3, (busy_share, plain_share)
        assert busy_share > 5 * plain_share, (busy_share, plain_share)
        threading.Timer(0.02, b.send, (b"x",)).start()
        start = time.monotonic()
        ((key, events),) = busy.select(None)  # None: until an event comes
        assert key.fileobj is a
        assert events == selectors.EVENT_READ
        assert time.monotonic() - start < 5.0
        assert busy.select(0) != []  # still unread: ready at once


def _live_cli(tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    """`ticktape feed serve` (5x, the first 1,500 messages: a frame every few ms, the feed idle
    in between) and `ticktape live` as real processes; the run's manifest."""
    live = live_against_feed(
        [BTC, "--speed", "5", "--limit", "1500", "--data-dir", str(BUNDLED_DATA)],
        lambda ws, rest: [
            "--symbol", "btcusdt", "--strategy", "obi_mlp", "--url", ws.removesuffix("/stream"),
            "--rest-url", rest, "--until-idle", "1", "--no-dashboard",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / name), *extra],
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    (manifest,) = (tmp_path / name).glob("*/manifest.json")
    return dict(json.loads(manifest.read_text()))


@pytest.mark.parametrize("busy_poll", [True, False], ids=["busy-poll", "sleeping"])
def test_live_with_busy_poll_replays_to_its_digest_and_spends_the_thread(tmp_path, busy_poll):
    """Both ways a live run replays to its own digest (parity); busy polling, the network
    thread's CPU time is most of its wall time, sleeping in epoll a small part of it (the feed
    is idle between frames); the keep-warm dry passes run either way, nothing is dropped."""
    manifest = _live_cli(tmp_path, "reports", *(["--busy-poll"] if busy_poll else []))
    live = manifest["live"]
    thread = live["network_thread"]
    assert thread["busy_poll"] is busy_poll
    if busy_poll:  # the host may hand the spinning thread less than a whole core
        assert thread["cpu_share"] > 0.4, thread
    else:
        assert thread["cpu_share"] < 0.4, thread
    assert live["inbox"]["warm_passes"] > 0
    assert live["inbox"]["overflowed"] == 0
    assert live["normalizer"]["gaps"] == 0
    assert manifest["summary"]["n_events"] > 100
    session = next((tmp_path / "data").glob("binance/BTCUSDT/*"))
    config = load_strategy("obi_mlp")
    assert _replay_digest(tmp_path, session, config) == manifest["digest"]
