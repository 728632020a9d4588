"""Risk stage: every check at its boundary, the latching kill switch, the sliding rate window,
and the chain's first-rejection-wins counting."""

from __future__ import annotations

import math
from enum import IntEnum

import pytest

from simulator.errors import ConfigError
from simulator.risk import (
    USER_REASON_BASE,
    KillSwitch,
    MaxNotional,
    MaxOrderSize,
    MaxPosition,
    ModelHealth,
    OrderRateLimit,
    PriceCollar,
    RiskChain,
    RiskState,
    StaleData,
)
from simulator.types import Nanos, OrderRequest, OrderType, RejectReason, Side

APPROVED = RejectReason.APPROVED


def order(qty=1.0, side=Side.BUY, limit_px=None, order_id=1):
    order_type = OrderType.MARKET if limit_px is None else OrderType.LIMIT
    return OrderRequest(
        order_id=order_id,
        ts_decision=Nanos(0),
        side=side,
        qty=qty,
        order_type=order_type,
        limit_px=limit_px,
    )


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        (5.0, APPROVED),
        (5.000001, RejectReason.MAX_ORDER_SIZE),
        (math.nan, RejectReason.MAX_ORDER_SIZE),
    ],
)
def test_max_order_size_boundary(qty, expected):
    assert MaxOrderSize(5.0).check(order(qty), 100.0, RiskState()) is expected


@pytest.mark.parametrize(
    ("position", "side", "qty", "expected"),
    [
        (8.0, Side.BUY, 2.0, APPROVED),  # lands exactly on the limit
        (8.0, Side.BUY, 2.5, RejectReason.MAX_POSITION),
        (-8.0, Side.SELL, 2.0, APPROVED),
        (-8.0, Side.SELL, 3.0, RejectReason.MAX_POSITION),
        (12.0, Side.SELL, 1.0, APPROVED),  # over the limit but reducing: may unwind
        (12.0, Side.BUY, 1.0, RejectReason.MAX_POSITION),
        (12.0, Side.SELL, 23.0, RejectReason.MAX_POSITION),  # flips to an oversized -11
        (12.0, Side.SELL, 22.0, APPROVED),  # flips to -10: within the limit
    ],
)
def test_max_position_checks_the_position_after_the_order(position, side, qty, expected):
    state = RiskState(position=position)
    assert MaxPosition(10.0).check(order(qty, side), 100.0, state) is expected


def test_max_notional_uses_position_after_times_price():
    check, state = MaxNotional(1000.0), RiskState(position=8.0)
    assert check.check(order(2.0), 100.0, state) is APPROVED  # 10 x 100 = 1000
    assert check.check(order(3.0), 100.0, state) is RejectReason.MAX_NOTIONAL  # 1100
    assert check.check(order(3.0, Side.SELL), 100.0, state) is APPROVED  # 500
    assert check.check(order(1.0), math.nan, state) is RejectReason.MAX_NOTIONAL


def test_price_collar_on_expected_market_fill_price():
    check, state = PriceCollar(50.0), RiskState(mid=100.0)
    assert check.check(order(), 100.5, state) is APPROVED  # exactly 50 bps
    assert check.check(order(), 100.51, state) is RejectReason.PRICE_COLLAR
    assert check.check(order(side=Side.SELL), 99.5, state) is APPROVED
    assert check.check(order(side=Side.SELL), 99.49, state) is RejectReason.PRICE_COLLAR


def test_price_collar_on_limit_price_and_without_mid():
    check = PriceCollar(50.0)
    state = RiskState(mid=100.0)
    assert check.check(order(limit_px=99.5), 100.0, state) is APPROVED
    assert check.check(order(limit_px=99.4), 100.0, state) is RejectReason.PRICE_COLLAR
    assert check.check(order(), 100.0, RiskState()) is RejectReason.PRICE_COLLAR  # NaN mid


def test_order_rate_limit_window_slides_and_counts_only_sent_orders():
    limit, state = OrderRateLimit(max_orders=2, window_ns=1000), RiskState()

    def at(now):
        state.now = now
        return limit.check(order(), 100.0, state)

    assert at(0) is APPROVED
    assert at(0) is APPROVED  # checking alone does not count
    limit.on_sent(0)
    assert at(10) is APPROVED
    limit.on_sent(10)
    assert at(999) is RejectReason.ORDER_RATE  # two sent in (-1, 999]
    assert at(1000) is APPROVED  # the order sent at 0 left the window
    limit.on_sent(1000)
    assert at(1009) is RejectReason.ORDER_RATE  # 10 and 1000 in the window
    assert at(1010) is APPROVED


