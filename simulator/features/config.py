"""The features, their parameters and warm-ups: one definition for the incremental buffer
and its vectorised twin, so both use the very same numbers (down to the bits of each alpha).

A *mid update* is a quote or a book event (a book's level 0 is its quote), whether or not the
mid moved; windows, horizons and half-lives count mid updates unless they are about trades.
A feature is NaN until it is defined (in brackets: from which mid update on); after that,
every event leaves one deterministic value.

Updated on quote and book events:
  mid               (bid + ask) / 2                                                    [1st]
  spread            ask - bid                                                          [1st]
  microprice        (bid ask_sz + ask bid_sz) / (bid_sz + ask_sz) - mid                [1st]
  l1_imbalance      (bid_sz - ask_sz) / (bid_sz + ask_sz)                              [1st]
  book_imbalance    the same over the sizes summed across `levels` book levels (an empty
                    level counts 0); equal to l1_imbalance on a quote or a 1-level book [1st]
  vol_ewma          sqrt of the EWMA (vol_halflife) of r*r, r = log(mid / previous mid) [2nd]
  rsi               100 g / (g + l), g and l EWMAs (alpha 1/rsi_period) of the mid's rises
                    and falls; 50 while g + l == 0                                     [2nd]
  macd              EMA(macd_fast) - EMA(macd_slow) of mid, alpha = 2 / (span + 1)     [1st]
  macd_hist         macd - EMA(macd_signal) of macd                                    [1st]
  bollinger_b       %b = 0.5 + (mid - mean) / (2 k sd): mean and population sd of the last
                    `bollinger_window` mids; 0.5 when they are all equal       [window-th]
  spread_z, vol_z   online z-score (x - m) / sqrt(v): m the EWMA (norm_halflife) of x, v the
                    EWMA of (x - m)^2, m taken after its update; 0 while v == 0  [1st, 2nd]
  ret_<h>           log(mid) - log(mid h updates earlier), one per horizon       [(h+1)-th]
Updated on trades:
  trade_flow        EWMA (trade_flow_halflife, in trades) of side*sz over the EWMA of sz,
                    in [-1, 1]                                                 [1st trade]
Updated on every event:
  time_since_trade  seconds from the last trade's ts_recv to the latest event's [1st trade]

Every EWMA runs m += alpha * (x - m) from m = its first input: polars `ewm_mean(adjust=False)`
is exactly this recursion. `warmup()` says when `FeatureBuffer.ready` turns True.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Final, NamedTuple

from simulator.errors import ConfigError

MID_FEATURES: Final = (
    "mid",
    "spread",
    "microprice",
    "l1_imbalance",
    "book_imbalance",
    "vol_ewma",
    "rsi",
    "macd",
    "macd_hist",
    "bollinger_b",
    "spread_z",
    "vol_z",
)
"""Features that change only on a mid update (quote or book event), in vector order."""
TRADE_FEATURES: Final = ("trade_flow", "time_since_trade")
"""Trade features, last in a full vector (after the mid features and the `ret_<h>` returns)."""
LIGHT_FEATURES: Final = frozenset(MID_FEATURES[:5] + TRADE_FEATURES)
"""Features that need no history: a selection of only these keeps the hot path tiny."""


SOURCE_FLOW: Final = -1
SOURCE_SINCE: Final = -2


def vector_sources(config: FeatureConfig) -> list[int]:
    """Where each entry of the vector comes from: its index among the mid features and
    returns (`all_names` order, the layout both kernels keep them in), or SOURCE_FLOW /
    SOURCE_SINCE for the trade features."""
    mid_names = config.all_names[: -len(TRADE_FEATURES)]
    trade = {"trade_flow": SOURCE_FLOW, "time_since_trade": SOURCE_SINCE}
    return [trade[name] if name in trade else mid_names.index(name) for name in config.names]


def feature_names(horizons: tuple[int, ...]) -> tuple[str, ...]:
    """Every feature, in the order of a full vector: MID_FEATURES, returns, TRADE_FEATURES."""
    return MID_FEATURES + tuple(f"ret_{h}" for h in horizons) + TRADE_FEATURES


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """Parameters of the feature stage. Windows and half-lives count mid updates (quote or
    book events) unless named for trades. `features` selects a subset, in the order the vector
    should hold them; None means all of `all_names`."""

    levels: int = 5
    horizons: tuple[int, ...] = (1, 10, 100)
    vol_halflife: float = 100.0
    trade_flow_halflife: float = 20.0
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bollinger_window: int = 20
    bollinger_k: float = 2.0
    norm_halflife: float = 500.0
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_counts(self)
        _check_positive(self)
        _check_features(self)

    @property
    def all_names(self) -> tuple[str, ...]:
        return feature_names(self.horizons)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the vector's entries, in order."""
        return self.all_names if self.features is None else self.features


