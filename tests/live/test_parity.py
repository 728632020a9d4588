"""Live against the local feed server, then the recording replayed with its recorded decision
times: decisions, orders and fills identical (equal digests), faults injected or not."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.faults import parse_faults
from simulator.feedsim.server import serving
from simulator.feedsim.tape import load_tape
from simulator.live.run import LiveOptions, LiveResult, run_live
from simulator.runtime import replay
from simulator.session import resolve_session
from simulator.types import StatusCode
from tests.conftest import REPO

# BTC is priced in tens of thousands: trade hundredths, with limits to match
CRYPTO = (
    "policy.lot=0.01",
    "policy.max_position=0.1",
    "risk.max_position=1",
    "risk.max_order_size=1",
    "risk.max_notional=1e9",
)


def _config(*extra: str):
    return apply_overrides(load_strategy("obi_mlp"), sets=(*CRYPTO, *extra))


def _live(tmp_path: Path, server, config, **options) -> LiveResult:
    opts = LiveOptions(
        symbols=("btcusdt",),
        data_dir=tmp_path / "data",
        out_root=tmp_path / "reports",
        url=server.ws_url,
        rest_url=server.rest_url,
        until_idle_s=2.0,
        backoff_initial_s=0.1,
        backoff_cap_s=0.5,
        **options,
    )
    return run_live(config, opts, stop=threading.Event())


def _replay_digest(tmp_path: Path, session_dir: Path, config) -> str:
    ref = resolve_session(str(session_dir), tmp_path / "data")
    recorded = apply_overrides(config, sets=["latency.model=recorded"])
    result = replay(ref, recorded, out_dir=tmp_path / "replayed")
    return str(result.manifest["digest"])


@pytest.mark.parametrize("speed", [None, 20.0], ids=["max", "20x"])
def test_live_run_and_its_replay_have_the_same_digest(tmp_path, tape, speed):
    paced = tape if speed is None else tape.slice(0, 5_000)
    config = _config()
    with serving(paced, speed=speed) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert summary["n_events"] > 1_000
    assert summary["n_orders"] > 0 or speed is not None  # a short paced slice may not trade
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_timer_ticks_among_frames_run_inline_keep_the_receive_order(tmp_path, tape):
    """The network thread runs frames itself while the pipeline keeps up; the timer thread's
    ticks queue in between: consumed in stamp order all the same, so the replay agrees."""
    config = _config("strategy.timer_ms=5.0")
    switch_interval = sys.getswitchinterval()
    with serving(tape.slice(0, 2_000), speed=20.0) as server:
        result = _live(tmp_path, server, config)
    assert sys.getswitchinterval() == switch_interval  # the run's shorter one is undone
    ((name, digest),) = result.digests.items()
    inbox: dict[str, Any] = result.live_facts[name]["inbox"]  # type: ignore[assignment]
    assert inbox["inline"] > 200  # most frames never left the network thread
    assert inbox["inline"] + inbox["handed_off"] <= inbox["frames"]  # conflated: never ran
    timer = pq.read_table(result.sessions[name] / "timer.parquet")
    assert timer.num_rows > 100
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_parity_holds_with_every_fault_injected(tmp_path, tape):
    faults = parse_faults(
        {
            "seed": 3,
            "fault": [
                {"kind": "disconnect", "at": 2_000, "mode": "abrupt"},
                {"kind": "gap", "at": 3_500, "count": 2},
                {"kind": "delay", "at": 4_000, "ms": 200},
                {"kind": "silent", "at": 4_500, "ms": 400},
                {"kind": "duplicate", "at": 5_000},
                {"kind": "reorder", "at": 5_500},
                {"kind": "disconnect", "at": 6_500, "mode": "clean"},
                {"kind": "shutdown_notice", "at": 8_000, "ms": 200},
                {"kind": "stale_snapshot", "at": 6_400},
                {"kind": "http_429", "at": 6_400, "count": 1, "retry_after": 1},
            ],
        }
    )
    config = _config()
    with serving(tape, speed=None, faults=faults) as server:
        result = _live(tmp_path, server, config)
        injected = {f.kind for f in server.injected}
    assert injected >= {"disconnect", "gap", "delay", "silent", "duplicate", "reorder",
                        "shutdown_notice"}  # fmt: skip
    ((name, digest),) = result.digests.items()
    status = pq.read_table(result.sessions[name] / "status.parquet")
    codes = set(status.column("code").to_pylist())
    assert {StatusCode.GAP, StatusCode.BOOK_RESET, StatusCode.BOOK_SYNCED} <= codes
    assert StatusCode.DISCONNECTED in codes
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_a_recording_replays_through_the_feed_server_again(tmp_path, tape):
    """A live session's raw frames are a feed: served again, they rebuild the same book."""
    config = _config()
    # paced: at max speed the snapshot request may land after the server has sent it all
    with serving(tape.slice(0, 3_000), speed=20.0) as server:
        first = _live(tmp_path / "a", server, config)
    ((name, _),) = first.digests.items()
    again = load_tape([str(first.sessions[name])], tmp_path / "a" / "data")
    # from the recorded snapshot on: before it the server has no book to answer REST with
    again = again.slice(again.snapshots[0].index)
    with serving(again, speed=5.0) as server:  # slower: a snapshot retry still lands in time
        second = _live(tmp_path / "b", server, config)
    ((name2, _),) = second.digests.items()
    book_a = pq.read_table(first.sessions[name] / "book.parquet")
    book_b = pq.read_table(second.sessions[name2] / "book.parquet")
    # the second run's snapshot may come later in the tape (how far the server has sent when
    # the request lands): its book may start later, and from there it is the same
    ids_b = book_b.column("update_id").to_pylist()
    assert len(ids_b) >= 100
    ids_a = book_a.column("update_id").to_pylist()
    start = ids_a.index(ids_b[0])
    assert ids_a[start:] == ids_b
    for column in ("bid_px_0", "ask_sz_0", "bid_px_19", "ask_sz_19"):
        assert book_a.column(column).to_pylist()[start:] == book_b.column(column).to_pylist()


