"""The vectorised twin of `FeatureBuffer`: every feature over a whole session at once.

Row i of `features_frame(events, config)` is the vector `FeatureBuffer.compute()` returns
after event i of the same event table (`events.event_table`), columns in `config.names` order.
Mid features are computed on the compact series of mid updates (quote and book rows) and
trade features on the compact series of trades, then carried to every event from the latest
mid update / trade at or before it, so nothing can see a later event. EWMAs are polars
`ewm_mean(adjust=False)`, the recursion the buffer runs step by step with the same alphas;
Bollinger's running sums are cumulative sums per ring turn, in the buffer's order. So every
value has the buffer's bits (float64; tests compare the bits), and nothing loops over events.

`incremental_features` drives a `FeatureBuffer` over the same table event by event: the
reference the tests compare against, and a debugging aid.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from simulator.features.buffer import BookColumns, FeatureBuffer, depth
from simulator.features.config import FeatureConfig, Smoothing
from simulator.features.events import BOOK, TRADE
from simulator.types import book_levels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Values = dict[str, FloatArray]


def features_frame(events: pl.DataFrame, config: FeatureConfig) -> FloatArray:
    """n_events x n_features float64, row i = the feature vector after event i."""
    kind = events["kind"].to_numpy()
    values = _mid_features(events, kind, config)
    values.update(_trade_features(events, kind, Smoothing.of(config)))
    out = np.empty((events.height, len(config.names)), dtype=np.float64)
    for j, name in enumerate(config.names):
        out[:, j] = values[name]
    return out


def _floats(events: pl.DataFrame, name: str) -> FloatArray:
    return np.asarray(events[name].to_numpy(), dtype=np.float64)  # null -> NaN


def _book_depths(events: pl.DataFrame, kind: npt.NDArray[np.int8], levels: int) -> list[FloatArray]:
    """Summed bid and ask sizes per event: over the book levels on book rows, L1 elsewhere."""
    present = min(levels, book_levels(events.columns))
    out = []
    for side in ("bid", "ask"):
        top = _floats(events, f"{side}_sz")
        if present == 0:
            out.append(top)
            continue
        summed = depth([_floats(events, f"{side}_sz_{i}") for i in range(present)])
        out.append(np.where(kind == BOOK, summed, top))
    return out


def _mid_features(
    events: pl.DataFrame, kind: npt.NDArray[np.int8], config: FeatureConfig
) -> Values:
    is_mid = kind != TRADE
    bid, bid_sz, ask, ask_sz = (
        _floats(events, c)[is_mid] for c in ("bid_px", "bid_sz", "ask_px", "ask_sz")
    )
    dbid, dask = (d[is_mid] for d in _book_depths(events, kind, config.levels))
    a = Smoothing.of(config)
    mid = (bid + ask) * 0.5
    spread = ask - bid
    log_mid = np.log(mid)
    values: Values = {
        "mid": mid,
        "spread": spread,
        "microprice": (bid * ask_sz + ask * bid_sz) / (bid_sz + ask_sz) - mid,
        "l1_imbalance": (bid_sz - ask_sz) / (bid_sz + ask_sz),
        "book_imbalance": (dbid - dask) / (dbid + dask),
        "bollinger_b": _bollinger(mid, config),
        "spread_z": _zscore(spread, a.norm),
    }
    values.update(_return_features(log_mid, mid, a))
    values.update(_macd(mid, a))
    for h in config.horizons:
        ret = np.full(len(mid), np.nan)
        ret[h:] = log_mid[h:] - log_mid[:-h]
        values[f"ret_{h}"] = ret
    latest = np.cumsum(is_mid) - 1
    return {name: _carry(series, latest) for name, series in values.items()}


def _trade_features(events: pl.DataFrame, kind: npt.NDArray[np.int8], a: Smoothing) -> Values:
    is_trade = kind == TRADE
    sz = _floats(events, "sz")[is_trade]
    side = events["side"].fill_null(0).to_numpy()[is_trade].astype(np.float64)
    flow = _ewm(side * sz, a.flow) / _ewm(sz, a.flow)
    latest = np.cumsum(is_trade) - 1
    ts = np.asarray(events["ts_recv"].to_numpy(), dtype=np.int64)
    since = np.full(len(ts), np.nan)
    seen = latest >= 0
    since[seen] = (ts[seen] - ts[is_trade][latest[seen]]).astype(np.float64) / 1e9
    return {"trade_flow": _carry(flow, latest), "time_since_trade": since}


def _carry(series: FloatArray, latest: IntArray) -> FloatArray:
    """Per event, the value at the latest update at or before it (NaN before the first)."""
    out = np.full(len(latest), np.nan)
    seen = latest >= 0
    out[seen] = series[latest[seen]]
    return out


def _ewm(x: FloatArray, alpha: float) -> FloatArray:
    """m[0] = x[0]; m[t] = m[t-1] + alpha (x[t] - m[t-1]): exactly the buffer's recursion."""
    if len(x) == 0:
        return np.empty(0)
    series = pl.Series(x, dtype=pl.Float64).ewm_mean(alpha=alpha, adjust=False)
    return np.asarray(series.to_numpy(), dtype=np.float64)


