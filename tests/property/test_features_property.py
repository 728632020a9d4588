"""FeatureBuffer (incremental) == features_frame (vectorised) on generated event streams and
on whole bundled sessions; the compiled kernel == the Python path bit for bit; neither twin
looks ahead; a ready buffer holds no NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simulator.features import (
    FeatureBuffer,
    FeatureConfig,
    feature_names,
    features_frame,
    incremental_features,
    native,
    session_events,
)
from simulator.features.batch import frame_book_columns
from simulator.features.events import BOOK, TRADE
from simulator.session import resolve_session
from simulator.types import QUOTE_COLUMNS, book_columns
from tests.conftest import BUNDLED_DATA
from tests.factories import T0
from tests.unit.test_features import assert_twins_equal

pytestmark = pytest.mark.property

TICK = 0.01
MAX_LEVELS = 3
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def configs(draw: st.DrawFn) -> FeatureConfig:
    """Small windows and half-lives, so that generated streams reach every regime."""
    fast = draw(st.integers(1, 4))
    horizons = tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=5, unique=True)))
    half_lives = st.floats(0.5, 12.0)
    names = feature_names(horizons)
    subset = st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True)
    return FeatureConfig(
        levels=draw(st.integers(1, MAX_LEVELS + 1)),
        horizons=horizons,
        vol_halflife=draw(half_lives),
        trade_flow_halflife=draw(half_lives),
        rsi_period=draw(st.integers(1, 6)),
        macd_fast=fast,
        macd_slow=draw(st.integers(fast + 1, fast + 6)),
        macd_signal=draw(st.integers(1, 5)),
        bollinger_window=draw(st.integers(2, 6)),
        bollinger_k=draw(st.floats(0.5, 3.0)),
        norm_halflife=draw(half_lives),
        features=tuple(draw(subset)) if draw(st.integers(0, 3)) == 0 else None,
    )


Columns = dict[str, npt.NDArray[np.generic]]


@st.composite
def stream_columns(draw: st.DrawFn, n: int, levels: int) -> Columns:
    """n events as columns: prices on a cent grid near 100 (so mids often repeat and
    windows go flat), random positive sizes, empty deeper book levels, equal timestamps."""
    kinds = [0, 1, 2] if levels else [0, 1]
    sizes = st.floats(0.001, 1e4, allow_nan=False, allow_infinity=False)
    columns: Columns = {
        "kind": draw(arrays(np.int8, n, elements=st.sampled_from(kinds))),
        "gap": draw(arrays(np.int64, n, elements=st.sampled_from([0, 0, 1, 10**6, 3 * 10**9]))),
        "bid": draw(arrays(np.int64, n, elements=st.integers(9_990, 10_010))),
        "spread": draw(arrays(np.int64, n, elements=st.integers(1, 3))),
        "sizes": draw(arrays(np.float64, (n, 2 * max(levels, 1)), elements=sizes)),
        "side": draw(arrays(np.int8, n, elements=st.sampled_from([-1, 0, 1]))),
        "empty": draw(arrays(np.bool_, (n, max(levels, 1)), elements=st.booleans())),
    }
    return columns


def build_events(c: Columns, levels: int) -> pl.DataFrame:
    """An event table (the schema of `events.event_table`) from generated columns."""
    kind = np.asarray(c["kind"])
    n = len(kind)
    is_trade, is_book = kind == TRADE, kind == BOOK
    ticks = np.asarray(c["bid"], dtype=np.float64)
    bid = ticks * TICK
    ask = (ticks + np.asarray(c["spread"], dtype=np.float64)) * TICK
    sizes = np.asarray(c["sizes"], dtype=np.float64)
    top = {"bid_px": bid, "bid_sz": sizes[:, 0], "ask_px": ask, "ask_sz": sizes[:, 1]}
    data: dict[str, object] = {
        "kind": pl.Series(kind, dtype=pl.Int8),
        "ts_recv": T0 + np.cumsum(np.asarray(c["gap"])),
    }
    for name in QUOTE_COLUMNS:
        data[name] = np.where(is_trade, np.nan, top[name])
    data["px"] = np.where(is_trade, bid, np.nan)
    data["sz"] = np.where(is_trade, sizes[:, 0], np.nan)
    data["side"] = pl.Series(np.asarray(c["side"]), dtype=pl.Int8)
    empty = np.asarray(c["empty"], dtype=np.bool_)
    empty[:, 0] = False  # level 0 is never empty
    for i in range(levels):
        gone = ~is_book | empty[:, i]
        data[f"bid_px_{i}"] = np.where(gone, np.nan, bid - i * TICK)
        data[f"bid_sz_{i}"] = np.where(gone, np.nan, sizes[:, 2 * i])
        data[f"ask_px_{i}"] = np.where(gone, np.nan, ask + i * TICK)
        data[f"ask_sz_{i}"] = np.where(gone, np.nan, sizes[:, 2 * i + 1])
    frame = pl.DataFrame(data).fill_nan(None)
    frame = frame.with_columns(
        pl.when(pl.col("kind") == TRADE).then(pl.col("side")).otherwise(None).alias("side")
    )
    assert frame.columns[9:] == list(book_columns(levels))
    assert frame.height == n
    return frame


@st.composite
def streams(draw: st.DrawFn, max_events: int = 150) -> tuple[pl.DataFrame, FeatureConfig]:
    levels = draw(st.integers(0, MAX_LEVELS))
    n = draw(st.integers(1, max_events))
    return build_events(draw(stream_columns(n, levels)), levels), draw(configs())


@SETTINGS
@given(streams())
def test_incremental_equals_vectorised_on_generated_streams(stream):
    events, config = stream
    assert_twins_equal(events, config)


@pytest.mark.skipif(not native.available(), reason="the native feature kernel is not built")
@SETTINGS
@given(streams())
def test_native_kernel_equals_python_bit_for_bit_on_generated_streams(stream):
    events, config = stream
    python = incremental_features(events, config, kernel="python")
    compiled = incremental_features(events, config, kernel="native")
    np.testing.assert_array_equal(python.view(np.uint64), compiled.view(np.uint64))


@SETTINGS
@given(st.data())
def test_features_never_look_ahead(data):
    levels = data.draw(st.integers(0, MAX_LEVELS))
    n = data.draw(st.integers(2, 120))
    cut = data.draw(st.integers(0, n - 2))
    first = data.draw(stream_columns(n, levels))
    other = data.draw(stream_columns(n, levels))
    mixed = {k: np.concatenate([first[k][: cut + 1], other[k][cut + 1 :]]) for k in first}
    config = data.draw(configs())
    a_events, b_events = build_events(first, levels), build_events(mixed, levels)
    for compute in (features_frame, incremental_features):
        a, b = compute(a_events, config), compute(b_events, config)
        np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])


@SETTINGS
@given(streams())
def test_a_ready_buffer_holds_no_nan(stream):
    events, config = stream
    buffer = FeatureBuffer(config)
    book = frame_book_columns(events, config.levels)
    events = events.with_columns(pl.col("side").fill_null(0), pl.col(pl.Float64).fill_null(np.nan))
    for i, (kind, ts, bid, bid_sz, ask, ask_sz, px, sz, side, *_) in enumerate(events.iter_rows()):
        if kind == TRADE:
            buffer.on_trade(ts, px, sz, side)
        elif kind == BOOK:
            buffer.on_book(ts, book, i)
        else:
            buffer.on_quote(ts, bid, bid_sz, ask, ask_sz)
        vector = buffer.compute()
        if buffer.ready:
            assert not np.isnan(vector).any(), dict(zip(buffer.names, vector, strict=True))


def _bundled_sessions() -> list[tuple[str, tuple[str, ...]]]:
    """Every bundled session, as (book, trades) and as (quotes, trades) where it has them."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for directory in sorted(BUNDLED_DATA.glob("*/*/*")):
        kinds = {p.stem for p in directory.glob("*.parquet")}
        name = str(directory.relative_to(BUNDLED_DATA))
        found += [(name, (k, "trades")) for k in ("book", "quotes") if {k, "trades"} <= kinds]
    return found


@pytest.mark.parametrize(("name", "kinds"), _bundled_sessions())
def test_incremental_equals_vectorised_over_a_whole_bundled_session(name, kinds):
    session = resolve_session(name, BUNDLED_DATA)
    events = session_events(session, kinds)
    assert_twins_equal(events, FeatureConfig(levels=10))


def test_bundled_sessions_are_found():
    assert ("nasdaq/GOOG/2012-06-21", ("book", "trades")) in _bundled_sessions()
    assert Path(BUNDLED_DATA).is_dir()