class _SlowModel:
    """The primary model, 3 ms slower per call: the pipeline cannot keep up at max speed."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.name = f"slow({inner.name})"

    def warm_up(self) -> None:
        self._inner.warm_up()

    def reset(self) -> None:
        self._inner.reset()

    def predict(self, features, event_index: int):
        import time

        time.sleep(0.003)
        return self._inner.predict(features, event_index)


@pytest.mark.parametrize("capacity", [64, 10_000], ids=["count", "age"])
def test_a_slow_model_at_max_speed_conflates_quotes_and_stays_replayable(tmp_path, tape, capacity):
    """A pipeline really behind conflates: in a 64-frame inbox once half of it waits (the
    count bound); in the default one (5,000 may wait) once the frames waiting are over 2 ms of
    its work (3 ms a quote: as soon as a quote waits), long before that count."""
    config = apply_overrides(load_strategy("obi_rule"), sets=("policy.size=0.01",
                             "risk.max_notional=1e9", "risk.max_position=1"))  # fmt: skip
    with serving(tape.slice(0, 6_000), speed=None) as server:
        result = _live(tmp_path, server, config, inbox_capacity=capacity, wrap_model=_SlowModel)
    ((name, digest),) = result.digests.items()
    inbox: dict[str, Any] = result.live_facts[name]["inbox"]  # type: ignore[assignment]
    assert inbox["conflated"] > 1_000  # most quotes were replaced by a newer one
    assert inbox["high_water"] <= min(capacity, 1_000)  # bounded, far below 5,000 by work
    assert inbox["overflowed"] == 0  # quotes only: nothing but quotes could have been dropped
    assert int(result.summaries[name]["n_events"]) + inbox["conflated"] >= 4_000  # type: ignore[call-overload]
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


COINBASE_RECORDING = REPO / "data" / "originals" / "coinbase" / "COINBASE.jsonl.zst"


@pytest.mark.parametrize("drop_sequence_at", [None, 300], ids=["clean", "sequence-gap"])
def test_coinbase_live_run_and_its_replay_have_the_same_digest(tmp_path, drop_sequence_at):
    from simulator.feedsim.coinbase_server import load_coinbase_records, serving_coinbase

    config = _config()
    records = load_coinbase_records(COINBASE_RECORDING)
    speed = None if drop_sequence_at is None else 10.0  # paced: the resubscribe has time to act
    with serving_coinbase(records, speed=speed, drop_sequence_at=drop_sequence_at) as server:
        options = LiveOptions(
            symbols=("BTC-USD",),
            feed="coinbase",
            data_dir=tmp_path / "data",
            out_root=tmp_path / "reports",
            url=server.ws_url,
            rest_url=server.rest_url,  # the product (tick, lot, minimum) from the server too
            until_idle_s=2.0,
            backoff_initial_s=0.1,
            backoff_cap_s=0.5,
        )
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    assert name.startswith("coinbase/BTC-USD/")
    assert int(str(result.summaries[name]["n_events"])) > 300
    status = pq.read_table(result.sessions[name] / "status.parquet").column("code").to_pylist()
    if drop_sequence_at is not None:  # the gap is declared, level2 resubscribed and resynced
        assert StatusCode.GAP in status
        assert status.count(StatusCode.BOOK_SYNCED) >= 2
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest
