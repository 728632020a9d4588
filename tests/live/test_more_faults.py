"""The feed-server faults of LIVE.md 6b that came last: a 418 ban on REST, a dead peer, refused
subscriptions, a slow-consumer kick and a compressed 24 h lifetime. Live rides them all out
and its recording still replays to the same digest."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from simulator.errors import ConfigError
from simulator.feedsim.faults import parse_faults
from simulator.feedsim.server import serving
from simulator.live.run import LiveOptions, run_live
from simulator.types import StatusCode
from tests.live.test_parity import _config, _replay_digest


def test_live_survives_ban_dead_peer_refusals_slow_consumer_kick_and_lifetime(tmp_path, tape):
    faults = parse_faults(
        {
            "seed": 11,
            "fault": [
                {"kind": "http_418", "at": 0, "count": 1, "retry_after": 1},
                {"kind": "dead_peer", "at": 1_500, "ms": 3_000},
                {"kind": "reject_subscribe", "at": 3_500, "count": 2},
                {"kind": "disconnect", "at": 3_500, "mode": "abrupt"},
                {"kind": "slow_consumer", "at": 5_000},
                # the connection open then is older than 10 ms (6,000 messages since the
                # kick take longer to send): closed at once, not raced by the tape's end
                {"kind": "lifetime", "at": 11_000, "ms": 10},
            ],
        }
    )
    config = _config()
    with serving(tape, speed=None, faults=faults) as server:
        options = LiveOptions(
            symbols=("btcusdt",), data_dir=tmp_path / "data", out_root=tmp_path / "reports",
            url=server.ws_url, rest_url=server.rest_url, until_idle_s=3.0,
            backoff_initial_s=0.1, backoff_cap_s=0.3, dead_peer_timeout_s=1.0,
        )  # fmt: skip
        result = run_live(config, options, stop=threading.Event())
        injected = {f.kind for f in server.injected}
    assert injected >= {"http_418", "dead_peer", "reject_subscribe", "slow_consumer", "lifetime"}
    ((name, digest),) = result.digests.items()
    network: Any = result.live_facts[name]["network"]
    assert network["dead_peer_timeouts"] >= 1
    assert network["connect_failures"] >= 2  # the refused subscriptions
    assert network["rest_429"] >= 1  # the ban, honoured like a 429
    assert network["reconnects"] >= 4
    status = pq.read_table(result.sessions[name] / "status.parquet").to_pylist()
    closes = [r["reason"] for r in status if r["code"] == StatusCode.DISCONNECTED]
    assert any("1001 connection lifetime" in reason for reason in closes)
    assert any("1008 slow consumer" in reason for reason in closes)
    assert any("dead-peer" in reason for reason in closes)
    summary: Any = result.summaries[name]
    assert summary["n_events"] > 1_000
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_a_refused_subscription_answers_with_binance_error_shapes(tape):
    faults = parse_faults({"fault": [{"kind": "reject_subscribe", "at": 0, "count": 2}]})
    streams = "/stream?streams=btcusdt@trade"
    with (
        serving(tape.slice(0, 1_000), speed=1.0, faults=faults) as server,
        connect(f"{server.ws_url}{streams}") as first,  # starts the tape: armed at 0
    ):
        first.recv(timeout=5)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{server.ws_url}{streams}")
        assert refused.value.response.status_code == 400
        assert orjson.loads(refused.value.response.body)["code"] == 2
        with connect(f"{server.ws_url}/ws") as ws:  # no streams: not a subscription yet
            request = {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}
            ws.send(orjson.dumps(request))
            answer = orjson.loads(ws.recv(timeout=5))
            assert answer == {"error": {"code": 2, "msg": answer["error"]["msg"]}, "id": 7}
            assert "reject_subscribe" in answer["error"]["msg"]
            ws.send(orjson.dumps({**request, "id": 8}))  # the third one goes through
            assert orjson.loads(ws.recv(timeout=5)) == {"result": None, "id": 8}


def test_new_fault_keys_are_checked():
    with pytest.raises(ConfigError, match=r"#1 \(slow_consumer\): unknown key 'ms'"):
        parse_faults({"fault": [{"kind": "slow_consumer", "at": 1, "ms": 5}]})
    with pytest.raises(ConfigError, match=r"#1 \(slow_consumer\): bytes must be >= 0"):
        parse_faults({"fault": [{"kind": "slow_consumer", "at": 1, "bytes": -1}]})