def test_stale_data_boundary():
    check = StaleData(max_age_ns=1000)
    assert check.check(order(), 1.0, RiskState(now=2000, last_market_ts=1000)) is APPROVED
    stale = RiskState(now=2000, last_market_ts=999)
    assert check.check(order(), 1.0, stale) is RejectReason.STALE_DATA


def test_kill_switch_trips_on_drawdown_at_the_limit_and_latches():
    switch = KillSwitch(max_drawdown=100.0, daily_loss=math.inf)
    state = RiskState(now=5, equity=901.0, peak_equity=1000.0, day_start_equity=1000.0)
    assert switch.check(order(), 1.0, state) is APPROVED  # drawdown 99
    assert not switch.tripped
    state.now, state.equity = 7, 900.0  # drawdown 100: trips
    assert switch.check(order(), 1.0, state) is RejectReason.KILL_SWITCH
    assert (switch.tripped_at, switch.cause) == (7, "max_drawdown")
    state.now, state.equity = 9, 1000.0  # recovered: still latched
    assert switch.check(order(side=Side.SELL), 1.0, state) is RejectReason.KILL_SWITCH
    assert switch.tripped_at == 7


def test_kill_switch_trips_on_daily_loss_via_update():
    switch = KillSwitch(max_drawdown=100.0, daily_loss=50.0)
    state = RiskState(now=3, equity=951.0, peak_equity=1000.0, day_start_equity=1000.0)
    assert switch.update(state) is False
    state.equity = 950.0
    assert switch.update(state) is True
    assert (switch.tripped_at, switch.cause) == (3, "daily_loss")
    assert switch.check(order(), 1.0, state) is RejectReason.KILL_SWITCH


def test_model_health():
    assert ModelHealth().check(order(), 1.0, RiskState()) is APPROVED
    sick = RiskState(model_healthy=False)
    assert ModelHealth().check(order(), 1.0, sick) is RejectReason.MODEL_HEALTH


def test_chain_returns_the_first_rejection_and_counts_per_reason():
    chain = RiskChain([MaxOrderSize(1.0), MaxPosition(0.5), ModelHealth()])
    state = RiskState()
    assert chain.check(order(2.0), 100.0, state) == RejectReason.MAX_ORDER_SIZE
    assert chain.check(order(1.0), 100.0, state) == RejectReason.MAX_POSITION
    assert chain.check(order(0.5), 100.0, state) == APPROVED
    state.model_healthy = False
    assert chain.check(order(0.5), 100.0, state) == RejectReason.MODEL_HEALTH
    assert chain.counts[RejectReason.MAX_ORDER_SIZE] == 1
    assert chain.counts[RejectReason.MAX_POSITION] == 1
    assert chain.counts[RejectReason.MODEL_HEALTH] == 1
    assert chain.counts[APPROVED] == 1
    assert chain.rejections()["MAX_ORDER_SIZE"] == 1
    assert sum(chain.rejections().values()) == 3


def test_chain_on_sent_feeds_the_rate_limit():
    chain = RiskChain([MaxOrderSize(1.0), OrderRateLimit(max_orders=1, window_ns=100)])
    state = RiskState(now=0)
    assert chain.check(order(5.0), 100.0, state) == RejectReason.MAX_ORDER_SIZE  # not sent
    assert chain.check(order(1.0), 100.0, state) == APPROVED
    chain.on_sent(0)
    state.now = 99
    assert chain.check(order(1.0), 100.0, state) == RejectReason.ORDER_RATE
    state.now = 100
    assert chain.check(order(1.0), 100.0, state) == APPROVED


def test_dry_check_runs_only_the_checks_declared_pure_and_counts_nothing():
    """The live keep-warm pass: no count, no kill switch trip, no rate-limit slot taken, a
    user check (no `pure` declared) never called."""
    user = SpreadCheck([])  # would raise IndexError if called

    class Inherits(MaxOrderSize):  # declares nothing itself: may keep state
        __slots__ = ()

        def check(self, order, price, state):
            raise AssertionError("an undeclared subclass ran")

    called = []

    class Pure:
        pure = True

        def check(self, order, price, state):
            called.append(order.qty)
            return 1

    kill, rate = KillSwitch(max_drawdown=1.0), OrderRateLimit(max_orders=1, window_ns=100)
    chain = RiskChain([user, Inherits(1.0), kill, rate, MaxPosition(0.5), StaleData(10), Pure()])
    state = RiskState(equity=90.0, peak_equity=100.0, now=50)  # the kill switch would trip
    counts = dict(chain.counts)
    chain.dry_check(order(2.0), 100.0, state)
    assert called == [2.0]
    assert chain.counts == counts
    assert not kill.tripped
    assert kill.check(order(0.1), 100.0, state) == RejectReason.KILL_SWITCH  # as without
    assert rate._sent == [-(2**63)]


