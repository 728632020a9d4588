"""Keeping the live path warm while the feed is idle (`LiveOptions.keep_warm`): the dry pass
parses the last frame of each stream again, applies the book's last diff again, re-checks and
rewrites the last book row, runs a stateless model on a copy of the features and a copy-safe
policy on a copy of itself, and changes nothing that decides or is recorded."""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.server import serving
from simulator.importers.binance_messages import Depth
from simulator.live.frames import Direction, Frame, stream_of
from simulator.live.run import LiveOptions, run_live
from simulator.live.session import SymbolRun
from simulator.live.venues import adapter
from simulator.policies import ThresholdPolicy
from simulator.runtime import replay
from simulator.session import resolve_session
from simulator.types import SessionKey
from tests.conftest import REPO

CRYPTO = ("policy.lot=0.01", "policy.max_position=0.1", "risk.max_position=1",
          "risk.max_order_size=1", "risk.max_notional=1e9")  # fmt: skip
RECORDING = REPO / "data" / "binance" / "BTCUSDT" / "2024-08-08" / "raw.txt.zst"


def _frames(limit: int) -> list[Frame]:
    """The recording's depth and trade frames (and its REST snapshot), as live hands them on."""
    raw = zstandard.ZstdDecompressor().stream_reader(RECORDING.open("rb"))
    out: list[Frame] = []
    for line in io.TextIOWrapper(raw):
        ts, _, body = line.rstrip("\n").partition(" ")
        payload = body.encode()
        stream = stream_of(payload)
        if not stream:
            out.append(
                Frame(len(out), 1, int(ts), Direction.HTTP_RESP, "btcusdt@snapshot", payload)
            )
        elif stream.endswith(("@depth@100ms", "@trade")):
            out.append(Frame(len(out), 1, int(ts), Direction.IN, stream, payload))
        if len(out) >= limit:
            return out
    return out


def _symbol_run(tmp_path: Path, strategy: str) -> SymbolRun:
    config = apply_overrides(load_strategy(strategy), sets=CRYPTO)
    return SymbolRun(
        key=SessionKey("binance", "BTCUSDT", "keepwarm"),
        prefix="btcusdt@",
        normalizer=adapter("binance", ["book", "trades"]).normalizer("btcusdt"),
        config=config,
        levels=20,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        meta={},
    )


def _close(run: SymbolRun) -> None:
    run.engine.end()
    run.parts.close()
    run.recorder.close()  # its writer thread ends (tests of live threads check for leftovers)


