"""Issue 11 §4: instruments (tick, lot, minimum notional), rounding to them, notional sizing
in the threshold policy and the MIN_NOTIONAL risk check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from simulator import instruments
from simulator.config import apply_overrides, load_strategy
from simulator.errors import ConfigError
from simulator.feedsim.rest import exchange_info
from simulator.feedsim.tape import TapeSnapshot
from simulator.instruments import Instrument
from simulator.intents import NO_INTENTS, MarketOrder
from simulator.policies import ObiRulePolicy, ThresholdPolicy
from simulator.risk import MinNotional, RiskState
from simulator.runtime import build_policy, build_risk
from simulator.types import Nanos, OrderRequest, OrderType, RejectReason, Side

BTC = Instrument("BTCUSDT", tick=0.01, lot=0.00001, min_notional=5.0)


def test_quantities_round_down_to_whole_lots():
    assert BTC.round_qty(0.123456789) == pytest.approx(0.12345, abs=1e-12)
    assert BTC.round_qty(0.00000999) == 0.0
    assert Instrument("X", 0.1, 0.1, 0.0).round_qty(0.3) == pytest.approx(0.3)  # not 0.2
    assert Instrument("GOOG", 0.01, 1.0, 0.0).round_qty(7.9) == 7.0


def test_prices_round_to_the_tick_never_through_the_limit():
    assert BTC.round_price(61837.637, up=False) == pytest.approx(61837.63)
    assert BTC.round_price(61837.631, up=True) == pytest.approx(61837.64)
    assert BTC.round_price(61837.63, up=True) == pytest.approx(61837.63)  # on the grid stays
    assert Instrument("ANY", 0.0, 1.0, 0.0).round_price(1.2345, up=True) == 1.2345


def test_coinbase_products_of_advanced_trade_and_of_the_exchange_api():
    advanced = {  # GET /api/v3/brokerage/market/products/BTC-USD (the fields read)
        "product_id": "BTC-USD", "base_increment": "0.00000001", "quote_increment": "0.01",
        "price_increment": "0.01", "quote_min_size": "1", "base_min_size": "0.00000001",
    }  # fmt: skip
    expected = Instrument("BTC-USD", 0.01, 0.00000001, 1.0)
    assert instruments.from_coinbase_product(advanced, "btc-usd") == expected
    exchange = {  # GET https://api.exchange.coinbase.com/products/BTC-USD
        "id": "BTC-USD", "base_increment": "0.00000001", "quote_increment": "0.01",
        "min_market_funds": "1", "base_currency": "BTC", "quote_currency": "USD",
    }  # fmt: skip
    assert instruments.from_coinbase_product(exchange, "BTC-USD") == expected
    with pytest.raises(ConfigError, match="names 'ETH-USD', not BTC-USD"):
        instruments.from_coinbase_product({**advanced, "product_id": "ETH-USD"}, "BTC-USD")
    with pytest.raises(ConfigError, match=r"BTC-USD: bad or missing field \(KeyError\('base_"):
        instruments.from_coinbase_product({"product_id": "BTC-USD", "quote_increment": "1"},
                                          "BTC-USD")  # fmt: skip


def test_limit_prices_go_on_the_tick_and_bad_ones_are_nan():
    assert BTC.limit_price(61837.637, Side.BUY) == 61837.63  # the float of the decimal
    assert BTC.limit_price(61837.631, Side.SELL) == 61837.64
    assert BTC.limit_price(0.1 + 0.2, Side.BUY) == 0.3  # within float rounding: on the tick
    for text in ("61837.63", "580.12", "0.01", "99999.99"):  # read from the venue: unmoved
        assert BTC.limit_price(float(text), Side.BUY) == float(text)
        assert BTC.limit_price(float(text), Side.SELL) == float(text)
    assert Instrument("Q", 0.25, 1.0, 0.0).limit_price(10.1, Side.SELL) == 10.25
    satoshi = Instrument("S", 1e-8, 1.0, 0.0)  # 1e13 ticks: float rounding stays under one
    assert satoshi.limit_price(0.123456789, Side.BUY) == 0.12345678
    assert satoshi.limit_price(99999.12345678, Side.SELL) == 99999.12345678
    assert satoshi.limit_price(99999.12345678, Side.BUY) == 99999.12345678
    assert satoshi.limit_price(99999.123456785, Side.SELL) == 99999.12345679
    assert satoshi.limit_price(99999.123456785, Side.BUY) == 99999.12345678
    for bad in (math.nan, math.inf, -math.inf, 0.0, -1.0, 0.004):  # 0.004 buys at 0.00
        assert math.isnan(BTC.limit_price(bad, Side.BUY)), bad
    assert BTC.limit_price(0.004, Side.SELL) == 0.01


@pytest.mark.parametrize(
    ("field", "value"), [("tick", -0.01), ("lot", 0.0), ("lot", math.nan), ("min_notional", -1)]
)
def test_a_bad_instrument_names_the_field(field, value):
    args: dict[str, Any] = {"symbol": "BAD", "tick": 0.01, "lot": 1.0, "min_notional": 0.0}
    with pytest.raises(ConfigError, match=f"instrument BAD: bad {field}"):
        Instrument(**{**args, field: value})


def test_the_bundled_table_by_venue_and_symbol():
    assert instruments.bundled("binance", "btcusdt") == BTC
    assert instruments.from_session_name("nasdaq/GOOG/2012-06-21") == Instrument(
        "GOOG", 0.01, 1.0, 0.0
    )
    live = instruments.from_session_name("/any/data/binance/BTCUSDT/2026-12-07T091102")
    assert live == BTC
    assert instruments.from_session_name("quotes.parquet").lot == 1.0  # unknown: whole units


def test_the_feed_servers_exchange_info_reads_into_an_instrument():
    text = b'{"bids": [["61837.63", "0.00012"]], "asks": [["61837.64", "1.5"]]}'
    snapshot = TapeSnapshot(index=0, ts_recv=0, symbol="BTCUSDT", last_update_id=1, text=text)
    info = orjson.loads(exchange_info({"BTCUSDT": snapshot}, 0))
    got = instruments.from_exchange_info(info, "btcusdt")
    assert (got.tick, got.lot, got.min_notional) == (0.01, 0.00001, 5.0)
    with pytest.raises(ConfigError, match="no symbol ETHUSDT"):
        instruments.from_exchange_info(info, "ETHUSDT")


def test_min_notional_rejects_orders_under_the_minimum_by_name():
    check = MinNotional(5.0)
    state = RiskState(mid=60_000.0)
    small = OrderRequest(order_id=1, ts_decision=Nanos(0), side=Side.BUY, qty=0.00008)  # 4.8 USDT
    enough = OrderRequest(order_id=2, ts_decision=Nanos(0), side=Side.SELL, qty=0.0001)  # 6 USDT
    assert check.check(small, 60_000.0, state) is RejectReason.MIN_NOTIONAL
    assert check.check(enough, 60_000.0, state) is RejectReason.APPROVED
    assert check.check(enough, math.nan, state) is RejectReason.MIN_NOTIONAL  # fails closed
    limit = OrderRequest(
        order_id=3, ts_decision=Nanos(0), side=Side.BUY, qty=0.0001, order_type=OrderType.LIMIT,
        limit_px=40_000.0,
    )  # fmt: skip
    assert check.check(limit, 60_000.0, state) is RejectReason.MIN_NOTIONAL  # 4 USDT at limit


def test_the_chain_has_the_check_only_where_the_instrument_has_a_minimum():
    section = load_strategy("obi_mlp").risk
    names = lambda chain: [type(c).__name__ for c in chain.checks]  # noqa: E731
    assert "MinNotional" in names(build_risk(section, instrument=BTC))
    assert "MinNotional" not in names(build_risk(section))
    chain = build_risk(section, instrument=BTC)
    order = OrderRequest(order_id=1, ts_decision=Nanos(0), side=Side.BUY, qty=0.00001)
    code = chain.check(order, 60_000.0, RiskState(mid=60_000.0, now=0, last_market_ts=0))
    assert chain.reason_name(code) == "MIN_NOTIONAL"


class _View:
    def __init__(self, position: float, mid: float) -> None:
        self.position, self.mid, self.order_in_flight = position, mid, False


def _decide(policy: ThresholdPolicy | ObiRulePolicy, p: float, position: float, mid: float) -> Any:
    return policy.decide(np.array([p]), _View(position, mid))  # type: ignore[arg-type]


def test_notional_sizing_caps_the_position_in_quote_currency_rounded_down_to_the_lot():
    policy = ThresholdPolicy(0.1, max_position=10.0, lot=0.00001, max_notional=9000.0)
    ((order,),) = [_decide(policy, 1.0, 0.0, 60_000.0)]
    assert order.side is Side.BUY
    assert order.qty == pytest.approx(0.15)  # 9000 / 60000, in whole lots
    assert policy.target == pytest.approx(0.15)
    shares = ThresholdPolicy(0.1, max_position=10.0, lot=1.0, max_notional=9000.0)
    assert _decide(shares, 1.0, 0.0, 580.0) == (MarketOrder(Side.BUY, 10.0),)  # max_position
    assert _decide(shares, 1.0, 0.0, 1000.0) == (MarketOrder(Side.BUY, 9.0),)  # the cap
    assert _decide(shares, 0.0, 0.0, 7000.0) == (MarketOrder(Side.SELL, 1.0),)
    assert _decide(shares, 1.0, 0.0, math.nan) is NO_INTENTS  # nothing to size by: hold
    assert _decide(shares, 1.0, 9.4, 1000.0) is NO_INTENTS  # under one lot to go: no order


def test_obi_rule_buys_at_most_max_notional_in_whole_lots_and_sells_all():
    rule = ObiRulePolicy(0.6, size=1.0, lot=0.00001, max_notional=9000.0)
    ((order,),) = [_decide(rule, 0.9, 0.0, 60_000.0)]
    assert order.side is Side.BUY
    assert order.qty == pytest.approx(0.15)  # 9000 / 60000, in whole lots, not 1 BTC
    assert rule.target == pytest.approx(0.15)
    assert _decide(rule, 0.9, 0.15, 60_000.0) is NO_INTENTS  # long: hold
    assert _decide(rule, 0.1, 0.15, 60_000.0) == (MarketOrder(Side.SELL, 0.15),)  # all of it
    assert _decide(rule, 0.9, 0.0, math.nan) is NO_INTENTS  # nothing to size by: hold
    shares = ObiRulePolicy(0.6, size=1.0, lot=1.0, max_notional=9000.0)
    assert _decide(shares, 0.9, 0.0, 580.0) == (MarketOrder(Side.BUY, 1.0),)  # size: 1 share
    assert _decide(shares, 0.9, 0.0, 9500.0) is NO_INTENTS  # the cap is under one share
    with pytest.raises(ConfigError, match="max_notional"):
        ObiRulePolicy(0.6, 1.0, 1.0, max_notional=math.inf)


def test_obi_rule_counts_a_position_under_the_minimum_notional_as_flat():
    rule = ObiRulePolicy(0.6, 1.0, 0.00001, max_notional=9000.0, min_notional=5.0)
    dust = 0.00005  # 3 USDT at 60,000: the venue would refuse to sell it
    assert _decide(rule, 0.1, dust, 60_000.0) is NO_INTENTS  # not long: no sell to refuse
    ((order,),) = [_decide(rule, 0.9, dust, 60_000.0)]  # flat: buys up to the cap
    assert order.side is Side.BUY
    assert order.qty == pytest.approx(0.15 - dust)
    assert _decide(rule, 0.1, 0.0001, 60_000.0) == (MarketOrder(Side.SELL, 0.0001),)  # 6 USDT


def test_the_shipped_obi_rule_sizes_by_notional_in_the_instruments_lots():
    section = apply_overrides(load_strategy("obi_rule"), sets=()).policy
    assert section.max_notional == 9000.0
    policy = build_policy(section, "onnx", BTC)
    assert isinstance(policy, ObiRulePolicy)
    ((order,),) = [_decide(policy, 0.9, 0.0, 60_000.0)]
    assert order.qty == pytest.approx(0.15)


def test_policy_lot_zero_takes_the_instruments_lot():
    section = apply_overrides(load_strategy("obi_mlp"), sets=()).policy
    assert section.lot == 0.0
    assert section.max_notional == 9000.0
    policy = build_policy(section, "onnx", BTC)
    assert isinstance(policy, ThresholdPolicy)
    assert policy.sizer.lot == 0.00001
    assert build_policy(section, "onnx").sizer.lot == 1.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="max_notional"):
        ThresholdPolicy(0.1, 10.0, 1.0, max_notional=-1.0)


def test_a_recording_keeps_its_instrument_for_the_replay():
    meta = {"instrument": BTC.as_meta("exchangeInfo")}
    name = "binance/BTCUSDT/2026-12-07T091102"
    assert instruments.from_meta(meta, name) == BTC
    assert instruments.from_meta({}, "nasdaq/GOOG/2012-06-21").lot == 1.0  # the table's
    with pytest.raises(ConfigError, match=r"meta\.json 'instrument' is bad"):
        instruments.from_meta({"instrument": {"tick": 0.01}}, name)
