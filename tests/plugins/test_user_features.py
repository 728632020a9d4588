"""User features mixed with the built-ins: one vector in the order named, the same calls,
warm-ups, vectorised twins and the checker users call in their own tests."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import load_strategy
from simulator.features import FeatureBuffer, FeatureConfig, incremental_features, session_events
from simulator.features.twin import incremental_user_frame
from simulator.features.user import MixedFeatures, assert_twin_matches, build_feature_stage
from simulator.plugins import PluginSpec
from simulator.runtime import build_features
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA
from tests.plugins.strategy_files import write_strategy


@pytest.fixture(scope="module")
def events():
    session = resolve_session("nasdaq/GOOG/2012-06-21", BUNDLED_DATA)
    return session_events(session, kinds=("book", "trades"), levels=5).head(4000)


def _stage(tmp_path, names, plugins):
    write_strategy(tmp_path, "")
    specs = [PluginSpec.of(p, "features.plugins") for p in plugins]
    return build_feature_stage(names, specs, base=tmp_path, levels=5)


def _drive(stage, events):
    from simulator.features.batch import frame_book_columns

    book = frame_book_columns(events, 5)
    out = np.empty((events.height, len(stage.names)))
    rows = events.select("kind", "ts_recv", "bid_px", "bid_sz", "ask_px", "ask_sz", "px", "sz",
                         "side").rows()  # fmt: skip
    for i, (kind, ts, bid, bid_sz, ask, ask_sz, px, sz, side) in enumerate(rows):
        if kind == 1:
            stage.on_trade(ts, px, sz, side)
        elif kind == 2:
            stage.on_book(ts, book, i)
        else:
            stage.on_quote(ts, bid, bid_sz, ask, ask_sz)
        out[i] = stage.compute()
    return out


def test_without_plugins_the_stage_is_the_builtin_buffer(tmp_path):
    stage = _stage(tmp_path, ("spread", "rsi"), [])
    assert type(stage) is FeatureBuffer
    assert stage.names == ("spread", "rsi")


def test_mixed_vector_holds_builtins_and_user_values_in_the_order_named(tmp_path, events):
    names = ("rsi", "spread_bps", "l1_imbalance", "tilt", "depth", "spread")
    stage = _stage(tmp_path, names, ["features.py:SpreadBps", "features.py:SizeTilt"])
    assert isinstance(stage, MixedFeatures)
    assert stage.names == names
    mixed = _drive(stage, events)
    builtin = incremental_features(
        events, FeatureConfig(features=("rsi", "l1_imbalance", "spread"))
    )
    np.testing.assert_array_equal(mixed[:, [0, 2, 5]], builtin)
    spread_bps = incremental_user_frame(stage.features[0][0], events)
    # the vector has the built-in buffer's dtype (what the runners take)
    np.testing.assert_array_equal(mixed[:, 1], spread_bps[:, 0].astype(stage.vector.dtype))
    # the stage's own vectorised twin agrees (built-in twin + user twins)
    stage.reset()
    np.testing.assert_allclose(stage.frame(events)[:, [0, 1, 2, 5]], mixed[:, [0, 1, 2, 5]],
                               rtol=1e-6)  # fmt: skip


def test_readiness_waits_for_every_warm_up(tmp_path, events):
    stage = _stage(tmp_path, ("tilt", "depth"), ["features.py:SizeTilt"])
    stage.reset()
    rows = events.filter(events["kind"] != 1).head(5).rows(named=True)
    for seen, row in enumerate(rows):
        assert stage.ready == (seen >= 3)
        stage.on_quote(row["ts_recv"], row["bid_px"], row["bid_sz"], row["ask_px"], row["ask_sz"])
    assert stage.ready


def test_twin_checker_passes_a_true_twin_and_names_the_first_difference(tmp_path, events):
    stage = _stage(tmp_path, ("spread_bps", "tilt", "depth"),
                   ["features.py:SpreadBps", "features.py:SizeTilt"])  # fmt: skip
    good, bad = stage.features[0][0], stage.features[1][0]
    assert_twin_matches(good, events)
    with pytest.raises(AssertionError, match=r"^SizeTilt: 'depth' differs at event \d+ "):
        assert_twin_matches(bad, events)


def test_params_from_a_plugin_table_reach_the_constructor(tmp_path, events):
    stage = _stage(tmp_path, ("spread_bps",), [{"class": "features.py:SpreadBps", "scale": 1.0}])
    values = _drive(stage, events.head(50))
    row = events.row(0, named=True)
    expected = (row["ask_px"] - row["bid_px"]) / (row["ask_px"] + row["bid_px"])
    assert values[0, 0] == pytest.approx(expected, rel=1e-6)  # scale 1, not the default 2e4


def test_runtime_builds_the_mixed_stage_from_a_strategy_folder(tmp_path):
    path = write_strategy(tmp_path / "mine", 'names = ["l1_imbalance", "spread_bps"]\n'
                                             'plugins = ["features.py:SpreadBps"]')  # fmt: skip
    stage = build_features(load_strategy(str(path)), 5)
    assert stage.names == ("l1_imbalance", "spread_bps")


def test_twin_checker_takes_a_session_name(tmp_path):
    stage = _stage(tmp_path, ("spread_bps",), ["features.py:SpreadBps"])
    assert_twin_matches(stage.features[0][0], "nasdaq/AAPL/2012-06-21", data_dir=BUNDLED_DATA)
