"""Incremental features: O(1) work per market event into one preallocated float32 vector.

`FeatureBuffer` implements the feature stage of the pipeline. The features, when each one
updates and what it is before data exists are listed in `simulator.features.config`; the
vectorised twin in `batch` computes the same values over a whole session, and tests prove
the two equal. The buffer never allocates per event beyond the floats CPython boxes anyway:
rings are plain-float lists, the output is written into preallocated float32 arrays through
memoryviews and `struct.pack_into`.

Inputs must obey the data contract (finite positive prices and level-0 sizes, which
`sources.schema` checks at load time), so no division here can meet a zero.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from math import log, sqrt
from typing import Final, NamedTuple, Protocol, cast

import numpy as np
import numpy.typing as npt

from simulator.features.config import (
    LIGHT_FEATURES,
    MID_FEATURES,
    TRADE_FEATURES,
    FeatureConfig,
    Smoothing,
    warmup,
)
from simulator.sources.recorded import EventBatch
from simulator.types import book_levels

NAN: Final = float("nan")
_BOOK_IMBALANCE: Final = MID_FEATURES.index("book_imbalance")
_PACKED_RETURNS: Final = 3
"""Returns written by the one struct call per mid update (the rest, if any, one by one)."""
FloatArray = npt.NDArray[np.float64]


class BookColumns(NamedTuple):
    """One book batch's columns, built once per batch (cold) for `FeatureBuffer.on_book`.

    Per level i (best first): memoryviews over float64 arrays. `bid_depth`/`ask_depth` hold
    the per-row size summed over the levels, empty (NaN) levels counting 0, level by level
    in order (the vectorised twin sums in the same order, so both get the same bits).
    """

    bid_px: tuple[memoryview, ...]
    bid_sz: tuple[memoryview, ...]
    ask_px: tuple[memoryview, ...]
    ask_sz: tuple[memoryview, ...]
    bid_depth: memoryview
    ask_depth: memoryview

    @classmethod
    def from_arrays(
        cls,
        bid_px: list[FloatArray],
        bid_sz: list[FloatArray],
        ask_px: list[FloatArray],
        ask_sz: list[FloatArray],
    ) -> BookColumns:
        def views(arrays: list[FloatArray]) -> tuple[memoryview, ...]:
            return tuple(np.ascontiguousarray(a, dtype=np.float64).data for a in arrays)

        return cls(
            views(bid_px), views(bid_sz), views(ask_px), views(ask_sz),
            depth(bid_sz).data, depth(ask_sz).data,
        )  # fmt: skip

    @classmethod
    def from_batch(cls, batch: EventBatch, levels: int) -> BookColumns:
        """The first min(levels, levels in the batch) levels of a book batch."""
        n = max(1, min(levels, book_levels(tuple(batch.columns))))

        def side(name: str) -> list[FloatArray]:
            return [np.asarray(batch.columns[f"{name}_{i}"], dtype=np.float64) for i in range(n)]

        return cls.from_arrays(side("bid_px"), side("bid_sz"), side("ask_px"), side("ask_sz"))


def depth(sizes: list[FloatArray]) -> FloatArray:
    """Sizes summed level by level, NaN (empty level) as 0."""
    total = np.zeros(len(sizes[0]), dtype=np.float64)
    for level in sizes:
        total = total + np.where(np.isnan(level), 0.0, level)
    return total


class QuoteHandler(Protocol):
    def __call__(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...


class FeatureBuffer:
    """Incremental features of one instrument (see the module docstring for each feature).

    `on_quote`/`on_trade`/`on_book` update the state, `compute()` writes `vector` (the same
    array for the buffer's lifetime, in `names` order) and returns it. Two modes, picked once:
    a selection of only top-of-book and trade features keeps no history and computes its few
    values on demand; any other selection keeps every running statistic and writes what a mid
    update changes eagerly. `on_quote` and `compute` are per-instance functions picked for
    the mode (in history mode, a closure holding the running state): see `_history_on_quote`
    for why.
    """

    __slots__ = (
        "_ask", "_ask_sz", "_bid", "_bid_sz", "_depth_ask", "_depth_bid", "_flow_a", "_flow_at",
        "_flow_s", "_flow_v", "_full", "_full_head", "_full_view", "_gather", "_getters",
        "_history", "_last_trade_ts", "_n_mid", "_n_trade", "_need", "_out", "_out_head",
        "_reset_history", "_since_at", "_ts", "compute", "config", "names", "on_quote", "vector",
    )  # fmt: skip

    on_quote: QuoteHandler
    """A quote: (ts_recv, bid_px, bid_sz, ask_px, ask_sz) -> None."""
    compute: Callable[[], npt.NDArray[np.float32]]
    """Write the current values into `vector` (in place) and return it."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = FeatureConfig() if config is None else config
        self.names: tuple[str, ...] = self.config.names
        self.vector: npt.NDArray[np.float32] = np.full(len(self.names), NAN, dtype=np.float32)
        self._out = cast("memoryview[float]", self.vector.data)
        self._need = warmup(self.config)
        self._flow_a = Smoothing.of(self.config).flow
        self._history = any(name not in LIGHT_FEATURES for name in self.names)
        self._lay_out()
        self._reset_history: Callable[[], None] = _nothing
        self._getters: tuple[tuple[int, Callable[[], float]], ...] = ()
        if self._history:
            self.on_quote, self._reset_history = _history_on_quote(self)
            self.compute = self._compute_history
        else:
            self._getters = tuple(
                (j, getattr(self, f"_get_{name}")) for j, name in enumerate(self.names)
            )
            self.on_quote = self._light_quote
            self.compute = _light_compute(self)
        self.reset()

    def _lay_out(self) -> None:
        """Where history mode keeps values: `_full` holds the mid features and the returns in
        `all_names` order (plus padding: the struct call always packs _PACKED_RETURNS returns);
        compute() copies them over (one memcpy when `names` starts with all of them, in order)
        and writes the trade features straight to their place in the vector."""
        mid_names = self.config.all_names[: -len(TRADE_FEATURES)]
        size = len(MID_FEATURES) + max(len(self.config.horizons), _PACKED_RETURNS)
        self._full = np.full(size, NAN, dtype=np.float32)
        self._full_view = cast("memoryview[float]", self._full.data)
        head = 4 * len(mid_names)  # float32 bytes; the views are sliced once, here
        self._out_head = self.vector.data.cast("B")[:head]
        self._full_head = self._full.data.cast("B")[:head]
        self._gather: tuple[tuple[int, int], ...] | None = None
        if self.names[: len(mid_names)] != mid_names:
            self._gather = tuple(
                (j, mid_names.index(name)) for j, name in enumerate(self.names) if name in mid_names
            )
        at = {name: j for j, name in enumerate(self.names)}
        self._flow_at = at.get("trade_flow", -1)
        self._since_at = at.get("time_since_trade", -1)

    def reset(self) -> None:
        """Forget everything (a new session): every value back to NaN, every window empty."""
        self._ts = self._last_trade_ts = 0
        self._bid = self._bid_sz = self._ask = self._ask_sz = NAN
        self._depth_bid = self._depth_ask = NAN
        self._n_mid = self._n_trade = 0
        self._flow_s = self._flow_v = 0.0
        self._full.fill(NAN)
        self.vector.fill(NAN)
        self._reset_history()

    @property
    def ready(self) -> bool:
        """True once every selected feature has seen its warm-up (then nothing is NaN)."""
        return self._n_mid >= self._need[0] and self._n_trade >= self._need[1]

    def book_columns(self, batch: EventBatch) -> BookColumns:
        """The per-batch bundle `on_book` takes (the engine builds it once per book batch)."""
        return BookColumns.from_batch(batch, self.config.levels)

    def on_book(self, ts_recv: int, levels: BookColumns, row: int) -> None:
        """A book event: level 0 is the quote; book_imbalance sums the levels."""
        self.on_quote(
            ts_recv,
            levels.bid_px[0][row],
            levels.bid_sz[0][row],
            levels.ask_px[0][row],
            levels.ask_sz[0][row],
        )
        depth_bid = self._depth_bid = levels.bid_depth[row]
        depth_ask = self._depth_ask = levels.ask_depth[row]
        if self._history:
            self._full_view[_BOOK_IMBALANCE] = (depth_bid - depth_ask) / (depth_bid + depth_ask)

    def on_trade(self, ts_recv: int, px: float, sz: float, side: int) -> None:
        """A trade: `px` is not used (trade features are about flow and time)."""
        self._ts = ts_recv
        self._last_trade_ts = ts_recv
        self._n_trade += 1
        signed = side * sz
        if self._n_trade > 1:
            a = self._flow_a
            self._flow_s += a * (signed - self._flow_s)
            self._flow_v += a * (sz - self._flow_v)
        else:
            self._flow_s = signed
            self._flow_v = sz

    def _compute_history(self) -> npt.NDArray[np.float32]:
        out = self._out
        if self._n_trade:  # trade features go straight to their place in the vector
            at = self._flow_at
            if at >= 0:
                out[at] = self._flow_s / self._flow_v
            at = self._since_at
            if at >= 0:
                out[at] = (self._ts - self._last_trade_ts) / 1e9
        gather = self._gather
        if gather is None:  # every feature in canonical order: one memcpy
            self._out_head[:] = self._full_head
        else:
            full = self._full_view
            for j, i in gather:
                out[j] = full[i]
        return self.vector

    def _light_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None:
        """on_quote without history: keep the top of book for the getters below."""
        self._ts = ts_recv
        self._bid = bid_px
        self._bid_sz = bid_sz
        self._ask = ask_px
        self._ask_sz = ask_sz
        self._depth_bid = bid_sz
        self._depth_ask = ask_sz
        self._n_mid += 1

    # Top-of-book and trade features on demand, for selections that keep no history. The
    # history mode computes the same expressions; a test checks the two modes agree.
    def _get_mid(self) -> float:
        return (self._bid + self._ask) * 0.5

    def _get_spread(self) -> float:
        return self._ask - self._bid

    def _get_microprice(self) -> float:
        bid, ask, bid_sz, ask_sz = self._bid, self._ask, self._bid_sz, self._ask_sz
        return (bid * ask_sz + ask * bid_sz) / (bid_sz + ask_sz) - (bid + ask) * 0.5

    def _get_l1_imbalance(self) -> float:
        return (self._bid_sz - self._ask_sz) / (self._bid_sz + self._ask_sz)

    def _get_book_imbalance(self) -> float:
        return (self._depth_bid - self._depth_ask) / (self._depth_bid + self._depth_ask)

    def _get_trade_flow(self) -> float:
        return self._flow_s / self._flow_v if self._n_trade else NAN

    def _get_time_since_trade(self) -> float:
        return (self._ts - self._last_trade_ts) / 1e9 if self._n_trade else NAN


def _nothing() -> None:
    pass


def _light_compute(buffer: FeatureBuffer) -> Callable[[], npt.NDArray[np.float32]]:
    """compute() without history: call the getters (one of them without a loop: that is
    the rule strategy's whole feature stage, so every bytecode counts)."""
    out, vector, getters = buffer._out, buffer.vector, buffer._getters
    if len(getters) == 1:
        ((j, get),) = getters

        def compute_one() -> npt.NDArray[np.float32]:
            out[j] = get()
            return vector

        return compute_one

    def compute() -> npt.NDArray[np.float32]:
        for i, getter in getters:
            out[i] = getter()
        return vector

    return compute


def _history_on_quote(  # noqa: C901 - see on_quote
    buffer: FeatureBuffer,
) -> tuple[QuoteHandler, Callable[[], None]]:
    """The history mode's (on_quote, reset): on_quote updates every running statistic, then
    packs the twelve values a mid update changes and the first returns in one struct call.

    Its state lives in this closure's cells rather than in slots: a cell read or write is
    about half the cost of an attribute access, and this runs once per market event (it
    took on_quote + compute from ~3.5 to ~2.5 us here). One long frame on purpose: a call
    costs as much as a dozen lines of arithmetic. EWMAs start at their first input (mid
    EWMAs on the 1st mid update, return EWMAs on the 2nd) by setting them so that the
    steady update yields exactly that input.
    """
    config = buffer.config
    a = Smoothing.of(config)
    a_vol, a_rsi, a_norm, a_fast, a_slow, a_signal = a.vol, a.rsi, a.norm, a.fast, a.slow, a.signal
    window = config.bollinger_window
    k2 = 2.0 * config.bollinger_k
    size = max(max(config.horizons), window) + 1
    logs = [NAN] * size  # rings of log-mid and mid; NaN until written
    mids = [NAN] * size
    # Always three returns in the struct call (fixed arity, no loop); fewer horizons are
    # padded with the first one, written past the end of what compute() copies.
    h1, h2, h3 = (*config.horizons, *(config.horizons[0],) * _PACKED_RETURNS)[:_PACKED_RETURNS]
    more_returns = tuple(
        (len(MID_FEATURES) + k, h) for k, h in enumerate(config.horizons) if k >= _PACKED_RETURNS
    )
    pack = struct.Struct(f"<{len(MID_FEATURES) + _PACKED_RETURNS}f").pack_into
    full_view, full_bytes = buffer._full_view, buffer._full.data.cast("B")
    pos = run = 0  # the state, (re)set by reset() below
    fast = slow = signal = spread_m = spread_v = var = gain = loss = vol_m = vol_v = 0.0
    bb_ref = bb_s = bb_q = 0.0

    def reset() -> None:
        nonlocal pos, run, fast, slow, signal, spread_m, spread_v
        nonlocal var, gain, loss, vol_m, vol_v, bb_ref, bb_s, bb_q
        logs[:] = mids[:] = [NAN] * size
        pos = -1
        run = 0
        fast = slow = signal = spread_m = spread_v = var = gain = loss = vol_m = vol_v = 0.0
        bb_ref = bb_s = bb_q = 0.0

    def on_quote(  # noqa: C901 - the hot path, kept in one frame on purpose
        ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None:
        nonlocal pos, run, fast, slow, signal, spread_m, spread_v
        nonlocal var, gain, loss, vol_m, vol_v, bb_ref, bb_s, bb_q
        buffer._ts = ts_recv
        buffer._n_mid = n = buffer._n_mid + 1
        mid = (bid_px + ask_px) * 0.5
        spread = ask_px - bid_px
        log_mid = log(mid)
        pos += 1
        if pos == size:
            pos = 0
        logs[pos] = log_mid
        mids[pos] = mid
        prev = mids[pos - 1]  # NaN on the first update
        r = log_mid - logs[pos - 1]
        d = mid - prev
        if n < 3:  # start the EWMAs (cold)
            if n == 1:
                fast = slow = mid
                spread_m = spread
            else:
                var = r * r
                gain = d if d > 0.0 else 0.0
                loss = -d if d < 0.0 else 0.0
                vol_m = sqrt(r * r)
        # EWMAs over mid updates: MACD and the spread's online normalisation.
        fast += a_fast * (mid - fast)
        slow += a_slow * (mid - slow)
        macd = fast - slow
        signal += a_signal * (macd - signal)
        spread_m += a_norm * (spread - spread_m)
        dev = spread - spread_m
        spread_v += a_norm * (dev * dev - spread_v)
        spread_z = dev / sqrt(spread_v) if spread_v > 0.0 else 0.0
        # EWMAs over 1-update returns: volatility, RSI, volatility's online normalisation.
        if n > 1:
            var += a_vol * (r * r - var)
            gain += a_rsi * ((d if d > 0.0 else 0.0) - gain)
            loss += a_rsi * ((-d if d < 0.0 else 0.0) - loss)
            rsi = 100.0 * gain / (gain + loss) if gain + loss > 0.0 else 50.0
            vol = sqrt(var)
            vol_m += a_norm * (vol - vol_m)
            dev = vol - vol_m
            vol_v += a_norm * (dev * dev - vol_v)
            vol_z = dev / sqrt(vol_v) if vol_v > 0.0 else 0.0
        else:
            vol = rsi = vol_z = NAN
        # Bollinger %b from running sums of (mid - bb_ref) over the window.
        d = mid - bb_ref
        bb_s += d
        bb_q += d * d
        if n > window:  # the mid leaving the window
            d = mids[pos - window] - bb_ref
            bb_s -= d
            bb_q -= d * d
        run = run + 1 if mid == prev else 1
        if pos == 0:  # once a turn of the ring: exact sums around mid, no rounding drift
            bb_ref = mid
            bb_s = bb_q = 0.0
            for i in range(1, min(n, window)):
                d = mids[-i] - mid  # pos is 0: the window is the ring's tail
                bb_s += d
                bb_q += d * d
        if n < window:
            pct_b = NAN
        elif run >= window:  # a flat window has zero width, exactly
            pct_b = 0.5
        else:
            mean = bb_s / window
            var_w = bb_q / window - mean * mean
            pct_b = 0.5 + (mid - bb_ref - mean) / (k2 * sqrt(var_w)) if var_w > 0.0 else 0.5
        l1 = (bid_sz - ask_sz) / (bid_sz + ask_sz)
        # book_imbalance is l1 here (on_book overwrites it); a return is NaN until h updates
        # back exist, as the ring starts NaN.
        pack(
            full_bytes, 0,
            mid, spread, (bid_px * ask_sz + ask_px * bid_sz) / (bid_sz + ask_sz) - mid, l1, l1,
            vol, rsi, macd, macd - signal, pct_b, spread_z, vol_z,
            log_mid - logs[pos - h1], log_mid - logs[pos - h2], log_mid - logs[pos - h3],
        )  # fmt: skip
        for i, h in more_returns:
            full_view[i] = log_mid - logs[pos - h]

    return on_quote, reset


__all__ = ["BookColumns", "FeatureBuffer", "FeatureConfig", "QuoteHandler", "depth"]
