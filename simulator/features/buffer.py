"""Incremental features: O(1) work per market event into one preallocated float64 vector.

`FeatureBuffer` implements the feature stage of the pipeline. The features, when each one
updates and what it is before data exists are listed in `simulator.features.config`; the
vectorised twin in `batch` computes the same values over a whole session, and tests prove
the two equal. The buffer never allocates per event beyond the floats CPython boxes anyway:
rings are plain-float lists, the output is written into preallocated float64 arrays through
memoryviews and `struct.pack_into`.

Float64 end to end: decisions (rules, thresholds, policies) see exactly the numbers a user's
own float64 code computes (with sizes 80/20, l1_imbalance is 0.6, not float32's
0.6000000238). A model runner casts the vector to its model's input dtype itself.

Inputs must obey the data contract (finite positive prices and level-0 sizes, which
`sources.schema` checks at load time), so no division here can meet a zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from simulator.features import native
from simulator.features.config import (
    LIGHT_FEATURES,
    MID_FEATURES,
    SOURCE_FLOW,
    SOURCE_SINCE,
    TRADE_FEATURES,
    FeatureConfig,
    Smoothing,
    vector_sources,
    warmup,
)
from simulator.features.history import PACKED_RETURNS, QuoteHandler, history_on_quote
from simulator.sources.recorded import EventBatch
from simulator.types import book_levels

if TYPE_CHECKING:
    from simulator.features._native import FeatureState

NAN: Final = float("nan")
_BOOK_IMBALANCE: Final = MID_FEATURES.index("book_imbalance")
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


class FeatureBuffer:
    """Incremental features of one instrument (each feature is defined in `config`).

    `on_quote`/`on_trade`/`on_book` update the state, `compute()` writes `vector` (the same
    array for the buffer's lifetime, in `names` order) and returns it. Two modes, picked once:
    a selection of only top-of-book and trade features keeps no history and computes its few
    values on demand; any other selection keeps every running statistic and writes what a mid
    update changes eagerly. `on_quote` and `compute` are per-instance functions picked for
    the mode (in history mode, a closure holding the running state): see `history` for why.
    """

    __slots__ = (
        "_ask", "_ask_sz", "_bid", "_bid_sz", "_depth_ask", "_depth_bid", "_flow_a", "_flow_at",
        "_flow_s", "_flow_v", "_full", "_full_head", "_full_view", "_gather", "_getters",
        "_history", "_last_trade_ts", "_n_mid", "_n_trades", "_native", "_need", "_out",
        "_out_head", "_reset_history", "_since_at", "_ts", "compute", "config", "names", "on_book",
        "on_quote", "on_trade", "vector",
    )  # fmt: skip

    on_quote: QuoteHandler
    """A quote: (ts_recv, bid_px, bid_sz, ask_px, ask_sz) -> None."""
    on_book: Callable[[int, BookColumns, int], None]
    """A book event: (ts_recv, the batch's BookColumns, row) -> None."""
    on_trade: Callable[[int, float, float, int], None]
    """A trade: (ts_recv, px, sz, side) -> None; `px` is not used (the features are about
    flow and time)."""
    compute: Callable[[], FloatArray]
    """Write the current values into `vector` (in place) and return it."""

    def __init__(self, config: FeatureConfig | None = None, *, kernel: str | None = None) -> None:
        self.config = FeatureConfig() if config is None else config
        self.names: tuple[str, ...] = self.config.names
        self.vector: FloatArray = np.full(len(self.names), NAN, dtype=np.float64)
        self._out = cast("memoryview[float]", self.vector.data)
        self._need = warmup(self.config)
        self._flow_a = Smoothing.of(self.config).flow
        self._history = any(name not in LIGHT_FEATURES for name in self.names)
        self._lay_out()
        self._reset_history: Callable[[], None] = _nothing
        self._getters: tuple[tuple[int, Callable[[], float]], ...] = ()
        self._native: FeatureState | None = None
        self.on_book, self.on_trade = self._book, self._trade
        if native.choose(kernel) == "native":
            self._native = state = native.build(self.config, self.vector, light=not self._history)
            self.on_quote, self.on_book = state.on_quote, state.on_book
            self.on_trade, self.compute = state.on_trade, state.compute
        elif self._history:
            self.on_quote, self._reset_history = history_on_quote(self, self._full)
            self.compute = _history_compute(self)
        else:
            self._getters = tuple(
                (j, getattr(self, f"_get_{name}")) for j, name in enumerate(self.names)
            )
            self.on_quote = self._light_quote
            self.compute = _light_compute(self)
        self.reset()

    def _lay_out(self) -> None:
        """Where history mode keeps values: `_full` holds the mid features and the returns in
        `all_names` order (plus padding: the struct call always packs PACKED_RETURNS returns);
        compute() copies them over (one memcpy when `names` starts with all of them, in order)
        and writes the trade features straight to their place in the vector."""
        mid_names = self.config.all_names[: -len(TRADE_FEATURES)]
        sources = vector_sources(self.config)
        size = len(MID_FEATURES) + max(len(self.config.horizons), PACKED_RETURNS)
        self._full = np.full(size, NAN, dtype=np.float64)
        self._full_view = cast("memoryview[float]", self._full.data)
        head = 8 * len(mid_names)  # float64 bytes; the views are sliced once, here
        self._out_head = self.vector.data.cast("B")[:head]
        self._full_head = self._full.data.cast("B")[:head]
        self._gather: tuple[tuple[int, int], ...] | None = None
        if self.names[: len(mid_names)] != mid_names:
            self._gather = tuple((j, i) for j, i in enumerate(sources) if i >= 0)
        at = {source: j for j, source in enumerate(sources)}
        self._flow_at = at.get(SOURCE_FLOW, -1)
        self._since_at = at.get(SOURCE_SINCE, -1)

    def reset(self) -> None:
        """Forget everything (a new session): every value back to NaN, every window empty."""
        self._ts = self._last_trade_ts = 0
        self._bid = self._bid_sz = self._ask = self._ask_sz = NAN
        self._depth_bid = self._depth_ask = NAN
        self._n_mid = self._n_trades = 0
        self._flow_s = self._flow_v = 0.0
        self._full.fill(NAN)
        self.vector.fill(NAN)
        self._reset_history()
        if self._native is not None:
            self._native.reset()

    @property
    def kernel(self) -> str:
        """Which implementation runs: "native" (the compiled twin) or "python"."""
        return "python" if self._native is None else "native"

    @property
    def ts_recv(self) -> int:
        """Receive time of the latest event seen."""
        return self._ts if self._native is None else self._native.ts_recv

    @property
    def n_mid_updates(self) -> int:
        """Quote and book events seen since the last reset."""
        return self._n_mid if self._native is None else self._native.n_mid_updates

    @property
    def n_trades(self) -> int:
        """Trades seen since the last reset."""
        return self._n_trades if self._native is None else self._native.n_trades

    @property
    def ready(self) -> bool:
        """True once every selected feature has seen its warm-up (then nothing is NaN)."""
        return self.n_mid_updates >= self._need[0] and self.n_trades >= self._need[1]

    def book_columns(self, batch: EventBatch) -> BookColumns:
        """The per-batch bundle `on_book` takes (the engine builds it once per book batch)."""
        return BookColumns.from_batch(batch, self.config.levels)

    def _book(self, ts_recv: int, levels: BookColumns, row: int) -> None:
        """on_book in Python: level 0 is the quote; book_imbalance sums the levels."""
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

    def _trade(self, ts_recv: int, px: float, sz: float, side: int) -> None:
        """on_trade in Python."""
        self._ts = ts_recv
        self._last_trade_ts = ts_recv
        self._n_trades += 1
        signed = side * sz
        if self._n_trades > 1:
            a = self._flow_a
            self._flow_s += a * (signed - self._flow_s)
            self._flow_v += a * (sz - self._flow_v)
        else:
            self._flow_s = signed
            self._flow_v = sz

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
        return self._flow_s / self._flow_v if self._n_trades else NAN

    def _get_time_since_trade(self) -> float:
        return (self._ts - self._last_trade_ts) / 1e9 if self._n_trades else NAN


def _nothing() -> None:
    pass


def _history_compute(buffer: FeatureBuffer) -> Callable[[], FloatArray]:
    """compute() with history: the mid features were written by on_quote; copy them over
    (one memcpy when `names` starts with all of them in order), add the trade features."""
    out, vector, gather = buffer._out, buffer.vector, buffer._gather
    out_head, full_head, full = buffer._out_head, buffer._full_head, buffer._full_view
    flow_at, since_at = buffer._flow_at, buffer._since_at

    def compute() -> FloatArray:
        if buffer._n_trades:
            if flow_at >= 0:
                out[flow_at] = buffer._flow_s / buffer._flow_v
            if since_at >= 0:
                out[since_at] = (buffer._ts - buffer._last_trade_ts) / 1e9
        if gather is None:
            out_head[:] = full_head
        else:
            for j, i in gather:
                out[j] = full[i]
        return vector

    return compute


def _light_compute(buffer: FeatureBuffer) -> Callable[[], FloatArray]:
    """compute() without history: call the getters (one of them without a loop: that is
    the rule strategy's whole feature stage, so every bytecode counts)."""
    out, vector, getters = buffer._out, buffer.vector, buffer._getters
    if len(getters) == 1:
        ((j, get),) = getters

        def compute_one() -> FloatArray:
            out[j] = get()
            return vector

        return compute_one

    def compute() -> FloatArray:
        for i, getter in getters:
            out[i] = getter()
        return vector

    return compute


__all__ = ["BookColumns", "FeatureBuffer", "FeatureConfig", "depth"]
