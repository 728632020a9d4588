"""The history mode's hot path: `FeatureBuffer.on_quote` when any selected feature needs
the past (returns, volatility, RSI, MACD, Bollinger, online normalisation).

It is a closure rather than a method: a cell read or write costs about half an attribute
access, and this runs once per market event (the same code on slots was ~25% slower). See
`config` for what each feature is.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from math import log, sqrt
from typing import TYPE_CHECKING, Final, Protocol, cast

import numpy as np
import numpy.typing as npt

from simulator.features.config import MID_FEATURES, Smoothing

if TYPE_CHECKING:
    from simulator.features.buffer import FeatureBuffer

NAN: Final = float("nan")
PACKED_RETURNS: Final = 3
"""Returns written by the one struct call per mid update (the rest, if any, one by one)."""


class QuoteHandler(Protocol):
    def __call__(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None: ...


def history_on_quote(  # noqa: C901 - see on_quote
    buffer: FeatureBuffer, values: npt.NDArray[np.float64]
) -> tuple[QuoteHandler, Callable[[], None]]:
    """The history mode's (on_quote, reset): on_quote updates every running statistic, then
    packs the twelve MID_FEATURES and the first returns into `values` in one struct call.

    One long frame on purpose: a call costs as much as a dozen lines of arithmetic. EWMAs
    start at their first input (mid EWMAs on the 1st mid update, return EWMAs on the 2nd)
    by being set so that the steady update that follows yields exactly that input.
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
    h1, h2, h3 = (*config.horizons, *(config.horizons[0],) * PACKED_RETURNS)[:PACKED_RETURNS]
    more_returns = tuple(
        (len(MID_FEATURES) + k, h) for k, h in enumerate(config.horizons) if k >= PACKED_RETURNS
    )
    pack = struct.Struct(f"={len(MID_FEATURES) + PACKED_RETURNS}d").pack_into
    full_view, full_bytes = cast("memoryview[float]", values.data), values.data.cast("B")
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


__all__ = ["PACKED_RETURNS", "QuoteHandler", "history_on_quote"]
