"""Queue-position models on hand-computed sequences (the rules of the module docstrings)."""

from __future__ import annotations

import math

import pytest

from simulator.errors import ConfigError
from simulator.execution.l3 import CANCEL, DELETE, EXECUTE, NEW, L3Place
from simulator.execution.queue import (
    ProbQueue,
    QueuePos,
    RiskAverseQueue,
    build_queue_model,
    executable,
    passed,
)

LOT = 1.0


def test_risk_averse_trades_eat_the_queue_and_equal_size_leaves_us_at_the_front():
    model, pos = RiskAverseQueue(), QueuePos(30.0)  # arrive behind 30
    model.on_trade(pos, 10.0)
    assert pos.ahead == 20.0
    assert executable(pos, LOT) == 0.0
    model.on_trade(pos, 20.0)  # equal to what is ahead: front of the queue, not filled
    assert pos.ahead == 0.0
    assert executable(pos, LOT) == 0.0
    model.on_trade(pos, 1.0)  # the next trade of any size at our price fills us
    assert executable(pos, LOT) == 1.0


def test_risk_averse_cancels_are_behind_us_unless_the_level_shrinks_below_ahead():
    model, pos = RiskAverseQueue(), QueuePos(30.0)
    model.on_depth(pos, 25.0)  # 5 cancelled: taken as behind us
    assert pos.ahead == 25.0  # min(30, 25): the level is now smaller than what was ahead
    model.on_depth(pos, 40.0)  # an increase never pushes us back
    assert pos.ahead == 25.0
    model.on_depth(pos, 0.0)  # the level is deleted: we are at the front
    assert pos.ahead == 0.0
    model.on_depth(pos, 50.0)  # and stay there when it comes back
    assert pos.ahead == 0.0


def test_executable_rounds_like_the_reference():
    pos = QueuePos(-0.5)  # Rust rounds -0.5 to -1 (filled), but floor(0.5) = 0 lots execute
    assert executable(pos, LOT) == 0.0
    pos.ahead = -2.7
    assert executable(pos, LOT) == 2.0
    pos.ahead = -0.4
    assert executable(pos, LOT) == 0.0


def test_passed_the_front_rounds_half_a_lot_away_from_zero():
    # without partial fills the whole order fills once passed (hftbacktest 2.4.4, measured)
    assert passed(QueuePos(-0.5), LOT)  # floor(0.5) = 0 lots executable, filled all the same
    assert not passed(QueuePos(-0.4), LOT)
    assert not passed(QueuePos(0.0), LOT)
    assert passed(QueuePos(-1e-9), 0.0)  # no lot size: anything past the front
    assert not passed(QueuePos(0.0), 0.0)


def test_prob_power_advances_on_cancels_by_the_chance_they_were_in_front():
    model = ProbQueue("prob_power", power=2.0)
    pos = QueuePos(10.0)
    pos.level_qty = 30.0  # 10 in front of us, 20 behind
    model.on_depth(pos, 24.0)  # 6 cancelled
    p = 20.0**2 / (20.0**2 + 10.0**2)  # chance the cancel was behind us = 0.8
    assert pos.ahead == pytest.approx(10.0 - (1.0 - p) * 6.0)  # 8.8
    assert pos.level_qty == 24.0


def test_prob_models_discount_trades_already_counted():
    model = ProbQueue("prob_log")
    pos = QueuePos(10.0)
    pos.level_qty = 30.0
    model.on_trade(pos, 4.0)  # ahead 6, and the level will show the 4 gone
    assert pos.ahead == 6.0
    model.on_depth(pos, 26.0)  # the decrease is exactly the trade: no extra advance
    assert pos.ahead == 6.0
    assert pos.traded == 0.0
    model.on_depth(pos, 20.0)  # now 6 cancelled; front 6, back 20
    p = math.log1p(20.0) / (math.log1p(20.0) + math.log1p(6.0))
    assert pos.ahead == pytest.approx(6.0 - (1.0 - p) * 6.0)