class WideSpread(IntEnum):
    SPREAD_TOO_WIDE = 1
    NO_QUOTE = 2


class SpreadCheck:
    """A user's check: its own IntEnum of reasons, 0 (a plain int) to approve."""

    def __init__(self, answers):
        self.answers = list(answers)

    def check(self, order, price, state):
        return self.answers.pop(0)


def test_a_check_returning_a_plain_zero_approves_and_the_chain_goes_on():
    chain = RiskChain([SpreadCheck([0, 0]), MaxOrderSize(1.0)])
    assert chain.check(order(2.0), 100.0, RiskState()) == RejectReason.MAX_ORDER_SIZE
    assert chain.check(order(0.5), 100.0, RiskState()) == APPROVED
    assert chain.counts[APPROVED] == 1


def test_user_reasons_are_coded_after_the_built_ins_and_reported_by_name():
    user = SpreadCheck([WideSpread.NO_QUOTE, 0, WideSpread.SPREAD_TOO_WIDE, WideSpread.NO_QUOTE, 7])
    chain = RiskChain([user, MaxOrderSize(1.0)])
    codes = [chain.check(order(0.5), 100.0, RiskState()) for _ in range(5)]
    assert codes == [USER_REASON_BASE, APPROVED, USER_REASON_BASE + 1, USER_REASON_BASE,
                     USER_REASON_BASE + 2]  # fmt: skip
    assert chain.reason_name(USER_REASON_BASE) == "NO_QUOTE"
    assert chain.reason_name(USER_REASON_BASE + 2) == "SpreadCheck_7"  # a plain int reason
    assert chain.reason_name(int(RejectReason.MAX_POSITION)) == "MAX_POSITION"
    rejections = chain.rejections()
    assert rejections["NO_QUOTE"] == 2
    assert rejections["SPREAD_TOO_WIDE"] == 1
    assert rejections["SpreadCheck_7"] == 1
    assert rejections["MAX_ORDER_SIZE"] == 0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MaxOrderSize(0.0), r"^MaxOrderSize: 'max_qty' must be a finite number > 0"),
        (lambda: MaxPosition(math.nan), r"^MaxPosition: 'max_abs_position'"),
        (lambda: MaxNotional(math.inf), r"^MaxNotional: 'max_notional'"),
        (lambda: PriceCollar(-1.0), r"^PriceCollar: 'max_bps'"),
        (lambda: OrderRateLimit(0, 10), r"^OrderRateLimit: 'max_orders' must be an integer > 0"),
        (lambda: OrderRateLimit(1, 1.5), r"^OrderRateLimit: 'window_ns'"),  # type: ignore[arg-type]
        (lambda: StaleData(True), r"^StaleData: 'max_age_ns'"),
        (lambda: KillSwitch(max_drawdown=0.0), r"^KillSwitch: 'max_drawdown' must be > 0"),
        (lambda: KillSwitch(daily_loss=math.nan), r"^KillSwitch: 'daily_loss'"),
    ],
)
def test_checks_reject_bad_config_naming_the_field(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_user_checks_are_appended_to_the_built_in_chain_or_replace_it():
    from simulator.runtime import build_risk
    from simulator.settings import RiskSection

    section = RiskSection()
    user = SpreadCheck([WideSpread.SPREAD_TOO_WIDE])
    appended = build_risk(section, [user])
    assert len(appended.checks) == 10
    assert appended.checks[-1] is user
    assert appended.check(order(0.5), 100.0, RiskState(mid=100.0, now=1)) == USER_REASON_BASE
    assert appended.rejections()["SPREAD_TOO_WIDE"] == 1
    replaced = build_risk(RiskSection(builtins=False), [SpreadCheck([0])])
    assert len(replaced.checks) == 1
    assert replaced.check(order(1e9), 100.0, RiskState()) == APPROVED  # no size limit left
