"""The example's own feature: an EWMA of the top-of-book imbalance (a smoothed obi)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl


class ObiEwma:
    """obi = (bid_sz - ask_sz) / (bid_sz + ask_sz), smoothed with a half-life in mid updates.

    Incremental: O(1) per quote, two floats of state. `batch` is its vectorised twin (polars
    `ewm_mean(adjust=False)`, the same recursion); the tests check the two agree."""

    names = ("obi_ewma",)

    def __init__(self, halflife: float = 20.0) -> None:
        if not halflife > 0:
            raise ValueError(f"halflife must be > 0; found {halflife}")
        self.alpha = 1.0 - math.exp(-math.log(2.0) / halflife)
        self.warmup = math.ceil(halflife)  # mid updates before the average means something
        self.value = math.nan

    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None:
        obi = (bid_sz - ask_sz) / (bid_sz + ask_sz)
        value = self.value
        self.value = obi if value != value else value + self.alpha * (obi - value)  # NaN: first

    def write(self, out: np.ndarray, at: int) -> None:
        out[at] = self.value

    def reset(self) -> None:
        self.value = math.nan

    def batch(self, events: pl.DataFrame) -> np.ndarray:
        """Row i = the value after event i of a `session_events` table (trades carry it)."""
        is_mid = events["kind"] != 1
        bid, ask = events["bid_sz"].filter(is_mid), events["ask_sz"].filter(is_mid)
        smoothed = ((bid - ask) / (bid + ask)).ewm_mean(alpha=self.alpha, adjust=False)
        out = np.full(events.height, np.nan)
        out[is_mid.to_numpy()] = smoothed.to_numpy()
        carried = pl.Series(out).fill_nan(None).forward_fill().fill_null(np.nan)
        return carried.to_numpy().reshape(-1, 1)
