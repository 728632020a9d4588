"""Run hftbacktest 2.4.4 on one cross-check case and print its order outcomes as JSON.

Started as a subprocess by test_hftbacktest_fills.py with an interpreter that has hftbacktest
(`make crosscheck` builds one apart: hftbacktest pins numpy<2.3). It imports nothing from
ticktape, so the reference sees only the case file.

Usage: python hbt_reference.py CASE.npz [CASE.npz ...]  (prints {file name: outcome})

The case holds `events` (hftbacktest's event rows, feed and exchange flags on every row),
`actions` (the scripted strategy: what to send after the message with timestamp `ts`) and
`tick`, `lot`, and the queue model (`queue`: risk_averse, prob_power with `power`, prob_log).
The backtest: NoPartialFillExchange, that queue model (RiskAdverseQueueModel, or ProbQueueModel
with PowerProbQueueFunc / LogProbQueueFunc), constant zero order latency, no fees. The strategy
decides once per message: `wait_next_feed` returns after every row of a timestamp has been
applied (and returns end-of-data, not a feed, after the last one). It posts GTX limit orders
and cancels those still open in its own view. The outcome of every order is read from the
local order table at the end (orders are never cleared from it), with plain ctypes calls so
that no numba compilation runs.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

import numpy as np
from hftbacktest import GTX, LIMIT, BacktestAsset, build_hashmap_backtest
from hftbacktest.binding import HashMapMarketDepthBacktest, hashmapbt_orders, orders_get
from hftbacktest.order import CANCELED, EXPIRED, FILLED, NEW, NONE
from hftbacktest.types import event_dtype, order_dtype

END_OF_DATA, MARKET_FEED = 1, 2
FOREVER = 1 << 60
STATUS = {NEW: "open", FILLED: "filled", CANCELED: "cancelled", EXPIRED: "expired"}


def read_order(orders_ptr: int, order_id: int) -> Any:
    """The local copy of one order (a numpy record), or None when it is unknown."""
    address = orders_get(orders_ptr, order_id)
    if not address:
        return None
    raw = (ctypes.c_char * order_dtype.itemsize).from_address(address)
    return np.frombuffer(raw, dtype=order_dtype, count=1).copy()[0]


def act(hbt: HashMapMarketDepthBacktest, action: Any, sent: list[int]) -> bool:
    """Send one scripted action; False when hftbacktest refuses it."""
    order_id = int(action["order_id"])
    if action["kind"] == 0:
        submit = hbt.submit_buy_order if action["side"] > 0 else hbt.submit_sell_order
        sent.append(order_id)
        price, qty = float(action["price"]), float(action["qty"])
        return bool(submit(0, order_id, price, qty, GTX, LIMIT, False) == 0)
    order = read_order(hashmapbt_orders(hbt.ptr, 0), order_id)
    if order is None or order["status"] != NEW or order["req"] != NONE:
        return True  # filled or ended already: the strategy sees it and does nothing
    return bool(hbt.cancel(0, order_id, False) == 0)


def queue_model(asset: BacktestAsset, queue: str, power: float, path: str) -> None:
    if queue == "risk_averse":
        asset.risk_adverse_queue_model()
    elif queue == "prob_power":
        asset.power_prob_queue_model(power)
    elif queue == "prob_log":
        asset.log_prob_queue_model()
    else:
        raise SystemExit(f"{path}: unknown queue model {queue!r}")


def run(path: str) -> dict[str, Any]:
    case = np.load(path)
    events = np.ascontiguousarray(case["events"])
    if events.dtype != event_dtype:
        raise SystemExit(f"{path}: events dtype {events.dtype} is not hftbacktest's {event_dtype}")
    actions = case["actions"]
    tick, lot = float(case["tick"]), float(case["lot"])
    asset = (
        BacktestAsset()
        .data([events])
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick)
        .lot_size(lot)
    )
    queue_model(asset, str(case["queue"]), float(case["power"]), path)
    hbt = HashMapMarketDepthBacktest(build_hashmap_backtest([asset]))
    sent: list[int] = []
    i, decisions = 0, 0
    while True:
        rc = hbt.wait_next_feed(False, FOREVER)
        if rc == END_OF_DATA:
            break
        if rc != MARKET_FEED:
            raise SystemExit(f"{path}: wait_next_feed returned {rc}")
        ts, decisions = hbt.current_timestamp, decisions + 1
        while i < len(actions) and actions[i]["ts"] <= ts:
            if actions[i]["ts"] != ts:
                raise SystemExit(f"{path}: action {i} at ts {actions[i]['ts']} met no message")
            if not act(hbt, actions[i], sent):
                raise SystemExit(f"{path}: action {i} was refused")
            i += 1
    if i < len(actions):
        raise SystemExit(f"{path}: action {i} at ts {actions[i]['ts']} met no decision")
    outcomes = {str(order_id): outcome(hbt, order_id, path) for order_id in sent}
    hbt.close()
    return {"decisions": decisions, "orders": outcomes}


def outcome(hbt: HashMapMarketDepthBacktest, order_id: int, path: str) -> dict[str, Any]:
    order = read_order(hashmapbt_orders(hbt.ptr, 0), order_id)
    if order is None:
        raise SystemExit(f"{path}: order {order_id} is missing from the order table")
    return {
        "status": STATUS.get(int(order["status"]), f"status {int(order['status'])}"),
        "price_tick": int(order["exec_price_tick"]),
        "qty": float(order["exec_qty"]),
        "ts": int(order["exch_timestamp"]),
    }


if __name__ == "__main__":
    json.dump({path.rsplit("/", 1)[-1]: run(path) for path in sys.argv[1:]}, sys.stdout)