class _Recorded:
    """The engine's runner, every predict it makes kept: index, input, answer."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.calls: list[tuple[int, Any, Any]] = []

    def predict(self, features: Any, event_index: int) -> Any:
        out = self.inner.predict(features, event_index)
        self.calls.append((event_index, features.copy(), out.copy()))
        return out

    def warm_up(self) -> None:
        self.inner.warm_up()

    def reset(self) -> None:
        self.inner.reset()


def _model_calls(run: SymbolRun) -> list[tuple[int, Any, Any]]:
    """Every predict the engine makes (through the circuit breaker), from now on."""
    recorded = _Recorded(run.staged.pipeline.runner)
    run.staged.pipeline.runner = recorded  # the engine binds it at its first step
    return recorded.calls


def test_dry_passes_between_frames_change_nothing_the_model_sees_or_answers(tmp_path):
    frames = _frames(3_000)
    cold, warm = (
        _symbol_run(tmp_path / "cold", "obi_mlp"),
        _symbol_run(tmp_path / "warm", "obi_mlp"),
    )
    cold_calls, warm_calls = _model_calls(cold), _model_calls(warm)
    runner = warm._dry_runner
    assert runner is not None  # the ONNX model is stateless: it is run idle
    dry = {"n": 0}
    real_predict = runner.predict

    def counted(features: Any, event_index: int) -> Any:
        dry["n"] += 1
        return real_predict(features, event_index)

    runner.predict = counted  # type: ignore[method-assign]
    walked = {"decided": 0}
    dry_step = warm.engine.dry_step

    def counted_step(prepared: Any) -> bool:
        decided = dry_step(prepared)
        walked["decided"] += decided
        return decided

    warm.engine.dry_step = counted_step  # type: ignore[method-assign]
    try:
        assert warm.dry_pass() is False  # nothing processed yet: nothing to run
        for k, frame in enumerate(frames):
            cold.process([frame])
            warm.process([frame])
            assert warm.dry_pass() is True
            warm.dry_pass()
            if k % 100 == 0:
                assert _book(warm) == _book(cold)
                assert _engine_rows(warm) == _engine_rows(cold)
                assert _engine_facts(warm) == _engine_facts(cold)
        assert _book(warm) == _book(cold)
        assert _engine_rows(warm) == _engine_rows(cold)
        assert _engine_facts(warm) == _engine_facts(cold)
        assert walked["decided"] > 100  # the engine's walk ran idle, its decision step too
        assert warm._dry_policy is not None  # obi_mlp's threshold policy decided idle too
        policy_cold, policy_warm = cold.staged.pipeline.policy, warm.staged.pipeline.policy
        assert policy_cold.target == policy_warm.target  # type: ignore[attr-defined]
        assert policy_cold.n_under_minimum == policy_warm.n_under_minimum  # type: ignore[attr-defined]
        risk_cold, risk_warm = cold.staged.pipeline.risk, warm.staged.pipeline.risk
        assert risk_cold.counts == risk_warm.counts  # type: ignore[attr-defined]
        tables_cold, tables_warm = cold.recorder.tables, warm.recorder.tables
        assert len(tables_cold.orders) == len(tables_warm.orders)
        assert _undated(tables_cold.rejections) == _undated(tables_warm.rejections)
        # the policy asked for orders (risk refuses them as stale: the tape is years old)
        assert len(tables_cold.orders) + len(tables_cold.rejections) > 0
    finally:
        runner.predict = real_predict  # type: ignore[method-assign]
        for run in (cold, warm):
            _close(run)
    assert dry["n"] > 100  # the model did run idle, once the features were ready
    assert len(cold_calls) == len(warm_calls) > 100
    for (i, x, y), (j, x2, y2) in zip(cold_calls, warm_calls, strict=True):
        assert i == j
        assert np.array_equal(x, x2, equal_nan=True)
        assert np.array_equal(y, y2, equal_nan=True)
    assert cold.engine.state.n_events == warm.engine.state.n_events
    assert cold.stepper.dropped == warm.stepper.dropped
    assert cold.normalizer.stats == warm.normalizer.stats  # type: ignore[attr-defined]
    breaker_cold, breaker_warm = cold.staged.breaker, warm.staged.breaker
    assert breaker_cold is not None
    assert breaker_warm is not None
    assert breaker_cold.counts == breaker_warm.counts  # the breaker never saw a dry pass


def _undated(rejections: list[Any]) -> list[tuple[object, ...]]:
    """Rejections without their decision time (the wall clock's: never equal twice)."""
    return [(r.event_index, r.side, r.qty, r.reason) for r in rejections]


def _book(run: SymbolRun) -> tuple[object, ...]:
    """The normaliser's whole book: its depth and every level."""
    book = run.normalizer.book  # type: ignore[attr-defined]
    n_bids, n_asks = book.depth()
    return book.depth(), book.top_row(max(n_bids, n_asks, 1))


def _engine_facts(run: SymbolRun) -> tuple[object, ...]:
    """What the engine's walk writes: its state, the market, the portfolio, the clock, the
    recorder's rows so far, the feature stage's values and counts (NaN made comparable)."""

    def plain(value: object) -> object:
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    engine, features = run.engine, run.staged.pipeline.features
    state = {f.name: plain(getattr(engine.state, f.name)) for f in dataclasses.fields(engine.state)}
    del state["fills"], state["now"]  # now: the last decision's wall-clock time
    slots = (run.market, run.portfolio)
    attrs = [{k: plain(getattr(o, k)) for k in type(o).__slots__} for o in slots]
    slot = engine._slot
    rows = {  # the stage timings are the wall's: never equal twice
        name: np.nan_to_num(a[:slot]).tolist()
        for name, a in run.recorder.arrays.items()
        if not name.endswith("_ns")
    }
    counts = (features.n_mid_updates, features.n_trades, features.ts_recv)  # type: ignore[attr-defined]
    vector = np.nan_to_num(features.compute()).tolist()
    return state, attrs, len(engine.state.fills), run.clock.now(), slot, rows, counts, vector


def _engine_rows(run: SymbolRun) -> list[list[float]]:
    """The two one-row book columns the engine walks (the stepper alternates them)."""
    return [values.tolist() for values, *_ in run.stepper._books]


def test_the_book_s_last_diff_applied_again_changes_no_level():
    """Absolute sizes: a diff applied twice leaves the book as once, a price repeated within
    a side included; a diff with a NaN price is not applied again (it would add a level)."""
    normalizer = adapter("binance", ["book"]).normalizer("btcusdt")
    book = normalizer.book  # type: ignore[attr-defined]
    book.reset([(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0), (102.0, 3.0)])
    diff = Depth(0, 1, 1, None, [(100.0, 0.0), (98.0, 4.0), (98.0, 0.0), (97.0, 5.0)],
                 [(101.5, 2.0), (102.0, 0.0), (101.5, 7.0)])  # fmt: skip
    book.apply(diff.bids, diff.asks)
    normalizer._last_diff = diff  # type: ignore[attr-defined]
    before = (book.depth(), book.top_row(10))
    normalizer.dry_book(10)  # type: ignore[attr-defined]
    normalizer.dry_book(10)  # type: ignore[attr-defined]
    assert (book.depth(), book.top_row(10)) == before
    nan_diff = Depth(0, 2, 2, None, [(math.nan, 1.0)], [])
    book.apply(nan_diff.bids, nan_diff.asks)
    normalizer._last_diff = nan_diff  # type: ignore[attr-defined]
    depth = book.depth()
    normalizer.dry_book(10)  # type: ignore[attr-defined]
    assert book.depth() == depth


def test_only_a_policy_class_that_declares_itself_copy_safe_decides_idle(tmp_path):
    run = _symbol_run(tmp_path, "obi_mlp")
    try:
        assert type(run._dry_policy) is ThresholdPolicy
        assert run._dry_policy is not run.staged.pipeline.policy
    finally:
        _close(run)

    class Counting(ThresholdPolicy):  # a subclass may keep state a copy would share
        __slots__ = ()

    policy = run.staged.pipeline.policy
    assert vars(type(policy)).get("copy_safe") is True
    assert vars(Counting).get("copy_safe") is None


def test_a_stateful_model_is_never_run_idle(tmp_path):
    run = _symbol_run(tmp_path, "gru_stream")
    try:
        assert run._dry_runner is None
        for frame in _frames(2_500):
            run.process([frame])
        runner = run.staged.breaker.primary if run.staged.breaker else run.staged.pipeline.runner
        hidden = runner._hidden.clone()  # type: ignore[attr-defined]
        assert run.dry_pass() is True  # the parse and the checks still run
        assert bool((runner._hidden == hidden).all())  # type: ignore[attr-defined]
    finally:
        _close(run)


@pytest.mark.parametrize("keep_warm", [True, False], ids=["keep-warm", "no-keep-warm"])
def test_live_with_dry_passes_replays_to_the_same_digest(tmp_path, tape, keep_warm):
    """Against a real `feed serve` on 127.0.0.1 at 20x: idle gaps of a ms and more run dry
    passes on the network thread; the replay (no dry passes) decides exactly the same."""
    config = apply_overrides(load_strategy("obi_mlp"), sets=CRYPTO)
    with serving(tape.slice(0, 6_000), speed=20.0) as server:
        options = LiveOptions(
            symbols=("btcusdt",),
            data_dir=tmp_path / "data",
            out_root=tmp_path / "reports",
            url=server.ws_url,
            rest_url=server.rest_url,
            until_idle_s=1.0,
            keep_warm=keep_warm,
        )
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    inbox: Any = result.live_facts[name]["inbox"]
    assert (inbox["warm_passes"] > 0) is keep_warm
    ref = resolve_session(str(result.sessions[name]), tmp_path / "data")
    recorded = apply_overrides(config, sets=["latency.model=recorded"])
    replayed = replay(ref, recorded, out_dir=tmp_path / "replayed")
    assert replayed.manifest["digest"] == digest
