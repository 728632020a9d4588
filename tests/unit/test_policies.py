"""Decision stage: hold band, confidence curve, lot rounding, and the long-only OBI rule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from simulator.errors import ConfigError
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.models.rule import SIGNAL_OUTPUT, RuleRunner
from simulator.policies import (
    LongOnlyRuleSizer,
    ObiRulePolicy,
    ThresholdPolicy,
    ThresholdSizer,
)
from simulator.types import Side


@pytest.fixture
def sizer() -> ThresholdSizer:
    return ThresholdSizer(threshold=0.1, max_position=10.0, lot=1.0)


@pytest.mark.parametrize("p", [0.5, 0.55, 0.45, 0.6, 0.4])  # 0.6 - 0.5 == 0.0999...8 in floats
def test_threshold_sizer_holds_inside_the_band(sizer, p):
    assert sizer.target(p, 3.0) == 3.0
    assert sizer.target(p, -2.0) == -2.0


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (1.0, 10.0),  # c = 1
        (0.9, 7.0),  # c = (0.4 - 0.1) / 0.4 = 0.75 -> 7.5 -> rounded down to 7
        (0.8, 5.0),  # c = 0.5 -> 5
        (0.7, 2.0),  # c = 0.25 -> 2.5 -> 2
        (0.3, -2.0),  # symmetric
        (0.0, -10.0),
        (0.62, 0.0),  # c = 0.05 -> 0.5 -> 0 lots: a flat target, not a hold
        (0.38, 0.0),
    ],
)
def test_threshold_sizer_size_grows_with_confidence(sizer, p, expected):
    assert sizer.target(p, 4.0) == pytest.approx(expected)


def test_threshold_sizer_exponent_shapes_the_curve():
    sizer = ThresholdSizer(threshold=0.1, max_position=10.0, lot=1.0, exponent=2.0)
    assert sizer.target(0.9, 0.0) == 5.0  # 10 x 0.75**2 = 5.625 -> 5


def test_threshold_sizer_rounds_down_to_lots_despite_binary_rounding():
    sizer = ThresholdSizer(threshold=0.0, max_position=0.3, lot=0.1)
    assert sizer.target(1.0, 0.0) == pytest.approx(0.3)  # 0.3 / 0.1 = 2.9999999999999996
    assert sizer.target(0.9, 0.0) == pytest.approx(0.2)  # 0.3 x 0.8 = 0.24 -> 2 lots


def test_threshold_sizer_clamps_out_of_range_p_and_holds_on_nan(sizer):
    assert sizer.target(1.5, 0.0) == 10.0
    assert sizer.target(-0.5, 0.0) == -10.0
    assert sizer.target(math.nan, 2.0) == 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.5}, r"'threshold' must be in \[0, 0.5\); found 0.5"),
        ({"threshold": -0.1}, r"'threshold'"),
        ({"max_position": math.nan}, r"'max_position' must be > 0; found nan"),
        ({"lot": 0.0}, r"'lot' must be > 0; found 0.0"),
        ({"exponent": -1.0}, r"'exponent'"),
        ({"lot": 20.0}, r"'lot' \(20.0\) is larger than 'max_position' \(10.0\)"),
    ],
)
def test_threshold_sizer_rejects_bad_config_naming_the_field(kwargs, message):
    config = {"threshold": 0.1, "max_position": 10.0, "lot": 1.0} | kwargs
    with pytest.raises(ConfigError, match=rf"^ThresholdSizer: {message}"):
        ThresholdSizer(**config)


def test_rule_sizer_buys_when_flat_and_sells_to_flat_when_long():
    rule = LongOnlyRuleSizer(threshold=0.5, size=2.0)
    assert rule.target(0.9, 0.0) == 2.0  # obi 0.8 > 0.5, flat -> buy
    assert rule.target(0.9, 2.0) == 2.0  # already long: hold
    assert rule.target(0.1, 2.0) == 0.0  # obi -0.8 < -0.5, long -> flat
    assert rule.target(0.1, 0.0) == 0.0  # flat stays flat (long only)
    assert rule.target(0.6, 2.0) == 2.0  # obi 0.2: hold
    assert rule.target(0.6, 0.0) == 0.0


def test_rule_sizer_threshold_is_strict():
    rule = LongOnlyRuleSizer(threshold=0.5, size=1.0)
    assert rule.target(0.75, 0.0) == 0.0  # obi == 0.5 exactly: not above
    assert rule.target(0.25, 1.0) == 1.0  # obi == -0.5 exactly: not below


@pytest.mark.parametrize(
    ("bid_sz", "ask_sz", "position", "expected"),
    [
        (80.0, 20.0, 0.0, 0.0),  # obi 0.6 exactly (float64): not above 0.6, no buy
        (81.0, 20.0, 0.0, 1.0),  # obi 0.6040 > 0.6: buy
        (20.0, 80.0, 1.0, 1.0),  # obi -0.6 exactly: not below, hold the long
        (20.0, 81.0, 1.0, 0.0),  # obi -0.6040 < -0.6: sell to flat
        (400.0, 100.0, 0.0, 0.0),  # 0.6 again
        (0.3, 0.075, 0.0, 0.0),  # 0.6 from fractional sizes, as float64 computes it
    ],
)
def test_rule_sizer_on_the_rule_runner_decides_as_float64_obi_does(
    bid_sz, ask_sz, position, expected
):
    features = np.array([(bid_sz - ask_sz) / (bid_sz + ask_sz)])  # the float64 feature
    p = RuleRunner(0).predict(features, 0)[0]
    obi = features[0]
    rule = LongOnlyRuleSizer(threshold=0.6, size=1.0)
    assert rule.target(p, position) == expected
    wanted = 1.0 if obi > 0.6 and position == 0.0 else 0.0 if obi < -0.6 else position
    assert expected == wanted


def test_rule_sizer_treats_float_residue_as_flat():
    rule = LongOnlyRuleSizer(threshold=0.5, size=1.0)
    assert rule.target(0.9, 5e-17) == 1.0
    assert rule.target(0.1, 5e-17) == 5e-17  # not long: nothing to sell


def test_rule_sizer_rejects_bad_config():
    with pytest.raises(ConfigError, match=r"^LongOnlyRuleSizer: 'size' must be > 0; found 0.0"):
        LongOnlyRuleSizer(threshold=0.5, size=0.0)
    with pytest.raises(ConfigError, match=r"'threshold' must be in \[0, 1\)"):
        LongOnlyRuleSizer(threshold=1.0, size=1.0)


# --- the built-in policies: outputs + view -> intents ------------------------------------------


class _View:
    """A hand-written StrategyView: only what the target policies read."""

    def __init__(self, position: float, in_flight: bool) -> None:
        self.position = position
        self.order_in_flight = in_flight


def View(position: float = 0.0, in_flight: bool = False) -> Any:
    return _View(position, in_flight)


def outputs(p: float) -> np.ndarray:
    return np.array([p], dtype=np.float64)


def test_threshold_policy_sends_the_difference_to_its_target_as_one_market_order():
    policy = ThresholdPolicy(threshold=0.1, max_position=10.0, lot=1.0)
    assert policy.decide(outputs(0.9), View(position=3.0)) == (MarketOrder(Side.BUY, 4.0),)
    assert policy.target == 7.0
    assert policy.decide(outputs(0.1), View(position=3.0)) == (MarketOrder(Side.SELL, 10.0),)
    assert policy.target == -7.0


def test_threshold_policy_holds_with_the_shared_empty_tuple():
    policy = ThresholdPolicy(threshold=0.1, max_position=10.0, lot=1.0)
    assert policy.decide(outputs(0.55), View(position=3.0)) is NO_INTENTS
    assert policy.target == 3.0
    # a target (here 4: one lot of 4) less than half a lot away is not worth an order
    assert ThresholdPolicy(0.1, 10.0, 4.0).decide(outputs(0.9), View(position=5.0)) is NO_INTENTS


def test_target_policies_wait_while_an_order_is_in_flight():
    policy = ThresholdPolicy(threshold=0.1, max_position=10.0, lot=1.0)
    assert policy.decide(outputs(1.0), View(position=0.0, in_flight=True)) is NO_INTENTS
    assert policy.target == 10.0  # the wish is recorded, the order waits


def test_obi_rule_policy_buys_flat_and_sells_long_to_flat():
    policy = ObiRulePolicy(threshold=0.6, size=2.0, lot=1.0)
    assert policy.decide(outputs(0.9), View(position=0.0)) == (MarketOrder(Side.BUY, 2.0),)
    assert policy.decide(outputs(0.9), View(position=2.0)) is NO_INTENTS
    assert policy.decide(outputs(0.1), View(position=2.0)) == (MarketOrder(Side.SELL, 2.0),)
    policy.reset()
    assert math.isnan(policy.target)


@pytest.mark.parametrize(
    ("bid_sz", "ask_sz", "position"),
    [
        (80.0, 20.0, 0.0),  # obi 0.6 exactly: no buy
        (0.8, 0.2, 0.0),  # obi 0.6000000000000001 in float64: a buy (p cannot tell it)
        (81.0, 20.0, 0.0),
        (20.0, 80.0, 1.0),  # -0.6 exactly: hold
        (0.2, 0.8, 1.0),  # -0.6000000000000001: sell
        (0.3, 0.075, 0.0),
    ],
)
def test_obi_rule_policy_on_the_rule_signal_decides_exactly_as_float64_code(
    bid_sz, ask_sz, position
):
    obi = (bid_sz - ask_sz) / (bid_sz + ask_sz)
    features = np.array([obi])  # the feature stage's float64 vector
    policy = ObiRulePolicy(threshold=0.6, size=1.0, lot=1.0, obi_output=SIGNAL_OUTPUT)
    policy.decide(RuleRunner(0).predict(features, 0), View(position=position))
    wanted = 1.0 if obi > 0.6 and position == 0.0 else 0.0 if obi < -0.6 else position
    assert policy.target == wanted


def test_obi_rule_policy_names_a_missing_signal_output():
    policy = ObiRulePolicy(threshold=0.6, size=1.0, lot=1.0, obi_output=SIGNAL_OUTPUT)
    with pytest.raises(ConfigError, match=r"reads output 1 but the model gives 1 output"):
        policy.decide(outputs(0.9), View())


def test_a_policy_reads_a_new_output_vector_when_the_runner_changes():
    policy = ObiRulePolicy(threshold=0.6, size=1.0, lot=1.0)
    primary, fallback = outputs(0.9), outputs(0.5)  # e.g. a breaker switching runners
    assert policy.decide(primary, View()) == (MarketOrder(Side.BUY, 1.0),)
    assert policy.decide(fallback, View()) is NO_INTENTS
    fallback[0] = 0.95  # the runner rewrites its vector in place
    assert policy.decide(fallback, View()) == (MarketOrder(Side.BUY, 1.0),)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_inlined_policy_rules_equal_their_sizers_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    ps = [*rng.random(2_000), 0.5, 0.8, 0.2, 0.85, 0.15, 0.0, 1.0, 1.5, -0.5, math.nan]
    positions = [0.0, 1.0, -3.0, 1e-12, 7.0]
    threshold = ThresholdPolicy(threshold=0.3, max_position=10.0, lot=0.5, exponent=1.7)
    rule = ObiRulePolicy(threshold=0.6, size=2.0, lot=1.0)
    obi = ObiRulePolicy(threshold=0.6, size=2.0, lot=1.0, obi_output=0)
    for p in ps:
        for position in positions:
            for policy, sizer_target in (
                (threshold, threshold.sizer.target),
                (rule, rule.sizer.target),
                (obi, obi.sizer.target_obi),
            ):
                policy.decide(outputs(p), View(position=position))
                assert policy.target == sizer_target(p, position), (type(policy), p, position)