def test_prob_model_cancels_beyond_the_back_eat_into_the_front():
    model = ProbQueue("prob_power", power=1.0)
    pos = QueuePos(10.0)
    pos.level_qty = 12.0  # front 10, back 2
    model.on_depth(pos, 2.0)  # 10 cancelled: more than could have been behind us
    p = 2.0 / 12.0
    expected = 10.0 - (1.0 - p) * 10.0 + min(2.0 - p * 10.0, 0.0)
    assert pos.ahead == pytest.approx(min(expected, 2.0))


def test_prob_model_is_deterministic():
    def run() -> list[float]:
        model, pos = ProbQueue("prob_power", power=3.0), QueuePos(50.0)
        pos.level_qty = 120.0
        seen = []
        for qty, trade in ((110.0, 0.0), (100.0, 5.0), (130.0, 0.0), (60.0, 20.0), (10.0, 0.0)):
            if trade:
                model.on_trade(pos, trade)
            model.on_depth(pos, qty)
            seen.append(pos.ahead)
        return seen

    assert run() == run()


def test_unknown_queue_model_and_bad_power_are_named():
    with pytest.raises(ConfigError, match=r"venue\.queue 'fifo' unknown"):
        build_queue_model("fifo")
    with pytest.raises(ConfigError, match=r"venue\.queue_power"):
        build_queue_model("prob_power", power=-1.0)
    assert build_queue_model("none") is None
    assert isinstance(build_queue_model("risk_averse"), RiskAverseQueue)


def test_l3_fifo_orders_behind_us_do_not_count_and_their_execution_fills_us():
    place = L3Place(side=+1, price=100.0, displayed=300.0)  # 300 visible in front
    assert place.on_order_event(NEW, 7, 50.0, 100.0, +1) == 0.0  # id 7 queues behind us
    assert place.on_order_event(CANCEL, 7, 20.0, 100.0, +1) == 0.0  # behind: no change
    assert place.ahead == 300.0
    assert place.on_order_event(DELETE, 1, 100.0, 100.0, +1) == 0.0  # an order in front leaves
    assert place.ahead == 200.0
    assert place.on_order_event(EXECUTE, 2, 200.0, 100.0, +1) == 0.0  # front executed
    assert place.ahead == 0.0
    assert place.on_order_event(EXECUTE, 7, 30.0, 100.0, +1) == 30.0  # behind us: we went first


def test_l3_fifo_trade_through_and_crossing_orders_fill_us():
    place = L3Place(side=-1, price=101.0, displayed=80.0)  # a sell at 101
    assert place.on_order_event(EXECUTE, 3, 40.0, 102.0, -1) == 40.0  # sold through 101
    assert place.on_order_event(NEW, 9, 15.0, 101.0, +1) == 15.0  # a buy at 101 crosses us
    assert place.on_order_event(NEW, 9, 15.0, 100.0, +1) == 0.0  # below us: rests
    assert place.on_order_event(EXECUTE, 4, 5.0, 100.0, -1) == 0.0  # better sells go first


def test_prob_models_follow_ieee_where_the_front_went_negative():
    # after trades the front can be negative: the reference's log or fractional power is NaN,
    # its estimate NaN, and NaN.min(new) = new (Python's math would raise instead)
    for model in (ProbQueue("prob_log"), ProbQueue("prob_power", power=0.5)):
        pos = QueuePos(5.0)
        pos.level_qty = 20.0
        model.on_trade(pos, 12.0)  # front -7 (and 12 counted as traded)
        model.on_depth(pos, 3.0)  # 5 more left than the trades explain
        assert pos.ahead == 3.0
    power = ProbQueue("prob_power", power=2.0)  # an integer power of a negative front is real
    assert power.probability(-2.0, 6.0) == pytest.approx(36.0 / 40.0)