def _ratio(num: FloatArray, den: FloatArray, fallback: float) -> FloatArray:
    """num / den where den > 0, else `fallback` (no division by zero is attempted)."""
    out = np.full(len(num), fallback)
    np.divide(num, den, out=out, where=den > 0.0)
    return out


def _zscore(x: FloatArray, alpha: float) -> FloatArray:
    mean = _ewm(x, alpha)
    dev = x - mean
    var = _ewm(dev * dev, alpha)
    return _ratio(dev, np.sqrt(var), 0.0)


def _return_features(log_mid: FloatArray, mid: FloatArray, a: Smoothing) -> Values:
    """vol_ewma, rsi and vol_z: defined from the second mid update (the first return)."""
    r = np.diff(log_mid)
    d = np.diff(mid)
    vol = np.sqrt(_ewm(r * r, a.vol))
    gain = _ewm(np.where(d > 0.0, d, 0.0), a.rsi)
    loss = _ewm(np.where(d < 0.0, -d, 0.0), a.rsi)
    rsi = _ratio(100.0 * gain, gain + loss, 50.0)
    head = np.full(min(1, len(mid)), np.nan)
    return {
        "vol_ewma": np.concatenate([head, vol]),
        "rsi": np.concatenate([head, rsi]),
        "vol_z": np.concatenate([head, _zscore(vol, a.norm)]),
    }


def _macd(mid: FloatArray, a: Smoothing) -> Values:
    macd = _ewm(mid, a.fast) - _ewm(mid, a.slow)
    return {"macd": macd, "macd_hist": macd - _ewm(macd, a.signal)}


def _run_length(x: FloatArray) -> IntArray:
    """How many values in a row, ending at each position, equal it."""
    index = np.arange(len(x))
    starts = np.ones(len(x), dtype=np.bool_)
    starts[1:] = x[1:] != x[:-1]
    return index - np.maximum.accumulate(np.where(starts, index, 0)) + 1


