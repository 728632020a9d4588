"""Issue 11 §4: the shipped obi_mlp trades BTCUSDT live with its defaults (no `--set`): the
instrument's lot and the policy's notional sizing make its orders fit the risk limits, and the
recording replays with the same digest."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pyarrow.parquet as pq

from simulator import instruments
from simulator.config import load_strategy
from simulator.feedsim.coinbase_server import load_coinbase_records, serving_coinbase
from simulator.feedsim.coinbase_tape import CoinbaseRecord, L2Event, envelope
from simulator.feedsim.server import serving
from simulator.instruments import Instrument
from simulator.live.run import LiveOptions, _instrument, run_live
from simulator.live.venues import adapter
from simulator.types import Side
from tests.conftest import BUNDLED_DATA
from tests.live.processes import live_against_feed
from tests.live.test_parity import COINBASE_RECORDING, _live, _replay_digest

PACED = 100.0
"""obi_mlp trades once its book synced: at max speed on a loaded host the REST snapshot can
come so late that the tape ends first (0 orders); paced, the server answers it at once."""


def test_default_obi_mlp_trades_btcusdt_live_and_replays_with_parity(tmp_path, tape):
    config = load_strategy("obi_mlp")  # the defaults: no overrides at all
    with serving(tape, speed=PACED) as server:
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
    venue = adapter("binance", ["quotes"], rest_url="http://127.0.0.1:9")  # nothing listens
    got, source = _instrument(venue, "btcusdt")
    assert got == instruments.bundled("binance", "BTCUSDT")
    assert source.startswith("bundled (exchangeInfo: ")


def _l2(product: str, levels: list[tuple[str, str]]) -> CoinbaseRecord:
    """One recorded level2 snapshot envelope of `product` (bid levels)."""
    updates = [{"side": "bid", "event_time": "2024-08-08T00:00:00Z", "price_level": p,
                "new_quantity": q} for p, q in levels]  # fmt: skip
    event: dict[str, object] = {"type": "snapshot", "product_id": product, "updates": updates}
    head, tail = envelope("l2_data", "2024-08-08T00:00:00Z", [event])
    l2 = L2Event(product, True, tuple((True, p, q) for p, q in levels))
    return CoinbaseRecord(1, "l2_data", frozenset({product}), 0, "", head, tail, (l2,))


def test_coinbase_products_are_read_from_the_feed_servers_rest_endpoint():
    # a product whose decimals differ from the bundled default (0.01, 0.00000001, 1 USD)
    records = [_l2("DOGE-USD", [("0.12345", "150.5"), ("0.1234", "7")])]
    with serving_coinbase(records, speed=None) as server:
        venue = adapter("coinbase", ["quotes"], url=server.ws_url, rest_url=server.rest_url)
        assert _instrument(venue, "doge-usd") == (
            Instrument("DOGE-USD", tick=0.00001, lot=0.1, min_notional=1.0),
            "products",
        )
        got, source = _instrument(venue, "XRP-USD")  # not served: 404, the table, and why
        assert got == instruments.bundled("coinbase", "XRP-USD")
        assert source.startswith("bundled (products: HTTP 404 (http://127.0.0.1:")
        assert server.http_requests == 2


def test_default_obi_rule_runs_coinbase_live_with_the_venues_product_and_parity(tmp_path):
    config = load_strategy("obi_rule")  # the defaults: no overrides at all
    records = load_coinbase_records(COINBASE_RECORDING)
    with serving_coinbase(records, speed=None) as server:
        options = LiveOptions(
            symbols=("BTC-USD",),
            feed="coinbase",
            data_dir=tmp_path / "data",
            out_root=tmp_path / "reports",
            url=server.ws_url,
            rest_url=server.rest_url,
            until_idle_s=2.0,
            backoff_initial_s=0.1,
            backoff_cap_s=0.5,
        )
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    product = {"tick": 0.01, "lot": 0.00000001, "min_notional": 1.0, "source": "products"}
    meta = orjson.loads((result.sessions[name] / "meta.json").read_bytes())
    assert meta["instrument"] == product  # kept for the replay
    assert result.live_facts[name]["instrument"] == product
    assert int(str(result.summaries[name]["n_events"])) > 50  # the recording's BTC-USD tickers
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_the_readme_coinbase_command_reads_the_product_and_says_so(tmp_path):
    """`ticktape feed serve --venue coinbase` and `ticktape live --feed coinbase ... obi_rule`
    as real processes: no --set, and the run says where its tick, lot and minimum came from."""
    live = live_against_feed(
        ["--venue", "coinbase", "--speed", "max", "--data-dir", str(BUNDLED_DATA)],
        lambda ws, rest: [
            "--feed", "coinbase", "--symbol", "BTC-USD", "--strategy", "obi_rule", "--url", ws,
            "--rest-url", rest, "--until-idle", "2", "--no-dashboard",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports")],
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    assert "instrument: tick 0.01, lot 1e-08, minimum notional 1 from products" in live.stdout
