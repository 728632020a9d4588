"""The compiled feature kernel against the Python path it mirrors: the same bits on real data
and on tricky configs, the same exceptions on bad input, the same run digest; and how the
kernel is chosen."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import ConfigError
from simulator.features import BookColumns, FeatureBuffer, FeatureConfig, session_events
from simulator.features import native as native_module
from simulator.features.batch import incremental_features
from simulator.features.config import LIGHT_FEATURES
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA
from tests.factories import T0
from tests.unit.test_features import SMALL

needs_native = pytest.mark.skipif(
    not native_module.available(), reason="the native feature kernel is not built"
)
GOOG = "nasdaq/GOOG/2012-06-21"


def assert_same_bits(events, config: FeatureConfig) -> None:
    """native == python bit for bit (NaNs included), for every event and feature."""
    python = incremental_features(events, config, kernel="python")
    compiled = incremental_features(events, config, kernel="native")
    assert python.shape == compiled.shape == (events.height, len(config.names))
    assert np.isfinite(python[-1]).all()  # the comparison covers warm values, not only NaNs
    for j, name in enumerate(config.names):
        np.testing.assert_array_equal(
            python[:, j].view(np.uint64), compiled[:, j].view(np.uint64), err_msg=name
        )


@needs_native
@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        (GOOG, ("book", "trades")),
        ("nasdaq/AAPL/2012-06-21", ("quotes", "trades")),
        ("binance/BTCUSDT/2024-08-08", ("book", "trades")),
    ],
)
def test_native_equals_python_bit_for_bit_on_bundled_sessions(name, kinds):
    session = resolve_session(name, BUNDLED_DATA)
    assert_same_bits(session_events(session, kinds, limit=30_000), FeatureConfig(levels=10))


@needs_native
@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(levels=3, horizons=(1, 2, 3, 5, 8, 13)),  # more returns than one pack
        FeatureConfig(horizons=(4,), features=("trade_flow", "ret_4", "mid", "time_since_trade")),
        FeatureConfig(levels=2, horizons=(300, 2), bollinger_window=400),  # ring > window
        replace(SMALL, levels=10),
        replace(SMALL, features=tuple(reversed(SMALL.all_names))),
        FeatureConfig(levels=10, features=("l1_imbalance",)),  # obi_rule's: light mode
        FeatureConfig(levels=4, features=tuple(sorted(LIGHT_FEATURES))),  # every light one
    ],
    ids=[
        "six-horizons",
        "shuffled-subset",
        "long-ring",
        "small-windows",
        "reversed",
        "light-one",
        "light-all",
    ],
)
def test_native_equals_python_bit_for_bit_for_other_configs(config):
    session = resolve_session(GOOG, BUNDLED_DATA)
    assert_same_bits(session_events(session, ("book", "trades"), limit=5_000), config)


@needs_native
def test_light_and_history_selections_both_run_natively():
    light = FeatureBuffer(FeatureConfig(features=("l1_imbalance",)), kernel="native")
    assert light.kernel == FeatureBuffer(kernel="native").kernel == "native"
    light.on_quote(T0, 100.0, 3.0, 100.02, 1.0)
    assert light.compute().tolist() == [0.5]


QUOTE_FAULTS = [
    ((100.0, 0.0, 100.02, 0.0), ZeroDivisionError),  # no size on either side
    ((-1.0, 1.0, 0.5, 1.0), ValueError),  # non-positive mid: log's domain
]


@needs_native
@pytest.mark.parametrize(("quote", "error"), QUOTE_FAULTS)
def test_both_kernels_raise_the_same_error_on_a_bad_quote(quote, error):
    for kernel in native_module.KERNELS:
        buffer = FeatureBuffer(kernel=kernel)
        with pytest.raises(error):
            buffer.on_quote(T0, *quote)


@pytest.mark.parametrize("kernel", native_module.KERNELS)
@pytest.mark.parametrize("features", [None, ("l1_imbalance", "book_imbalance", "mid")])
def test_both_kernels_keep_float64_exactly_as_user_code_computes_it(kernel, features):
    if kernel == "native" and not native_module.available():
        pytest.skip("the native feature kernel is not built")
    config = FeatureConfig(levels=2, features=features)
    buffer = FeatureBuffer(config, kernel=kernel)
    assert buffer.vector.dtype == np.float64
    bid, ask = 100.0, 100.01
    buffer.on_quote(T0, bid, 80.0, ask, 20.0)  # obi 0.6 exactly; float32 would give 0.6000000238
    vector = buffer.compute()
    assert vector[config.names.index("l1_imbalance")] == (80.0 - 20.0) / (80.0 + 20.0) == 0.6
    assert vector[config.names.index("mid")] == (bid + ask) * 0.5
    big = 1e39  # finite in float64 (float32 overflowed: both kernels raised OverflowError)
    buffer.on_quote(T0 + 1, big, 80.0, big, 20.0)
    assert buffer.compute()[config.names.index("mid")] == big
    levels = BookColumns.from_arrays(
        [np.array([bid]), np.array([bid - 0.01])],
        [np.array([80.0]), np.array([7.0])],
        [np.array([ask]), np.array([ask + 0.01])],
        [np.array([20.0]), np.array([3.0])],
    )
    buffer.on_book(T0 + 2, levels, 0)
    assert buffer.compute()[config.names.index("book_imbalance")] == (87.0 - 23.0) / (87.0 + 23.0)


@needs_native
def test_both_kernels_raise_the_same_error_in_light_mode():
    config = FeatureConfig(features=("microprice", "l1_imbalance"))
    for kernel in native_module.KERNELS:
        buffer = FeatureBuffer(config, kernel=kernel)
        buffer.on_quote(T0, 100.0, 0.0, 100.02, 0.0)  # light mode divides in compute()
        with pytest.raises(ZeroDivisionError):
            buffer.compute()


@needs_native
def test_both_kernels_raise_the_same_error_on_a_zero_size_trade_flow():
    for kernel in native_module.KERNELS:
        buffer = FeatureBuffer(kernel=kernel)
        buffer.on_trade(T0, 100.0, 0.0, 1)
        with pytest.raises(ZeroDivisionError):
            buffer.compute()


def _book(rows: int) -> BookColumns:
    column = [np.full(rows, 100.0)]
    sizes = [np.full(rows, 2.0)]
    return BookColumns.from_arrays(column, sizes, [np.full(rows, 100.02)], sizes)


@needs_native
def test_both_kernels_index_book_rows_alike():
    levels = _book(3)
    for kernel in native_module.KERNELS:
        buffer = FeatureBuffer(kernel=kernel)
        buffer.on_book(T0, levels, -1)  # counts from the end, as memoryview indexing does
        assert buffer.n_mid_updates == 1
        with pytest.raises(IndexError):
            buffer.on_book(T0, levels, 3)


@needs_native
def test_the_native_kernel_names_what_is_wrong_with_a_bundle():
    buffer = FeatureBuffer(kernel="native")
    with pytest.raises(TypeError, match="expected a BookColumns"):
        buffer.on_book(T0, (1, 2), 0)  # type: ignore[arg-type]
    floats = np.zeros(2, dtype=np.float32).data
    bad = _book(2)._replace(bid_depth=floats)
    with pytest.raises(TypeError, match="bid_depth is not a contiguous float64 memoryview"):
        buffer.on_book(T0, bad, 0)
    with pytest.raises(TypeError, match="on_quote\\(\\) takes 5 arguments"):
        buffer.on_quote(T0, 1.0)  # type: ignore[call-arg]


@needs_native
def test_a_replay_gives_the_same_digest_with_either_kernel(tmp_path, monkeypatch):
    session = resolve_session(GOOG, BUNDLED_DATA)
    config = apply_overrides(load_strategy("obi_mlp"))
    runs = {}
    for kernel in native_module.KERNELS:
        monkeypatch.setenv(native_module.ENVIRONMENT, kernel)
        runs[kernel] = replay(session, config, out_dir=tmp_path / kernel).manifest
    assert {kernel: m["feature_kernel"] for kernel, m in runs.items()} == {
        "native": "native",
        "python": "python",
    }
    digests = {m["digest"] for m in runs.values()}
    assert len(digests) == 1
    assert replay_summary(runs["native"])["n_orders"] > 1_000


def replay_summary(manifest: dict[str, object]) -> dict[str, int]:
    summary = manifest["summary"]
    assert isinstance(summary, dict)
    return summary


def test_the_kernel_is_chosen_by_argument_then_environment(monkeypatch):
    monkeypatch.delenv(native_module.ENVIRONMENT, raising=False)
    default = "native" if native_module.available() else "python"
    assert native_module.choose(None) == default
    assert native_module.choose("python") == "python"
    monkeypatch.setenv(native_module.ENVIRONMENT, "python")
    assert native_module.choose(None) == "python"
    assert FeatureBuffer().kernel == "python"
    monkeypatch.setenv(native_module.ENVIRONMENT, "fortran")
    with pytest.raises(ConfigError, match="feature kernel 'fortran' is unknown"):
        FeatureBuffer()


def test_asking_for_a_kernel_that_was_not_built_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(native_module, "FeatureState", None)
    assert not native_module.available()
    assert native_module.choose(None) == "python"
    with pytest.raises(ConfigError, match="native feature kernel is not built"):
        FeatureBuffer(kernel="native")
