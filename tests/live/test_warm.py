"""Warm start: the feature buffers and a stateful model's hidden state, filled from recorded
history before the first live event, are exactly what a replay of that history leaves; a
warmed live run replays (warmed the same way) to the same digest."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from simulator.clock import SimClock
from simulator.config import apply_overrides, load_strategy
from simulator.engine import Engine
from simulator.errors import ConfigError
from simulator.feedsim.server import serving
from simulator.live.run import LiveOptions, run_live
from simulator.market import MarketState
from simulator.portfolio import Portfolio
from simulator.recording import RunRecorder
from simulator.runtime import build_pipeline, build_venue, replay, session_sources, warming
from simulator.session import resolve_session
from simulator.settings import Settings
from tests.conftest import REPO
from tests.live.test_parity import CRYPTO, _replay_digest

HISTORY = "binance/BTCUSDT/2024-08-08"


def _bits(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float64).tobytes()


@pytest.mark.parametrize("strategy", ["obi_mlp", "gru_stream"])
def test_warm_state_equals_the_replay_state_at_the_boundary(tmp_path, strategy):
    config = apply_overrides(load_strategy(strategy), sets=CRYPTO)
    history = resolve_session(HISTORY, REPO / "data")
    sources, levels = session_sources(history, config)
    replayed = build_pipeline(config, levels, SimClock())
    recorder = RunRecorder(tmp_path / "replay")
    Engine(clock=SimClock(), sources=sources, market=MarketState(levels),
           pipeline=replayed.pipeline, venue=build_venue(config.venue), portfolio=Portfolio(),
           recorder=recorder).run()  # fmt: skip
    recorder.close()
    warmed = build_pipeline(config, levels, SimClock())
    warmed.pipeline.runner.reset()
    warmed.features.reset()
    warmed.pipeline.runner.warm_up()
    warming(history, config, warmed)()
    boundary = replayed.features.compute()
    assert np.isfinite(boundary).all()
    assert _bits(warmed.features.compute()) == _bits(boundary)
    probe = boundary.copy()  # the same input to both models: equal outputs, equal hidden state
    first = warmed.pipeline.runner.predict(probe, 0).copy()
    assert _bits(first) == _bits(replayed.pipeline.runner.predict(probe, 0))
    if strategy == "gru_stream":  # stateful: a cold model answers the same input differently
        cold = build_pipeline(config, levels, SimClock()).pipeline.runner
        cold.reset()
        cold.warm_up()
        assert _bits(cold.predict(probe, 0)) != _bits(first)


def test_a_warm_started_live_run_replays_warmed_to_the_same_digest(tmp_path, tape):
    data_dir = tmp_path / "data"
    history = data_dir / "binance" / "BTCUSDT" / "2024-08-08"
    history.parent.mkdir(parents=True)
    history.symlink_to(REPO / "data" / HISTORY)  # auto: the newest recorded session there
    config = apply_overrides(load_strategy("obi_mlp"), sets=CRYPTO)
    with serving(tape.slice(0, 4_000), speed=None) as server:
        options = LiveOptions(
            symbols=("btcusdt",), data_dir=data_dir, out_root=tmp_path / "reports",
            url=server.ws_url, rest_url=server.rest_url, until_idle_s=2.0,
            backoff_initial_s=0.1, backoff_cap_s=0.5, warm_from="auto",
        )  # fmt: skip
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    session: Path = result.sessions[name]
    assert resolve_session(str(session), data_dir).meta["warm_from"] == HISTORY
    assert _replay_digest(tmp_path, session, config) == digest
    unwarmed = apply_overrides(load_strategy("obi_mlp"), sets=CRYPTO)
    assert result.summaries[name]["n_orders"] != _cold_orders(tmp_path, session, unwarmed)


def _cold_orders(tmp_path: Path, session: Path, config: Settings) -> object:
    """Orders of the same live events replayed without the warm start (the meta dropped)."""
    cold = tmp_path / "cold" / "binance" / "BTCUSDT" / session.name
    cold.parent.mkdir(parents=True)
    cold.mkdir()
    for path in session.iterdir():
        if path.name != "meta.json":
            (cold / path.name).symlink_to(path)
    meta = json.loads((session / "meta.json").read_text())
    meta.pop("warm_from")
    (cold / "meta.json").write_text(json.dumps(meta))
    recorded = apply_overrides(config, sets=["latency.model=recorded"])
    ref = resolve_session(str(cold), tmp_path / "cold")
    try:
        result = replay(ref, recorded, out_dir=tmp_path / "cold-run")
    except Exception as e:  # the decisions differ: parity's own check says so
        return type(e).__name__
    return result.summary["n_orders"]


def test_warm_from_auto_needs_a_recorded_session(tmp_path):
    config = apply_overrides(load_strategy("obi_mlp"), sets=CRYPTO)
    options = LiveOptions(symbols=("btcusdt",), data_dir=tmp_path / "data",
                          out_root=tmp_path / "reports", url="ws://127.0.0.1:9",
                          rest_url="http://127.0.0.1:9", warm_from="auto")  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"--warm-from auto: no recorded session of binance/BTCUSDT"
    ):
        run_live(config, options, stop=threading.Event())
