"""The threshold policy does not send an order worth less than the instrument's minimum
notional at the price it would take (the venue would refuse it: MIN_NOTIONAL); it counts it.
Equal passes and a NaN price is under, as in the risk check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from simulator.errors import ConfigError
from simulator.instruments import WHOLE_UNITS, Instrument
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.policies import ThresholdPolicy
from simulator.runtime import build_policy
from simulator.settings import PolicySection
from simulator.types import Side

BTC = Instrument("BTCUSDT", 0.01, 0.00001, 5.0)


class _View:
    def __init__(self, position: float, bid: float, ask: float) -> None:
        self.position, self.bid_px, self.ask_px = position, bid, ask
        self.mid, self.order_in_flight = (bid + ask) * 0.5, False


def _policy() -> ThresholdPolicy:
    # p = 1.0: full confidence, target max_position = 0.15 (lots of 0.00001 BTC)
    return ThresholdPolicy(0.1, max_position=0.15, lot=0.00001, min_notional=5.0)


def _decide(policy: ThresholdPolicy, p: float, position: float, bid: float, ask: float) -> Any:
    return policy.decide(np.array([p]), _View(position, bid, ask))  # type: ignore[arg-type]


def test_an_order_under_the_minimum_notional_is_not_sent_and_is_counted():
    policy = _policy()
    # 0.15 - 0.14995 = 5 lots x ask 60,000 = 3 USDT < 5: not sent
    assert _decide(policy, 1.0, 0.14995, 59_999.0, 60_000.0) is NO_INTENTS
    assert policy.n_under_minimum == 1
    assert policy.target == pytest.approx(0.15)  # still what it aims at (recorded)
    # 9 lots x 60,000 = 5.4 USDT: sent
    ((order,),) = [_decide(policy, 1.0, 0.14991, 59_999.0, 60_000.0)]
    assert (order.side, order.qty) == (Side.BUY, pytest.approx(0.00009))
    # a sell is valued at the bid, the price it takes: 0.0001 x 49,999 = 4.9999 < 5
    assert _decide(policy, 1.0, 0.1501, 49_999.0, 50_001.0) is NO_INTENTS
    assert policy.n_under_minimum == 2
    policy.reset()
    assert policy.n_under_minimum == 0


def test_equal_passes_and_a_nan_price_is_under_the_minimum():
    policy = ThresholdPolicy(0.1, max_position=2.0, lot=1.0, min_notional=5.0)
    assert _decide(policy, 1.0, 1.0, 4.0, 5.0) == (MarketOrder(Side.BUY, 1.0),)  # 1 x 5 = 5
    assert _decide(policy, 1.0, 1.0, 4.0, math.nan) is NO_INTENTS
    assert policy.n_under_minimum == 1


def test_without_a_minimum_every_lot_goes():
    policy = ThresholdPolicy(0.1, max_position=0.15, lot=0.00001)
    ((order,),) = [_decide(policy, 1.0, 0.14995, 59_999.0, 60_000.0)]
    assert order.qty == pytest.approx(0.00005)
    assert policy.n_under_minimum == 0


def test_the_built_policy_takes_the_instruments_minimum():
    section = PolicySection(kind="threshold", max_notional=9000.0)
    built = build_policy(section, "onnx", BTC)
    assert isinstance(built, ThresholdPolicy)
    assert _decide(built, 1.0, 0.14995, 59_999.0, 60_000.0) is NO_INTENTS
    shares = build_policy(section, "onnx", WHOLE_UNITS)  # equities: no minimum
    assert isinstance(shares, ThresholdPolicy)
    assert _decide(shares, 1.0, 9.0, 0.5, 0.51) == (MarketOrder(Side.BUY, 1.0),)  # 0.51 < 5
    with pytest.raises(ConfigError, match="min_notional"):
        ThresholdPolicy(0.1, 1.0, 1.0, min_notional=-1.0)