def _check_counts(config: FeatureConfig) -> None:
    counts = {
        "levels": (config.levels, 1),
        "rsi_period": (config.rsi_period, 1),
        "macd_fast": (config.macd_fast, 1),
        "macd_signal": (config.macd_signal, 1),
        "bollinger_window": (config.bollinger_window, 2),
    }
    for name, (value, least) in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"features.{name} must be an integer >= {least}; found {value!r}")
    if not isinstance(config.macd_slow, int) or config.macd_slow <= config.macd_fast:
        raise ConfigError(
            f"features.macd_slow must be an integer above macd_fast ({config.macd_fast}); "
            f"found {config.macd_slow!r}"
        )
    horizons = config.horizons
    if (
        not isinstance(horizons, tuple)
        or not horizons
        or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in horizons)
        or len(set(horizons)) != len(horizons)
    ):
        raise ConfigError(
            f"features.horizons must be a non-empty tuple of distinct integers >= 1; "
            f"found {horizons!r}"
        )


def _check_positive(config: FeatureConfig) -> None:
    for name in ("vol_halflife", "trade_flow_halflife", "norm_halflife", "bollinger_k"):
        value = getattr(config, name)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"features.{name} must be a finite number > 0; found {value!r}")


def _check_features(config: FeatureConfig) -> None:
    if config.features is None:
        return
    if not isinstance(config.features, tuple) or not config.features:
        raise ConfigError(
            f"features.features must be a non-empty tuple of names (or None for all); "
            f"found {config.features!r}"
        )
    known = config.all_names
    for name in config.features:
        if name not in known:
            close = get_close_matches(str(name), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown feature '{name}' in features.features{hint}")
    if len(set(config.features)) != len(config.features):
        raise ConfigError(f"features.features names a feature twice: {config.features!r}")


def halflife_alpha(halflife: float) -> float:
    """EWMA weight of the newest input for a half-life (in inputs): 1 - 2**(-1/halflife)."""
    return 1.0 - math.exp(-math.log(2.0) / halflife)


class Smoothing(NamedTuple):
    """The EWMA weights (alpha) of a config, computed in one place for both twins."""

    vol: float
    flow: float
    rsi: float
    fast: float
    slow: float
    signal: float
    norm: float

    @classmethod
    def of(cls, config: FeatureConfig) -> Smoothing:
        return cls(
            vol=halflife_alpha(config.vol_halflife),
            flow=halflife_alpha(config.trade_flow_halflife),
            rsi=1.0 / config.rsi_period,
            fast=2.0 / (config.macd_fast + 1),
            slow=2.0 / (config.macd_slow + 1),
            signal=2.0 / (config.macd_signal + 1),
            norm=halflife_alpha(config.norm_halflife),
        )


def _mid_warmup(name: str, config: FeatureConfig) -> int:
    """Mid updates a feature needs before it counts as warm (0: not a mid feature)."""
    if name.startswith("ret_"):
        return int(name[4:]) + 1
    norm = math.ceil(config.norm_halflife)
    table = {
        "vol_ewma": 1 + math.ceil(config.vol_halflife),
        "rsi": 1 + config.rsi_period,
        "macd": config.macd_slow,
        "macd_hist": config.macd_slow + config.macd_signal - 1,
        "bollinger_b": config.bollinger_window,
        "spread_z": norm,
        "vol_z": 1 + norm,
    }
    return table.get(name, 1 if name in MID_FEATURES else 0)


def warmup(config: FeatureConfig) -> tuple[int, int]:
    """(mid updates, trades) the selected features need before `ready`.

    A window feature needs its full window; an EWMA feature one half-life (RSI: period,
    MACD: slow span, plus the signal span for the histogram) of inputs; trade_flow one
    half-life of trades, time_since_trade one trade. Each is at least the count that makes
    the feature defined, so a ready vector holds no NaN.
    """
    names = config.names
    mid = max((_mid_warmup(name, config) for name in names), default=0)
    trades = 0
    if "trade_flow" in names:
        trades = max(1, math.ceil(config.trade_flow_halflife))
    if "time_since_trade" in names:
        trades = max(trades, 1)
    return mid, trades


FEATURE_NAMES: Final = FeatureConfig().all_names
"""Every feature with the default horizons, in the order of a full vector."""
