"""Flow control between the network reader and the pipeline: a full inbox pauses reading the
socket (TCP slows the sender) instead of dropping trades and depth; the `drop` policy still
declares gaps and resyncs. Real websocket servers on 127.0.0.1 and the real `feed serve`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from simulator.errors import ConfigError
from simulator.feedsim.server import serving
from simulator.feedsim.synthetic import synthetic_tape
from simulator.live.connection import FeedConnection
from simulator.live.frames import Direction, Frame, Stamper
from simulator.live.inbox import GAP_DIRECTION, Inbox
from tests.live.test_connection import (
    FakeVenue,
    assert_no_hole,
    counter,
    data,
    feed_args,
    wait_until,
)
from tests.live.test_parity import _config, _live, _replay_digest


def _trades(inbox: Inbox, n: int, stamper: Stamper) -> None:
    for _ in range(n):
        inbox.put(stamper.stamp(1, Direction.IN, "x@trade", b"t"))


def test_a_full_inbox_asks_the_reader_to_wait_and_a_drain_lets_it_go():
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(8, conflatable=lambda s: s.endswith("@bookTicker"))
    assert inbox.pause_at == 6  # the last quarter is room for frames that cannot wait
    _trades(inbox, 5, stamper)
    assert not inbox.full
    _trades(inbox, 1, stamper)
    assert inbox.full

    async def reader() -> float:
        t0 = time.perf_counter()
        waiting = asyncio.get_running_loop().create_task(inbox.wait_for_room())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert inbox.paused
        drained = await asyncio.to_thread(inbox.drain, 0.0)
        assert len(drained) == 6
        await asyncio.wait_for(waiting, 2)
        return time.perf_counter() - t0

    waited = asyncio.run(reader())
    assert not inbox.full
    assert not inbox.paused
    assert inbox.stats.pauses == 1
    assert 0.04 <= inbox.stats.paused_s <= waited
    assert inbox.stats.longest_pause_s == inbox.stats.paused_s
    _trades(inbox, 8, stamper)  # frames that do not wait (timer, REST) may fill the room
    _trades(inbox, 2, stamper)  # past the capacity: dropped, counted, declared as a gap
    frames = inbox.drain(0.0)
    assert [f.direction for f in frames][-1] == GAP_DIRECTION
    assert frames[-1].payload == b"2"
    assert (inbox.stats.overflowed, inbox.stats.high_water) == (2, 8)
    _trades(inbox, 6, stamper)
    inbox.close()  # a stopping session releases the reader and never pauses it again
    asyncio.run(asyncio.wait_for(inbox.wait_for_room(), 1))
    assert inbox.stats.pauses == 1


def test_the_drop_policy_never_pauses_and_a_bad_policy_is_refused():
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(4, conflatable=lambda s: False, overflow="drop")
    _trades(inbox, 6, stamper)
    assert not inbox.full
    assert inbox.stats.overflowed == 2
    with pytest.raises(ConfigError, match=r"inbox overflow must be one of \('pause', 'drop'\)"):
        Inbox(4, conflatable=lambda s: False, overflow="block")  # type: ignore[arg-type]


def _quotes(inbox: Inbox, n: int, stamper: Stamper) -> None:
    for _ in range(n):
        inbox.put(stamper.stamp(1, Direction.IN, "x@bookTicker", b"q"))


def test_quotes_conflate_only_once_the_frames_waiting_would_take_past_the_budget():
    """The pipeline runs a frame in 6 us in its bursts: 166 waiting frames are under 1 ms of
    its work and every quote is kept (more than any fixed count such as 64); past that each
    newer quote replaces the waiting one, trades stay."""
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(1_000, conflatable=lambda s: s.endswith("@bookTicker"), backlog=500,
                  conflate_after_ns=1e6)  # fmt: skip
    _quotes(inbox, 200, stamper)  # nothing timed yet: nothing to go by
    assert inbox.stats.conflated == 0
    inbox.drain(0.0)
    inbox.ran(200, 1_200_000)
    assert inbox.cost_ns == 6_000
    _quotes(inbox, 167, stamper)  # 166 waiting x 6 us = 0.996 ms when the last one came
    assert (inbox.stats.conflated, len(inbox)) == (0, 167)
    _quotes(inbox, 1, stamper)  # 167 x 6 us: past 1 ms, it replaces seq 366
    _trades(inbox, 1, stamper)
    _quotes(inbox, 1, stamper)  # replaces seq 367
    assert [f.seq for f in inbox.drain(0.0)][-4:] == [364, 365, 368, 369]
    assert inbox.stats.conflated == 2


def test_the_cost_per_frame_is_a_median_of_bursts_once_a_burst_has_run():
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(100, conflatable=lambda s: s.endswith("@bookTicker"), backlog=50,
                  conflate_after_ns=1e6)  # fmt: skip
    for elapsed in (5_000, 3_000_000, 3_000_000):  # a connect, then a model 3 ms a frame
        inbox.ran(1, elapsed)
    assert inbox.cost_ns == 3_000_000  # slow from the start: lone runs are all there is
    _quotes(inbox, 2, stamper)  # one waiting frame is 3 ms of work: the second replaces it
    assert inbox.stats.conflated == 1
    inbox.ran(100, 600_000)  # the first burst: 6 us a frame, lone runs no longer count
    assert inbox.cost_ns == 6_000
    inbox.ran(1, 5_000_000)
    assert inbox.cost_ns == 6_000
    for frames, elapsed in ((20, 100_000), (16, 50_000_000), (50, 300_000)):
        inbox.ran(frames, elapsed)  # one burst the OS interrupted for 50 ms: the median
    assert inbox.cost_ns == 6_000  # of 6, 5, 3,125 and 6 us


def test_a_paused_reader_loses_nothing_and_its_silence_is_no_dead_peer():
    """A consumer that drains every 20 ms and once stalls for 0.8 s, longer than the dead-peer
    (0.3 s) and idle (0.4 s) timeouts, behind a 40-frame inbox: the reader pauses, nothing
    overflows, no timer fires, no reconnect, every message arrives in order."""
    inbox = Inbox(40, conflatable=lambda s: False)
    got: list[Frame] = []
    stop_consumer = threading.Event()

    def consume() -> None:
        stalled = False
        while not stop_consumer.is_set():
            got.extend(inbox.drain(0.02))
            time.sleep(0.02)
            if not stalled and len(got) > 200:
                stalled = True
                time.sleep(0.8)

    async def main() -> Any:
        async with FakeVenue(period=0.001) as venue:
            args = feed_args(venue, [], sink=inbox.put, idle_timeout_s=0.4,
                             dead_peer_timeout_s=0.3)  # fmt: skip
            feed = FeedConnection(*args, backpressure=inbox)
            consumer = threading.Thread(target=consume)
            consumer.start()
            task = asyncio.get_running_loop().create_task(feed.run())
            await wait_until(lambda: inbox.stats.longest_pause_s > 0.5 and len(got) > 1_500)
            feed.stop()
            await asyncio.wait_for(task, 5)  # the consumer drains until the socket has closed
            stop_consumer.set()
            await asyncio.to_thread(consumer.join)
            return feed.stats

    stats = asyncio.run(asyncio.wait_for(main(), 20))
    got.extend(inbox.drain(0.0))
    assert inbox.stats.overflowed == 0
    assert inbox.stats.high_water <= inbox.pause_at + 1  # a CLOSE frame may come on top
    assert inbox.stats.pauses >= 2
    assert (stats.dead_peer_timeouts, stats.idle_timeouts, stats.connects) == (0, 0, 1)
    assert_no_hole(got)
    counters = [counter(f) for f in data(got)]
    assert counters == sorted(counters)
    assert got[-1].direction == Direction.CLOSE
    assert got[-1].payload == b"1000 stop"


@pytest.mark.parametrize("overflow", ["pause", "drop"])
def test_a_slow_pipeline_at_max_speed_pauses_the_feed_or_declares_gaps(tmp_path, overflow):
    """Depth and trades at max speed into a 1 ms/event pipeline and a 64-frame inbox: paused,
    every depth diff and trade arrives (no gap); dropped, any loss is a gap and a resync (the
    reader may also run the slow pipeline itself and so never overflow).
    Either way the recording replays to the live digest."""
    from tests.live.test_parity import _SlowModel

    class _Slow(_SlowModel):
        def predict(self, features, event_index: int):
            time.sleep(0.001)
            return self._inner.predict(features, event_index)

    config = _config()
    tape = synthetic_tape(2_000, seed=2)
    with serving(tape, speed=None) as server:
        result = _live(tmp_path, server, config, inbox_capacity=64, wrap_model=_Slow,
                       inbox_overflow=overflow)  # fmt: skip
    ((name, digest),) = result.digests.items()
    inbox: Any = result.live_facts[name]["inbox"]
    normalizer: Any = result.live_facts[name]["normalizer"]
    assert inbox["overflow"] == overflow
    assert inbox["high_water"] <= 64
    if overflow == "pause":
        assert inbox["overflowed"] == 0
        # paused, unless the reader ran the slow pipeline itself throughout (idle hand-off):
        # then it read no faster than the pipeline (the pausing is tested with a stalled
        # consumer above and with the CLI below)
        assert (inbox["pauses"] > 0) == (inbox["paused_s"] > 0)
        assert normalizer["gaps"] == 0
        assert normalizer["resyncs"] == 0
        assert normalizer["trades"] == 800  # two in every five messages: all of them
    elif inbox["overflowed"]:  # dropped: every loss is a declared gap, never silent
        assert inbox["pauses"] == 0
        assert normalizer["gaps"] > 0
        assert normalizer["trades"] < 800
    else:  # the network thread ran the slow pipeline itself the whole time (idle hand-off),
        # so it read no faster than the pipeline and nothing overflowed: then nothing is lost
        assert inbox["pauses"] == 0
        assert normalizer["gaps"] == 0
        assert normalizer["trades"] == 800
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_ticktape_live_at_max_speed_against_feed_serve_drops_nothing(tmp_path):
    """The CLI against the real `feed serve --synthetic --speed max` for a few seconds: the
    inbox stays under its pause mark, nothing overflows; the summary and the dashboard (its
    last view, printed at the end off a terminal) say so."""
    bin_dir = Path(sys.executable).parent
    serve = [str(bin_dir / "ticktape"), "feed", "serve", "--synthetic", "2000000", "--speed",
             "max"]  # fmt: skip
    with subprocess.Popen(serve, stdout=subprocess.PIPE, text=True) as feed:
        try:
            assert feed.stdout is not None
            first = feed.stdout.readline().split()
            url, rest = first[1].removesuffix("/stream"), first[3]
            live = subprocess.run(
                [str(bin_dir / "ticktape"), "live", "--symbol", "btcusdt", "--strategy",
                 "obi_mlp", *(f"--set={s}" for s in _crypto()), "--url", url, "--rest-url",
                 rest, "--duration", "4", "--dashboard", "--inbox", "2000",
                 "--conflate-after", "2", "--conflate-backlog", "1000",
                 "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports")],
                capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "240"},
            )  # fmt: skip
        finally:
            feed.terminate()
            feed.wait(10)
    assert live.returncode == 0, live.stderr
    assert ", overflow 0 (declared gaps)" in live.stdout
    assert "overflow gaps 0 · gaps 0 · reading paused " in live.stdout  # the dashboard
    manifest = json.loads(next((tmp_path / "reports").glob("*/manifest.json")).read_text())
    inbox = manifest["live"]["inbox"]
    assert inbox["overflowed"] == 0
    assert inbox["overflow"] == "pause"
    assert inbox["high_water"] <= 1_500 + 1  # the pause mark (+ a CLOSE)
    assert inbox["cost_us"] > 0  # the pipeline's runs were timed for the conflation rule
    assert manifest["live"]["network"]["frames"] > 5_000
    assert manifest["live"]["normalizer"]["gaps"] == 0


def _crypto() -> tuple[str, ...]:
    from tests.live.test_parity import CRYPTO

    return CRYPTO
