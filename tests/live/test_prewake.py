"""Waking the network thread before a periodic stream's next frame (live/prewake.py): which
streams are forecast and when, the selector polling only around that time, and a live run at
1x that polls in those windows and replays to its digest."""

from __future__ import annotations

import json
import math
import random
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

from simulator.config import load_strategy
from simulator.live.prewake import GRACE_S, LEAD_S, Arrivals, PrewakeSelector
from tests.conftest import BUNDLED_DATA
from tests.live.processes import live_against_feed
from tests.live.test_parity import _replay_digest


def _forecast_hits(gaps: list[float]) -> tuple[int, int]:
    """(frames forecast, frames that came within their window) for arrivals `gaps` apart."""
    arrivals, now, forecast, hits = Arrivals(), 100.0, 0, 0
    for gap in gaps:
        due = arrivals.due
        now += gap
        if due != math.inf:
            forecast += 1
            hits += due - LEAD_S <= now < due + GRACE_S
        arrivals.note("btcusdt@depth@100ms", now)
    return forecast, hits


def test_a_steady_100_ms_stream_is_forecast_within_its_window():
    rng = random.Random(7)
    gaps = [0.1 + rng.uniform(-0.0015, 0.0015) for _ in range(200)]  # the recording's spread
    forecast, hits = _forecast_hits(gaps)
    assert forecast >= 180  # all but the warm-up
    assert hits >= 0.95 * forecast


def test_irregular_or_fast_streams_are_not_forecast():
    rng = random.Random(7)
    trades = [rng.expovariate(1 / 0.03) for _ in range(200)]  # trades: no period
    assert _forecast_hits(trades) == (0, 0)
    fast = [0.005] * 200  # depth@100ms at 20x: polling would take most of the time
    assert _forecast_hits(fast) == (0, 0)


def test_a_stream_that_stops_being_steady_is_no_longer_forecast():
    arrivals, now = Arrivals(), 0.0
    for _ in range(50):
        now += 0.1
        arrivals.note("a", now)
    assert arrivals.due == now + 0.1 or abs(arrivals.due - (now + 0.1)) < 1e-9
    rng = random.Random(3)
    for _ in range(50):
        now += rng.choice((0.02, 0.3))
        arrivals.note("a", now)
    assert arrivals.due == math.inf
    arrivals.note("b", now)  # a stream's first frame forecasts nothing
    assert arrivals.due == math.inf


def _selector(due: float) -> tuple[PrewakeSelector, socket.socket, socket.socket]:
    a, b = socket.socketpair()
    selector = PrewakeSelector(lambda: due)
    selector.register(a, selectors.EVENT_READ)
    return selector, a, b


def test_without_a_forecast_the_selector_sleeps_as_epoll():
    selector, a, b = _selector(math.inf)
    with selector, a, b:
        cpu, start = time.thread_time(), time.monotonic()
        assert selector.select(0.05) == []
        wall = time.monotonic() - start
        assert wall >= 0.05
        assert time.thread_time() - cpu < 0.5 * wall  # slept, did not spin
        assert selector.stats.windows == 0


def test_the_selector_polls_through_the_window_and_wakes_for_its_start():
    due = time.monotonic() + 0.05
    selector, a, b = _selector(due)
    with selector, a, b:
        assert selector.select(0.005) == []  # the window has not begun: a plain wait
        assert selector.stats.windows == 0
        assert selector.select(1.0) == []  # wakes for the window, polls to its end
        assert time.monotonic() >= due + GRACE_S
        assert selector.stats.windows == 1
        assert selector.stats.frames_in_window == 0
        sender = threading.Timer(0.05, b.send, (b"x",))
        sender.start()
        cpu, start = time.thread_time(), time.monotonic()
        ((key, events),) = selector.select(None)  # after the window: sleeps until data
        sender.join()
        assert key.fileobj is a
        assert events == selectors.EVENT_READ
        assert time.thread_time() - cpu < 0.5 * (time.monotonic() - start)


def test_a_frame_inside_the_window_is_returned_at_once():
    due = time.monotonic() + 0.001  # now is inside the window (it starts LEAD_S before)
    selector, a, b = _selector(due)
    with selector, a, b:
        b.send(b"x")
        start = time.monotonic()
        ((key, _),) = selector.select(1.0)
        assert key.fileobj is a
        assert time.monotonic() - start < 0.5  # at once, not at the timeout
        assert selector.stats.as_dict() == {"windows": 1, "frames_in_window": 1}


def _live_1x(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """`ticktape feed serve` at 1x (the first 500 messages: ~5 s, a depth diff every 100 ms)
    and `ticktape live` as real processes; the run's manifest."""
    live = live_against_feed(
        ["binance/BTCUSDT/2024-08-08", "--speed", "1", "--limit", "500",
         "--data-dir", str(BUNDLED_DATA)],
        lambda ws, rest: [
            "--symbol", "btcusdt", "--strategy", "obi_mlp", "--url", ws.removesuffix("/stream"),
            "--rest-url", rest, "--until-idle", "1", "--no-dashboard",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports"), *extra],
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    (manifest,) = (tmp_path / "reports").glob("*/manifest.json")
    return dict(json.loads(manifest.read_text()))


def test_live_at_1x_polls_around_the_depth_frames_and_replays_to_its_digest(tmp_path):
    manifest = _live_1x(tmp_path)
    live = manifest["live"]
    prewake = live["prewake"]
    # ~50 depth frames, forecast from the 10th while steady (a loaded host's jitter may
    # interrupt that: how many is not asserted)
    assert prewake["windows"] > 0, prewake
    assert prewake["frames_in_window"] > 0, prewake
    assert live["network_thread"]["cpu_share"] < 0.4  # polling ~7% of the time, not always
    assert live["inbox"]["overflowed"] == 0
    session = next((tmp_path / "data").glob("binance/BTCUSDT/*"))
    assert _replay_digest(tmp_path, session, load_strategy("obi_mlp")) == manifest["digest"]


def test_no_prewake_leaves_the_loop_on_plain_epoll(tmp_path):
    live = _live_1x(tmp_path, "--no-prewake", "--no-keep-warm")["live"]
    assert "prewake" not in live