def _bollinger(mid: FloatArray, config: FeatureConfig) -> FloatArray:
    """%b over the last `window` mids, with the buffer's very arithmetic (same bits).

    The buffer keeps running sums of d = mid - ref and d*d (ref: the mid at the start of each
    turn of its ring of `size` mid updates, where the sums are rebuilt from the window's
    tail), adding the newest d and subtracting the one leaving. Here each ring turn is a row
    of those terms in the buffer's order and `np.cumsum(axis=1)` adds them one by one (an
    accumulate never regroups); a missing term is 0.0, which leaves a sum unchanged.
    """
    window, n = config.bollinger_window, len(mid)
    if n < window:
        return np.full(n, np.nan)
    size = max(max(config.horizons), window) + 1  # history.py's ring
    turns = -(-n // size)
    head = window - 1  # rebuilt from the window's tail: window - 1 terms
    t = np.arange(turns * size).reshape(turns, size)  # mid update index, row = ring turn
    padded = np.concatenate([mid, np.full(turns * size - n, np.nan)])
    ref = padded[t[:, :1]]
    # the rebuild at a turn's start: mids 1 .. window-1 updates back, nearest first
    back = t[:, :1] - np.arange(1, window)
    tail = np.where(back >= 0, padded[np.maximum(back, 0)] - ref, 0.0)
    tail[0] = 0.0  # the first turn starts with empty sums (n == 1)
    added = padded[t[:, 1:]] - ref
    leaving = t[:, 1:] - window
    removed = np.where(leaving >= 0, padded[np.maximum(leaving, 0)] - ref, 0.0)
    sums = []
    for first, second in (
        (tail, (added, -removed)),
        (tail * tail, (added * added, -(removed * removed))),
    ):
        terms = np.empty((turns, head + 2 * (size - 1)))
        terms[:, :head] = first
        terms[:, head::2] = second[0]
        terms[:, head + 1 :: 2] = second[1]
        running = np.cumsum(terms, axis=1)
        at = np.empty((turns, size))
        at[:, 0] = running[:, head - 1]
        at[:, 1:] = running[:, head + 1 :: 2]
        sums.append(at.ravel()[:n])
    total, squares = sums
    mean = total / window
    var = squares / window - mean * mean
    usable = (var > 0.0) & (_run_length(mid) < window)
    k2 = 2.0 * config.bollinger_k
    width = np.where(usable, k2 * np.sqrt(np.where(usable, var, 1.0)), 0.0)
    out = 0.5 + _ratio(mid - ref.repeat(size)[:n] - mean, width, 0.0)
    out[: window - 1] = np.nan
    return out


def frame_book_columns(events: pl.DataFrame, levels: int) -> BookColumns:
    """What `FeatureBuffer.on_book` takes, over a whole event table (row = event index)."""
    present = min(levels, book_levels(events.columns))
    names = [f"_{i}" for i in range(present)] if present else [""]

    def side(name: str) -> list[FloatArray]:
        return [_floats(events, f"{name}{suffix}") for suffix in names]

    return BookColumns.from_arrays(side("bid_px"), side("bid_sz"), side("ask_px"), side("ask_sz"))


def incremental_features(
    events: pl.DataFrame, config: FeatureConfig, *, kernel: str | None = None
) -> FloatArray:
    """Drive a FeatureBuffer (of `kernel`, see `native.choose`) over `events`, calling
    compute() after every event."""
    buffer = FeatureBuffer(config, kernel=kernel)
    book = frame_book_columns(events, config.levels)
    kind = events["kind"].to_list()
    ts = events["ts_recv"].to_list()
    bid, bid_sz, ask, ask_sz, px, sz = (
        _floats(events, c).tolist() for c in ("bid_px", "bid_sz", "ask_px", "ask_sz", "px", "sz")
    )
    side = events["side"].fill_null(0).to_list()
    out = np.empty((events.height, len(buffer.names)), dtype=np.float64)
    on_quote, on_trade, on_book, compute = (
        buffer.on_quote, buffer.on_trade, buffer.on_book, buffer.compute
    )  # fmt: skip
    for i, k in enumerate(kind):
        if k == TRADE:
            on_trade(ts[i], px[i], sz[i], side[i])
        elif k == BOOK:
            on_book(ts[i], book, i)
        else:
            on_quote(ts[i], bid[i], bid_sz[i], ask[i], ask_sz[i])
        out[i] = compute()
    return out


__all__ = ["features_frame", "frame_book_columns", "incremental_features"]
