"""Issue 11 §4: the shipped obi_mlp trades BTCUSDT live with its defaults (no `--set`): the
instrument's lot and the policy's notional sizing make its orders fit the risk limits, and the
recording replays with the same digest."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow.parquet as pq

from simulator import instruments
from simulator.config import load_strategy
from simulator.feedsim.server import serving
from simulator.live.run import _instrument
from simulator.types import Side
from tests.live.test_parity import _live, _replay_digest


def test_default_obi_mlp_trades_btcusdt_live_and_replays_with_parity(tmp_path, tape):
    config = load_strategy("obi_mlp")  # the defaults: no overrides at all
    with serving(tape, speed=None) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert summary["n_orders"] > 0
    rejected = summary["rejections_by_reason"]
    assert "MAX_NOTIONAL" not in rejected, rejected
    assert "MAX_POSITION" not in rejected, rejected
    # fractions of a coin (the cap is 9000 USDT, about 0.15 BTC; MAX_NOTIONAL above bounds
    # every approved order's position), every order in whole lots of 0.00001 BTC
    assert 0.0 < abs(summary["final_position"]) < 1.0
    qty = pq.read_table(result.run_dirs[name] / "orders.parquet", columns=["qty"])["qty"]
    lots = [q / 0.00001 for q in qty.to_pylist()]
    bad = [n for n in lots if not (abs(n - round(n)) < 1e-6 and n > 0.5)]
    assert bad == [], lots
    # the instrument came from the feed server's exchangeInfo, and the recording keeps it
    meta = orjson.loads((result.sessions[name] / "meta.json").read_bytes())
    assert meta["instrument"] == {
        "tick": 0.01, "lot": 0.00001, "min_notional": 5.0, "source": "exchangeInfo"
    }  # fmt: skip
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_default_obi_rule_buys_fractions_of_a_coin_live_and_replays_with_parity(tmp_path, tape):
    config = load_strategy("obi_rule")  # the defaults: no overrides at all
    with serving(tape, speed=None) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert summary["n_orders"] > 0
    sizing = {"MAX_NOTIONAL", "MAX_POSITION", "MAX_ORDER_SIZE", "MIN_NOTIONAL"}
    assert not sizing & set(summary["rejections_by_reason"]), summary["rejections_by_reason"]
    # the first buy is 9000 USDT / mid (~61,800 on this tape) in whole 0.00001 BTC lots, not
    # 1 BTC; every order is in whole lots and under a coin
    orders = pq.read_table(result.run_dirs[name] / "orders.parquet").to_pylist()
    assert orders[0]["side"] == Side.BUY
    assert 0.14 < orders[0]["qty"] < 0.15, orders[0]
    lots = [o["qty"] / 0.00001 for o in orders]
    assert all(abs(n - round(n)) < 1e-6 and 0.5 < n < 100_000 for n in lots), lots
    assert abs(summary["final_position"]) < 1.0
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_without_an_exchange_info_answer_the_bundled_table_sizes_and_says_why():
    got, source = _instrument("binance", "btcusdt", "http://127.0.0.1:9")  # nothing listens
    assert got == instruments.bundled("binance", "BTCUSDT")
    assert source.startswith("bundled (exchangeInfo: ")
    assert _instrument("coinbase", "BTC-USD", None) == (
        instruments.bundled("coinbase", "BTC-USD"),
        "bundled",
    )
