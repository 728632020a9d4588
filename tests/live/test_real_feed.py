"""Opt-in (`pytest -m live`, with LIVE_FEEDS=1; never in CI): 30 s of the real Binance spot
feed, recorded, then replayed with its recorded decision times: the digests must be equal.

Binance.com refuses some locations (HTTP 451); set TICKTAPE_BINANCE_URL and
TICKTAPE_BINANCE_REST to the binance.us endpoints there.
"""

from __future__ import annotations

import os
import threading

import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.live.run import LiveOptions, run_live
from simulator.runtime import replay
from simulator.session import resolve_session

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.environ.get("LIVE_FEEDS") != "1", reason="set LIVE_FEEDS=1"),
]


def test_thirty_seconds_of_binance_replay_to_the_same_digest(tmp_path):
    config = apply_overrides(
        load_strategy("obi_mlp"),
        sets=(
            "policy.lot=0.001",
            "policy.max_position=0.01",
            "risk.max_position=1",
            "risk.max_order_size=1",
            "risk.max_notional=1e9",
        ),
    )
    options = LiveOptions(
        symbols=("btcusdt",),
        data_dir=tmp_path / "data",
        out_root=tmp_path / "reports",
        url=os.environ.get("TICKTAPE_BINANCE_URL", "wss://data-stream.binance.vision"),
        rest_url=os.environ.get("TICKTAPE_BINANCE_REST", "https://data-api.binance.vision"),
        duration_s=30.0,
    )
    result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    assert int(str(result.summaries[name]["n_events"])) > 100
    ref = resolve_session(str(result.sessions[name]), tmp_path / "data")
    recorded = apply_overrides(config, sets=["latency.model=recorded"])
    assert replay(ref, recorded, out_dir=tmp_path / "replayed").manifest["digest"] == digest
