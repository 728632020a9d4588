"""Feature stage: hand-checked values on a scripted stream, the buffer's contract (fixed names,
one vector, subsets, warm-up, reset), the event table, and incremental == vectorised on the
first events of the bundled sessions. Every test runs with both kernels (native, python)."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator.errors import ConfigError, DataError
from simulator.features import (
    BookColumns,
    FeatureBuffer,
    FeatureConfig,
    event_table,
    features_frame,
    incremental_features,
    native,
    session_events,
    warmup,
)
from simulator.features.config import FEATURE_NAMES, LIGHT_FEATURES
from simulator.session import resolve_session
from simulator.sources.merge import merge
from simulator.sources.recorded import ParquetSource
from simulator.types import QUOTE_COLUMNS
from tests.conftest import BUNDLED_DATA
from tests.factories import T0, book, quotes, trades, write

SECOND = 1_000_000_000


@pytest.fixture(autouse=True, params=native.KERNELS)
def kernel(request, monkeypatch):
    """Run the test with the compiled kernel, then with the Python path."""
    if request.param == "native" and not native.available():
        pytest.skip("the native feature kernel is not built (no C compiler at install)")
    monkeypatch.setenv(native.ENVIRONMENT, request.param)
    return request.param


# Small windows so every feature is defined within a few events; rsi/macd alphas are exact.
SMALL = FeatureConfig(
    levels=2,
    horizons=(1, 2),
    vol_halflife=1.0,
    trade_flow_halflife=1.0,
    rsi_period=2,
    macd_fast=1,
    macd_slow=3,
    macd_signal=3,
    bollinger_window=3,
    bollinger_k=1.0,
    norm_halflife=1.0,
)
HALF = 1.0 - 2.0**-1.0  # alpha of a half-life of one update

# (ts offset in s, kind, values): quotes are (bid, bid_sz, ask, ask_sz), trades (px, sz, side)
SCRIPT = [
    (0.0, "quote", (100.00, 3.0, 100.02, 1.0)),
    (1.0, "trade", (100.02, 2.0, 1)),
    (1.5, "quote", (100.02, 1.0, 100.04, 1.0)),
    (2.0, "trade", (100.02, 6.0, -1)),
    (3.0, "quote", (100.00, 2.0, 100.02, 2.0)),
    (3.0, "quote", (100.00, 1.0, 100.02, 3.0)),
    (4.0, "quote", (100.04, 1.0, 100.06, 1.0)),
    (4.5, "quote", (100.03, 4.0, 100.07, 1.0)),
]
QUOTES = [values for _, kind, values in SCRIPT if kind == "quote"]
MIDS = [(q[0] + q[2]) * 0.5 for q in QUOTES]  # ~ 100.01, 100.03, 100.01, 100.01, 100.05, 100.05
SPREADS = [q[2] - q[0] for q in QUOTES]  # ~ 0.02 five times, then 0.04


def _feed(buffer: FeatureBuffer) -> list[np.ndarray]:
    """Every vector after each event of SCRIPT (copies)."""
    out = []
    for offset, kind, values in SCRIPT:
        ts = T0 + int(offset * SECOND)
        if kind == "quote":
            buffer.on_quote(ts, *values)
        else:
            px, sz, side = values
            buffer.on_trade(ts, px, sz, int(side))
        out.append(buffer.compute().copy())
    return out


def _ewma(xs: list[float], alpha: float) -> float:
    m = xs[0]
    for x in xs[1:]:
        m = m + alpha * (x - m)
    return m


def _zscore(xs: list[float], alpha: float) -> float:
    means = [_ewma(xs[: i + 1], alpha) for i in range(len(xs))]
    devs = [x - m for x, m in zip(xs, means, strict=True)]
    var = _ewma([d * d for d in devs], alpha)
    return devs[-1] / math.sqrt(var) if var > 0 else 0.0


def _percent_b(window: list[float], k: float) -> float:
    mean = sum(window) / len(window)
    sd = math.sqrt(sum((m - mean) ** 2 for m in window) / len(window))
    return 0.5 + (window[-1] - mean) / (2.0 * k * sd)


def _expected_last() -> dict[str, float]:
    """Every feature after the scripted stream, from the definitions."""
    rets = [math.log(b / a) for a, b in pairwise(MIDS)]
    diffs = [b - a for a, b in pairwise(MIDS)]
    gain = _ewma([max(d, 0.0) for d in diffs], 0.5)
    loss = _ewma([max(-d, 0.0) for d in diffs], 0.5)
    slow = [_ewma(MIDS[: i + 1], 0.5) for i in range(len(MIDS))]
    macd = [m - s for m, s in zip(MIDS, slow, strict=True)]
    vols = [math.sqrt(_ewma([r * r for r in rets[: i + 1]], HALF)) for i in range(len(rets))]
    return {
        "mid": 100.05,
        "spread": 0.04,
        "microprice": (100.03 * 1.0 + 100.07 * 4.0) / 5.0 - 100.05,
        "l1_imbalance": (4.0 - 1.0) / 5.0,
        "book_imbalance": (4.0 - 1.0) / 5.0,
        "vol_ewma": vols[-1],
        "rsi": 100.0 * gain / (gain + loss),
        "macd": macd[-1],
        "macd_hist": macd[-1] - _ewma(macd, 0.5),
        "bollinger_b": _percent_b(MIDS[-3:], k=1.0),
        "spread_z": _zscore(SPREADS, HALF),
        "vol_z": _zscore(vols, HALF),
        "trade_flow": (2.0 + HALF * (-6.0 - 2.0)) / (2.0 + HALF * (6.0 - 2.0)),
        "time_since_trade": 2.5,
        "ret_1": math.log(MIDS[-1] / MIDS[-2]),
        "ret_2": math.log(MIDS[-1] / MIDS[-3]),
    }


@pytest.mark.parametrize("name", SMALL.all_names)
def test_each_feature_matches_its_definition_on_a_scripted_stream(name):
    last = _feed(FeatureBuffer(SMALL))[-1]
    expected = _expected_last()[name]
    assert last[SMALL.names.index(name)] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_features_are_nan_until_defined_and_trade_features_wait_for_a_trade():
    rows = _feed(FeatureBuffer(SMALL))
    column = {name: [float(r[j]) for r in rows] for j, name in enumerate(SMALL.names)}
    assert column["mid"][0] == pytest.approx(100.01)
    assert math.isnan(column["trade_flow"][0])
    assert math.isnan(column["time_since_trade"][0])
    assert column["time_since_trade"][1:3] == [0.0, 0.5]
    assert column["trade_flow"][1] == 1.0
    # returns need a previous mid: NaN on the first quote and on the trade after it
    for name in ("vol_ewma", "rsi", "vol_z", "ret_1"):
        assert all(math.isnan(v) for v in column[name][:2]), name
        assert not math.isnan(column[name][2]), name
    assert all(math.isnan(v) for v in column["ret_2"][:4])
    assert not math.isnan(column["ret_2"][4])
    assert all(math.isnan(v) for v in column["bollinger_b"][:4])  # 3rd mid update is event 4
    assert column["bollinger_b"][4] == pytest.approx(_percent_b(MIDS[:3], k=1.0), rel=1e-5)
    assert column["macd"][0] == 0.0
    assert column["spread_z"][0] == 0.0  # no dispersion yet


def test_a_flat_bollinger_window_is_exactly_one_half():
    buffer = FeatureBuffer(SMALL)
    for i in range(5):
        buffer.on_quote(T0 + i, 100.0, 1.0, 100.02, 1.0)
    assert buffer.compute()[SMALL.names.index("bollinger_b")] == 0.5
    assert buffer.compute()[SMALL.names.index("rsi")] == 50.0


def test_names_are_fixed_and_the_vector_is_one_preallocated_float64_array():
    buffer = FeatureBuffer()
    assert buffer.names == FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 17
    vector = buffer.vector
    assert vector.dtype == np.float64
    assert vector.shape == (len(FEATURE_NAMES),)
    for _ in range(3):
        _feed(buffer)
        assert buffer.compute() is vector
        buffer.reset()
    assert buffer.vector is vector


@pytest.mark.parametrize(
    "subset",
    [
        ("l1_imbalance",),
        ("time_since_trade", "mid", "book_imbalance", "trade_flow", "spread", "microprice"),
        ("ret_2", "spread", "vol_z"),
        ("bollinger_b",),
    ],
)
def test_a_subset_computes_only_its_features_in_the_given_order(subset):
    full = FeatureBuffer(SMALL)
    part = FeatureBuffer(replace(SMALL, features=subset))
    assert part.names == subset
    assert part.vector.shape == (len(subset),)
    columns = [SMALL.names.index(name) for name in subset]
    for a, b in zip(_feed(full), _feed(part), strict=True):
        np.testing.assert_array_equal(a[columns], b)


def test_ready_flips_exactly_when_the_last_window_fills():
    config = replace(SMALL, features=("ret_2", "trade_flow"))
    assert warmup(config) == (3, 1)
    buffer = FeatureBuffer(config)
    flips = []
    for i in range(4):
        buffer.on_quote(T0 + i, 100.0 + i * 0.01, 1.0, 100.02 + i * 0.01, 1.0)
        flips.append(buffer.ready)
    assert flips == [False, False, False, False]  # windows full, but no trade yet
    buffer.on_trade(T0 + 9, 100.0, 1.0, 1)
    assert buffer.ready
    assert not np.isnan(buffer.compute()).any()


def test_ready_means_no_nan_for_the_default_features():
    buffer = FeatureBuffer()
    need_mid, need_trades = warmup(buffer.config)
    assert need_mid == 501  # the online normalisation's half-life dominates
    for i in range(need_mid - 1):
        buffer.on_quote(T0 + i, 100.0 + (i % 3) * 0.01, 1.0 + i % 2, 100.02, 2.0)
        if i < need_trades:
            buffer.on_trade(T0 + i, 100.0, 1.0, -1)
    assert not buffer.ready
    buffer.on_quote(T0 + need_mid, 100.01, 1.0, 100.03, 1.0)
    assert buffer.ready
    assert not np.isnan(buffer.compute()).any()


def test_reset_forgets_everything():
    buffer = FeatureBuffer(SMALL)
    first = _feed(buffer)
    buffer.reset()
    assert np.isnan(buffer.vector).all()
    assert not buffer.ready
    assert np.isnan(buffer.compute()).all()
    again = _feed(buffer)
    np.testing.assert_array_equal(np.array(first), np.array(again))


def test_a_handle_taken_before_reset_still_drives_the_buffer():
    buffer = FeatureBuffer(SMALL)
    on_quote, on_trade = buffer.on_quote, buffer.on_trade
    _feed(buffer)
    buffer.reset()
    for offset, kind, values in SCRIPT:
        ts = T0 + int(offset * SECOND)
        if kind == "quote":
            on_quote(ts, *values)
        else:
            px, sz, side = values
            on_trade(ts, px, sz, int(side))
    np.testing.assert_array_equal(buffer.compute(), _feed(FeatureBuffer(SMALL))[-1])


def test_history_and_light_modes_agree_on_the_light_features():
    light = tuple(name for name in SMALL.all_names if name in LIGHT_FEATURES)
    quick = FeatureBuffer(replace(SMALL, features=light))
    full = FeatureBuffer(SMALL)
    columns = [SMALL.names.index(name) for name in light]
    for a, b in zip(_feed(full), _feed(quick), strict=True):
        np.testing.assert_array_equal(a[columns], b)


def test_book_imbalance_sums_levels_and_skips_empty_ones():
    bid_sz = [np.array([1.0, 1.0]), np.array([4.0, np.nan])]
    ask_sz = [np.array([2.0, 2.0]), np.array([1.0, 1.0])]
    px = [np.array([100.0, 100.0]), np.array([99.0, np.nan])]
    ask_px = [np.array([101.0, 101.0]), np.array([102.0, 102.0])]
    levels = BookColumns.from_arrays(px, bid_sz, ask_px, ask_sz)
    buffer = FeatureBuffer(FeatureConfig(levels=2))
    buffer.on_book(T0, levels, 0)
    out = dict(zip(buffer.names, buffer.compute(), strict=True))
    assert out["book_imbalance"] == pytest.approx((5.0 - 3.0) / 8.0)
    assert out["l1_imbalance"] == pytest.approx((1.0 - 2.0) / 3.0)
    buffer.on_book(T0 + 1, levels, 1)
    assert buffer.compute()[buffer.names.index("book_imbalance")] == pytest.approx(-2 / 4)
    buffer.on_quote(T0 + 2, 100.0, 3.0, 101.0, 1.0)  # a quote: book == L1
    assert buffer.compute()[buffer.names.index("book_imbalance")] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"features": ("l1_imbalence",)},
            "unknown feature 'l1_imbalence'.*did you mean 'l1_imbalance'",
        ),
        ({"features": ()}, "non-empty tuple"),
        ({"features": ("mid", "mid")}, "names a feature twice"),
        ({"features": ("ret_5",)}, "unknown feature 'ret_5'"),
        ({"horizons": (1, 1)}, "horizons must be"),
        ({"levels": 0}, r"levels must be an integer >= 1; found 0"),
        ({"macd_slow": 12}, "macd_slow must be an integer above macd_fast"),
        ({"bollinger_window": 1}, "bollinger_window must be an integer >= 2"),
        ({"vol_halflife": 0.0}, "vol_halflife must be a finite number > 0"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        FeatureConfig(**changes)


# ---- event table -----------------------------------------------------------------------


def test_event_table_flattens_merged_sources_in_merge_order(tmp_path):
    q = write(quotes(4, step=2_000), tmp_path / "q.parquet")
    t = write(trades(3, step=3_000), tmp_path / "t.parquet")
    b = write(book(3, levels=2, start=T0 + 500), tmp_path / "b.parquet")
    sources = [
        ParquetSource(q, priority=0, batch_rows=2),
        ParquetSource(t, priority=1, batch_rows=2),
        ParquetSource(b, priority=2),
    ]
    table = event_table(merge(sources), levels=3)
    assert table.columns[:9] == [
        "kind", "ts_recv", "bid_px", "bid_sz", "ask_px", "ask_sz", "px", "sz", "side",
    ]  # fmt: skip
    assert table.columns[9:13] == ["bid_px_0", "bid_sz_0", "ask_px_0", "ask_sz_0"]
    assert len(table.columns) == 9 + 4 * 3
    assert table.schema["kind"] == pl.Int8
    assert table.schema["side"] == pl.Int8
    assert table.height == 10
    assert table["ts_recv"].is_sorted()
    # at T0 the quote (priority 0) goes before the trade (priority 1)
    assert table["kind"].to_list()[:3] == [0, 1, 2]
    trade_rows = table.filter(pl.col("kind") == 1)
    assert trade_rows["bid_px"].null_count() == trade_rows.height
    assert trade_rows["side"].to_list() == [1, -1, 1]
    book_rows = table.filter(pl.col("kind") == 2)
    assert book_rows["bid_px"].to_list() == book_rows["bid_px_0"].to_list() == [100.0] * 3
    assert book_rows["ask_sz_1"].to_list() == [7.0] * 3
    assert book_rows["bid_px_2"].null_count() == 3  # the book has two levels
    quote_rows = table.filter(pl.col("kind") == 0)
    assert quote_rows["bid_px_0"].null_count() == 4
    assert quote_rows["side"].null_count() == 4


def test_event_table_of_nothing_has_the_schema():
    table = event_table([], levels=1)
    assert table.height == 0
    assert table.columns[-4:] == ["bid_px_0", "bid_sz_0", "ask_px_0", "ask_sz_0"]


def test_session_events_reads_every_book_level_and_names_a_missing_kind(tmp_path):
    session_path = tmp_path / "s"
    session_path.mkdir()
    write(book(5, levels=2), session_path / "book.parquet")
    session = resolve_session(str(session_path), tmp_path)
    table = session_events(session, ("book",))
    assert table.height == 5
    assert table.columns[-8:] == [f"{n}_{i}" for i in range(2) for n in QUOTE_COLUMNS]
    with pytest.raises(DataError, match="has no trades"):
        session_events(session, ("book", "trades"))


# ---- twins on real data ----------------------------------------------------------------


def assert_twins_equal(events: pl.DataFrame, config: FeatureConfig) -> None:
    """incremental == vectorised for every feature, bit for bit (NaNs included)."""
    fast = features_frame(events, config)
    slow = incremental_features(events, config)
    assert fast.shape == slow.shape == (events.height, len(config.names))
    assert fast.dtype == slow.dtype == np.float64
    for j, name in enumerate(config.names):
        np.testing.assert_array_equal(np.isnan(fast[:, j]), np.isnan(slow[:, j]), err_msg=name)
        ok = ~np.isnan(slow[:, j])  # NaN payloads may differ; every number must not
        np.testing.assert_array_equal(
            fast[ok, j].view(np.uint64), slow[ok, j].view(np.uint64), err_msg=name
        )


def bundled(symbol: str) -> Path:
    return BUNDLED_DATA / "nasdaq" / symbol / "2012-06-21"


@pytest.mark.parametrize(
    ("symbol", "kinds", "levels"),
    [("GOOG", ("book", "trades"), 10), ("AAPL", ("quotes", "trades"), 1)],
)
def test_incremental_equals_vectorised_on_the_first_events_of_a_real_session(symbol, kinds, levels):
    session = resolve_session(str(bundled(symbol)), BUNDLED_DATA)
    events = session_events(session, kinds, limit=20_000)
    assert events.height == 20_000
    assert set(events["kind"].unique().to_list()) == {0 if kinds[0] == "quotes" else 2, 1}
    assert_twins_equal(events, FeatureConfig(levels=levels))


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(levels=3, horizons=(1, 2, 3, 5, 8, 13)),  # more returns than one pack
        FeatureConfig(horizons=(4,), features=("trade_flow", "ret_4", "mid", "time_since_trade")),
        FeatureConfig(levels=10, features=("time_since_trade", "book_imbalance", "spread")),
        replace(SMALL, levels=10),
    ],
    ids=["six-horizons", "shuffled-subset", "light-subset", "small-windows"],
)
def test_incremental_equals_vectorised_for_other_configs(config):
    session = resolve_session(str(bundled("GOOG")), BUNDLED_DATA)
    assert_twins_equal(session_events(session, ("book", "trades"), limit=3_000), config)


def test_changing_later_events_never_changes_earlier_features():
    session = resolve_session(str(bundled("GOOG")), BUNDLED_DATA)
    events = session_events(session, ("book", "trades"), limit=3_000)
    cut = 1_700
    later = events.slice(cut + 1).with_columns(
        pl.col(name).reverse() for name in events.columns if name != "ts_recv"
    )
    changed = pl.concat([events.head(cut + 1), later])
    config = FeatureConfig(levels=10, horizons=(1, 5))
    for compute in (features_frame, incremental_features):
        a, b = compute(events, config), compute(changed, config)
        np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])
        assert not np.array_equal(a[cut + 1 :], b[cut + 1 :], equal_nan=True)
