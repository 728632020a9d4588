"""The last W feature vectors as one input, for sequence models ([1, W, n]: a 1D-CNN, a small
transformer over the last 60 events).

`WindowedFeatures` wraps any feature stage: after every event once the inner stage is ready it
computes the inner vector and pushes it into a preallocated ring (each vector stored twice, so
that the last W are always one contiguous block). `compute()` copies that block, oldest first,
into one flat preallocated vector of W * n values: the runner reshapes it to [1, W, n]. The
stage is not ready until W vectors were pushed, so no decision sees a partial window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.errors import ConfigError
from simulator.protocols import FeatureStage

FloatArray = npt.NDArray[np.float64]


class WindowedFeatures:
    """`inner`'s last `window` vectors, flat and oldest first (names: the inner names)."""

    __slots__ = (
        "_count", "_ring", "_slot", "_target", "_windows", "compute", "inner", "names",
        "on_book", "on_quote", "on_trade", "vector", "window",
    )  # fmt: skip

    def __init__(self, inner: FeatureStage, window: int) -> None:
        if window < 1:
            raise ConfigError(f"model window must be >= 1; found {window}")
        n = len(inner.names)
        self.inner, self.window, self.names = inner, window, tuple(inner.names)
        self.vector: FloatArray = np.full(window * n, np.nan)
        self._target = self.vector.reshape(window, n)
        self._ring: FloatArray = np.full((2 * window, n), np.nan)
        self._windows = tuple(self._ring[s : s + window] for s in range(window))  # views, once
        self._slot = self._count = 0
        push = self._push
        on_quote, on_trade, on_book = inner.on_quote, inner.on_trade, inner.on_book

        def quote(ts: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> None:
            on_quote(ts, bid_px, bid_sz, ask_px, ask_sz)
            push()

        def trade(ts: int, px: float, sz: float, side: int) -> None:
            on_trade(ts, px, sz, side)
            push()

        def book(ts: int, levels: Any, row: int) -> None:  # noqa: ANN401 - the inner bundle
            on_book(ts, levels, row)
            push()

        self.on_quote, self.on_trade, self.on_book = quote, trade, book
        self.compute: Callable[[], FloatArray] = self._compute

    def _push(self) -> None:
        inner = self.inner
        if not inner.ready:
            return
        values = inner.compute()
        slot, ring = self._slot, self._ring
        ring[slot] = values
        ring[slot + self.window] = values
        self._slot = (slot + 1) % self.window
        self._count += 1

    def _compute(self) -> FloatArray:
        self._target[...] = self._windows[self._slot]  # oldest first
        return self.vector

    @property
    def ready(self) -> bool:
        return self._count >= self.window

    def book_columns(self, batch: Any) -> object:  # noqa: ANN401 - a ColumnBatch
        return self.inner.book_columns(batch)

    def reset(self) -> None:
        self.inner.reset()
        self._ring.fill(np.nan)
        self.vector.fill(np.nan)
        self._slot = self._count = 0

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401
        """What the run reads of the inner stage (kernel, config, counters)."""
        return getattr(self.inner, name)
