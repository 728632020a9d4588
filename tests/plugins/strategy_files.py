"""A user's strategy folder, written by the tests: features in plain Python beside a TOML."""

from __future__ import annotations

from pathlib import Path

FEATURES_PY = '''
import numpy as np
import polars as pl


class SpreadBps:
    """The spread in basis points of the mid; its batch twin is exact."""

    names = ("spread_bps",)
    warmup = 1

    def __init__(self, scale: float = 2e4) -> None:
        self.scale = scale
        self.value = float("nan")

    def on_quote(self, ts_recv, bid_px, bid_sz, ask_px, ask_sz):
        self.value = (ask_px - bid_px) / (ask_px + bid_px) * self.scale

    def write(self, out, at):
        out[at] = self.value

    def reset(self):
        self.value = float("nan")

    def batch(self, events):
        bid, ask = events["bid_px"].to_numpy(), events["ask_px"].to_numpy()
        value = (ask - bid) / (ask + bid) * self.scale
        carried = pl.Series(value).fill_nan(None).forward_fill().fill_null(float("nan"))
        return carried.to_numpy().reshape(-1, 1)


class SizeTilt(SpreadBps):
    """Two values from the sizes, with a wrong twin (the checker must catch it)."""

    names = ("tilt", "depth")
    warmup = 3

    def __init__(self) -> None:
        self.tilt = self.depth = float("nan")

    def on_quote(self, ts_recv, bid_px, bid_sz, ask_px, ask_sz):
        self.tilt, self.depth = bid_sz / (bid_sz + ask_sz), bid_sz + ask_sz

    def write(self, out, at):
        out[at] = self.tilt
        out[at + 1] = self.depth

    def reset(self):
        self.tilt = self.depth = float("nan")

    def batch(self, events):
        bid, ask = events["bid_sz"].to_numpy(), events["ask_sz"].to_numpy()
        return np.column_stack([bid / (bid + ask), bid + ask + 1.0])


class NoWrite:
    names = ("x",)
    warmup = 0

    def on_quote(self, ts_recv, bid_px, bid_sz, ask_px, ask_sz):
        pass

    def reset(self):
        pass
'''

RULE = """
[breaker]
enabled = false
[policy]
kind = "obi_rule"
threshold = 0.6
[venue]
depth = "l1"
"""


def write_strategy(
    folder: Path, features: str, *, extra: str = "", code: str = FEATURES_PY
) -> Path:
    """`folder`/strategy.toml with a [features] section `features` and features.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.py").write_text(code)
    path = folder / "strategy.toml"
    path.write_text(f"[features]\n{features}\n{RULE}{extra}")
    return path


POLICY_PY = '''
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.types import Side


class BuyOnce:
    """Buys `size` at market on the first decision, then holds."""

    def __init__(self, size: float = 1.0) -> None:
        self.size = size
        self.done = False

    def decide(self, outputs, view):
        if self.done or view.order_in_flight:
            return NO_INTENTS
        self.done = True
        return (MarketOrder(Side.BUY, self.size),)

    def reset(self):
        self.done = False


class NoDecide:
    def reset(self):
        pass
'''

RISK_PY = """
from enum import IntEnum


class Reason(IntEnum):
    NOT_TODAY = 1


class RejectAll:
    def check(self, order, price, state):
        return Reason.NOT_TODAY


class NoCheck:
    pass
"""


def write_plugin_strategy(folder: Path, toml: str) -> Path:
    """`folder`/strategy.toml (`toml`, over an obi rule) with policy.py and risk.py beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.py").write_text(POLICY_PY)
    (folder / "risk.py").write_text(RISK_PY)
    path = folder / "strategy.toml"
    path.write_text('[features]\nnames = ["l1_imbalance"]\n[breaker]\nenabled = false\n' + toml)
    return path
