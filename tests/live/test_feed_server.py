"""`ticktape feed serve`: a real server on 127.0.0.1 and real websockets/HTTP clients, no mocks.

Most tests serve a slice of the bundled BTCUSDT session at max speed, where the tape waits
for a subscriber and for each connection's drain, so what a client receives is exact.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cli import main
from simulator.errors import ConfigError, DataError
from simulator.feedsim import binance_wire as wire
from simulator.feedsim.faults import FaultSchedule, load_faults, parse_faults
from simulator.feedsim.rest import RestApi
from simulator.feedsim.server import FeedServer, parse_speed, serving
from simulator.feedsim.tape import FeedTape, TapeEntry, load_tape, merge_tapes
from simulator.live.frames import Frame, raw_table
from tests.conftest import BUNDLED_DATA

BTC = "binance/BTCUSDT/2024-08-08"
ETH = "binance/ETHUSDT/2024-08-08"
DEPTH, TICKER, TRADE = "btcusdt@depth@100ms", "btcusdt@bookTicker", "btcusdt@trade"
ALL = f"{DEPTH}/{TICKER}/{TRADE}"


@pytest.fixture(scope="module")
def tape() -> FeedTape:
    return load_tape([BTC], BUNDLED_DATA)


def drain(ws: ClientConnection, timeout: float = 10.0) -> tuple[list[bytes], int, str]:
    """Every frame until the server closes: (frames, close code, reason); 1006 = no close."""
    frames: list[bytes] = []
    try:
        while True:
            frames.append(ws.recv(timeout=timeout, decode=False))
    except ConnectionClosed as e:
        return frames, e.rcvd.code if e.rcvd else 1006, e.rcvd.reason if e.rcvd else ""


def served(tape: FeedTape, streams: set[str]) -> list[bytes]:
    return [tape.texts[i] for i in range(tape.start, tape.stop) if tape.streams[i] in streams]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


# -- the tape -----------------------------------------------------------------------------------


def test_bundled_session_is_read_in_receive_order_with_its_snapshot(tape):
    assert len(tape) == 99_573
    assert tape.symbols == ("BTCUSDT",)
    assert tape.served_streams() == [TICKER, DEPTH, TRADE]
    assert list(tape.ts_recv) == sorted(tape.ts_recv)
    (snapshot,) = tape.snapshots
    assert (snapshot.index, snapshot.symbol, snapshot.last_update_id) == (7, "BTCUSDT", 50093239218)
    assert tape.texts[0].startswith(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"')


def test_sessions_given_together_merge_by_receive_time():
    both = load_tape([BTC, ETH], BUNDLED_DATA)
    assert both.symbols == ("BTCUSDT", "ETHUSDT")
    assert len(both) == 99_573 + 79_743
    assert list(both.ts_recv) == sorted(both.ts_recv)
    assert sorted(s.symbol for s in both.snapshots) == ["BTCUSDT", "ETHUSDT"]
    assert [s.ts_recv for s in both.snapshots] == sorted(s.ts_recv for s in both.snapshots)
    for snapshot in both.snapshots:  # placed between the messages received around it
        assert both.ts_recv[snapshot.index - 1] <= snapshot.ts_recv <= both.ts_recv[snapshot.index]


def test_slices_count_from_the_slice_and_keep_the_earlier_messages(tape):
    part = tape.slice(100, 50).slice(10, 5)
    assert (part.start, part.stop, len(part)) == (110, 115, 5)
    with pytest.raises(DataError, match=r"start=6 is past the end \(5 messages\)"):
        part.slice(6)


@pytest.mark.parametrize("layout", ["parts", "consolidated"])
def test_a_live_session_is_read_from_its_raw_table(tmp_path, layout):
    message = b'{"stream":"ethusdt@trade","data":{"e":"trade","t":1}}'
    snapshot = b'{"lastUpdateId":7,"bids":[["1.00000000","2.00000000"]],"asks":[]}'
    frames = [
        Frame(0, 1, 100, "connect", "", b"wss://stream.binance.com/stream"),
        Frame(1, 1, 200, "in", "ethusdt@trade", message),
        Frame(2, 1, 300, "http_resp", "ethusdt@snapshot", snapshot),
        Frame(3, 1, 400, "out", "", b'{"method":"SUBSCRIBE"}'),
        Frame(4, 1, 500, "in", "", b'{"result":null,"id":1}'),
    ]
    session = tmp_path / "session"
    if layout == "parts":
        parts = session / "parts" / "raw"
        parts.mkdir(parents=True)
        pq.write_table(raw_table(frames[:3]), parts / "part-000000.parquet")
        pq.write_table(raw_table(frames[3:]), parts / "part-000001.parquet")
        (parts / "part-000002.parquet.tmp").write_bytes(b"half written")
    else:
        session.mkdir()
        pq.write_table(raw_table(frames), session / "raw.parquet")
    live = load_tape([str(session)], tmp_path)
    assert (list(live.texts), list(live.streams), list(live.ts_recv)) == (
        [message],
        ["ethusdt@trade"],
        [200],
    )
    assert [(s.index, s.symbol, s.last_update_id) for s in live.snapshots] == [(1, "ETHUSDT", 7)]


def test_unknown_sessions_are_named(tmp_path):
    with pytest.raises(DataError, match=r"no session binance/XRPUSDT/2024-08-08 under"):
        load_tape(["binance/XRPUSDT/2024-08-08"], BUNDLED_DATA)
    with pytest.raises(DataError, match=r"nothing to serve; expected raw.txt.zst"):
        load_tape([str(tmp_path)], BUNDLED_DATA)


# -- streams ------------------------------------------------------------------------------------


def test_combined_frames_are_byte_exact_filtered_and_end_with_1001(tape):
    part = tape.slice(0, 3000)
    with serving(part, speed=None) as server:
        with connect(f"{server.ws_url}/stream?streams={TRADE}/{TICKER}") as ws:
            frames, code, reason = drain(ws)
        assert server.join(5)
    assert frames == served(part, {TRADE, TICKER})
    assert (code, reason) == (1001, "end of recording")
    assert (server.messages, server.frames_sent, server.connections) == (3000, len(frames), 1)


def test_raw_path_sends_only_the_data_payload(tape):
    part = tape.slice(0, 2000)
    with serving(part, speed=None) as server, connect(f"{server.ws_url}/ws/{TRADE}") as ws:
        frames, code, _ = drain(ws)
    expected = [
        text[len(b'{"stream":"btcusdt@trade","data":') : -1] for text in served(part, {TRADE})
    ]
    assert frames == expected
    assert code == 1001
    assert orjson.loads(frames[0])["e"] == "trade"


def test_subscribe_list_and_properties_over_the_socket(tape):
    with serving(tape.slice(0, 5000), speed=1.0) as server, connect(f"{server.ws_url}/ws") as ws:
        requests = [
            {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "BTCUSDT@kline_1m"], "id": 1},
            {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": "a2"},
            {"method": "LIST_SUBSCRIPTIONS", "id": 3},
            {"method": "SET_PROPERTY", "params": ["combined", True], "id": 4},
            {"method": "GET_PROPERTY", "params": ["combined"], "id": None},
        ]
        replies = []
        for request in requests:  # 5 messages within a second: the limit, not over it
            ws.send(json.dumps(request))
            replies.append(ws.recv(timeout=5))
    assert replies == [
        '{"result":null,"id":1}',
        '{"result":null,"id":"a2"}',
        '{"result":["btcusdt@aggTrade"],"id":3}',
        '{"result":null,"id":4}',
        '{"result":true,"id":null}',
    ]


UNKNOWN_METHOD = (
    "Invalid request: unknown variant `SUBSCRIB`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
    "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
)


@pytest.mark.parametrize(
    ("request_text", "code", "msg", "request_id"),
    [
        ("{not json", 3, "Invalid JSON: expected value at line 1 column 2", None),
        ('{"method":"SUBSCRIB","params":[],"id":1}', 2, UNKNOWN_METHOD, 1),
        ('{"params":[],"id":1}', 2, "Invalid request: missing field `method`", 1),
        ('{"method":"LIST_SUBSCRIPTIONS","id":1.5}', 2,
         "Invalid request: request ID must be an unsigned integer", None),
        ('{"method":"SUBSCRIBE","params":["not a stream"],"id":2}', 2,
         "Invalid request: invalid stream", 2),
        ('{"method":"SET_PROPERTY","params":["compressed",true],"id":5}', 0, "Unknown property", 5),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":5}', 1,
         "Invalid value type: expected Boolean", 5),
        ('{"method":"GET_PROPERTY","params":[1],"id":6}', 2,
         "Invalid request: property name must be a string", 6),
        ('{"method":"GET_PROPERTY","params":["combined","x"],"id":6}', 2,
         "Invalid request: too many parameters", 6),
    ],
)  # fmt: skip
def test_control_errors_have_binance_shapes(request_text, code, msg, request_id):
    reply = orjson.loads(wire.control_reply(request_text, wire.Subscription()))
    assert reply == {"error": {"code": code, "msg": msg}, "id": request_id}


def test_a_connection_holds_at_most_1024_streams():
    sub = wire.Subscription()
    names = [f"s{i}usdt@trade" for i in range(1025)]
    add = {"method": "SUBSCRIBE", "params": names[:1024], "id": 1}
    assert wire.control_reply(orjson.dumps(add), sub) == b'{"result":null,"id":1}'
    one_more = {"method": "SUBSCRIBE", "params": names[1024:], "id": 2}
    error = orjson.loads(wire.control_reply(orjson.dumps(one_more), sub))["error"]
    assert error == {"code": 2, "msg": "Invalid request: too many streams (1024 at most)"}
    assert len(sub.streams) == 1024
    assert wire.path_subscription("/stream?streams=" + "/".join(names)) == (
        "1025 streams; 1024 at most per connection"
    )


def test_more_than_5_messages_a_second_disconnects(tape):
    with serving(tape.slice(0, 100), speed=None) as server, connect(f"{server.ws_url}/ws") as ws:
        request = json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1})
        for _ in range(6):
            ws.send(request)
        frames, code, reason = drain(ws)
        assert server.rate_limited == 1
    assert frames == [b'{"result":[],"id":1}'] * 5
    assert (code, reason) == (1008, "Too many requests")


def test_server_pings_and_drops_a_client_that_never_pongs(tape):
    with (
        serving(tape.slice(0, 100), speed=None, ping_interval=0.1, pong_timeout=0.2) as server,
        socket.create_connection(("127.0.0.1", int(server.ws_url.rsplit(":", 1)[1]))) as sock,
    ):
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.settimeout(5)
        received = b""
        while chunk := sock.recv(4096):  # a raw socket answers no ping
            received += chunk
    frames = received.partition(b"\r\n\r\n")[2]
    assert frames[0] == 0x89  # a ping first
    close = frames[frames.index(b"\x88") :]
    assert int.from_bytes(close[2:4], "big") == 1011  # then close: keepalive ping timeout


# -- REST ---------------------------------------------------------------------------------------


def test_rest_time_exchange_info_and_errors(tape):
    with serving(tape.slice(0, 100), speed=None) as server:
        base = server.rest_url
        status, headers, body = get(f"{base}/api/v3/time")
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        assert orjson.loads(body) == {"serverTime": tape.ts_recv[0] // 1_000_000}
        (info,) = orjson.loads(get(f"{base}/api/v3/exchangeInfo")[2])["symbols"]
        assert (info["symbol"], info["status"], info["baseAsset"], info["quoteAsset"]) == (
            "BTCUSDT",
            "TRADING",
            "BTC",
            "USDT",
        )
        assert info["filters"][0]["tickSize"] == "0.01000000"
        assert info["filters"][2]["minNotional"] == "5.00000000"
        assert get(f"{base}/api/v3/depth?symbol=DOGEUSDT")[:3:2] == (
            400,
            b'{"code":-1121,"msg":"Invalid symbol."}',
        )
        assert get(f"{base}/api/v3/depth")[0] == 400
        assert get(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=x")[0] == 400
        assert get(f"{base}/api/v3/klines")[0] == 404


def test_depth_before_the_tape_starts_is_the_recorded_snapshot(tape):
    with serving(tape.slice(0, 100), speed=None) as server:
        status, _, body = get(f"{server.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=2")
    assert status == 200
    assert body == (
        b'{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],["61837.62000000",'
        b'"0.61700000"]],"asks":[["61837.64000000","1.54698000"],["61837.65000000","0.00843000"]]}'
    )


class LocalBook:
    """The client side of LIVE.md 1.4, written plainly: dicts, max/min."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.id = snapshot["lastUpdateId"]
        self.bids = {float(p): float(q) for p, q in snapshot["bids"]}
        self.asks = {float(p): float(q) for p, q in snapshot["asks"]}
        self.synced = False

    def apply(self, diff: dict[str, Any]) -> bool:
        if diff["u"] <= self.id:
            return False  # covered by the snapshot (or stale)
        expected = diff["U"] <= self.id + 1 if not self.synced else diff["U"] == self.id + 1
        assert expected, f"gap: book {self.id}, diff U={diff['U']} u={diff['u']}"
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        self.id, self.synced = diff["u"], True
        return True


@pytest.mark.parametrize("start", [0, 2500], ids=["from-the-start", "mid-session"])
def test_depth_snapshot_plus_diffs_give_the_book_tickers_best_prices(tape, start):
    part = tape.slice(start, 2500)
    buffered: list[dict[str, Any]] = []
    tickers: dict[int, dict[str, Any]] = {}
    with (
        serving(part, speed=20.0) as server,
        connect(f"{server.ws_url}/stream?streams={DEPTH}/{TICKER}") as ws,
    ):
        while not buffered:  # LIVE.md 1.4: buffer, then ask for the snapshot
            message = orjson.loads(ws.recv(timeout=10))
            if message["stream"] == DEPTH:
                buffered.append(message["data"])
        status, _, body = get(f"{server.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000")
        frames, code, _ = drain(ws)
    assert status == 200
    assert code == 1001
    snapshot = orjson.loads(body)
    assert snapshot["lastUpdateId"] >= buffered[0]["U"]
    book, matches = LocalBook(snapshot), 0
    for frame in frames:
        message = orjson.loads(frame)
        if message["stream"] == TICKER:
            tickers[message["data"]["u"]] = message["data"]
        else:
            buffered.append(message["data"])
    for diff in buffered:
        if book.apply(diff) and diff["u"] in tickers:
            ticker = tickers[diff["u"]]
            assert (max(book.bids), min(book.asks)) == (float(ticker["b"]), float(ticker["a"]))
            matches += 1
    assert book.synced
    assert matches > 20


def _synthetic(*entries: tuple[int, str, dict[str, Any]]) -> FeedTape:
    lines = []
    for ts, stream, data in entries:
        if stream:
            lines.append(TapeEntry(ts, stream, orjson.dumps({"stream": stream, "data": data}), ""))
        else:
            lines.append(TapeEntry(ts, "", orjson.dumps(data), "XYZUSDT"))
    return merge_tapes([lines], ("synthetic",))


def _diff(first: int, last: int, bid: str) -> dict[str, Any]:
    return {
        "e": "depthUpdate",
        "E": 1,
        "s": "XYZUSDT",
        "U": first,
        "u": last,
        "b": [[bid, "1"]],
        "a": [],
    }


def _depth(rest: RestApi) -> tuple[int, dict[str, Any]]:
    reply = rest.answer("/api/v3/depth", "symbol=XYZUSDT")
    return reply.status, orjson.loads(reply.body)


def test_a_snapshot_not_yet_reached_answers_while_it_is_consistent_then_the_book_does():
    synthetic = _synthetic(
        (1, "xyzusdt@depth", _diff(105, 110, "1.5")),
        (2, "", {"lastUpdateId": 107, "bids": [["1.0", "2"]], "asks": [["3.0", "4"]]}),
        (3, "xyzusdt@depth", _diff(111, 112, "1.75")),
    )
    rest = RestApi(synthetic, record=lambda kind, **details: None)
    rest.advance(0)  # diff 105..110 sent; the snapshot was received after it
    assert _depth(rest) == (
        200,
        {"lastUpdateId": 107, "bids": [["1.0", "2"]], "asks": [["3.0", "4"]]},
    )
    rest.advance(1)  # snapshot reached: 105..110 applies over it (U <= 108 <= u), then 111..112
    status, body = _depth(rest)
    assert (status, body["lastUpdateId"], body["asks"]) == (
        200,
        112,
        [["3.00000000", "4.00000000"]],
    )
    assert body["bids"] == [
        ["1.75000000", "1.00000000"],
        ["1.50000000", "1.00000000"],
        ["1.00000000", "2.00000000"],
    ]


def test_a_snapshot_older_than_the_diffs_sent_is_never_served():
    synthetic = _synthetic(
        (1, "xyzusdt@depth", _diff(105, 110, "1.5")),
        (2, "", {"lastUpdateId": 103, "bids": [["1.0", "2"]], "asks": []}),
        (3, "xyzusdt@depth", _diff(111, 112, "1.75")),
    )
    rest = RestApi(synthetic, record=lambda kind, **details: None)
    rest.advance(0)  # a client's first buffered diff may be U=105 > 103: LIVE.md 1.4 step 3
    assert _depth(rest)[0] == 503
    rest.advance(1)  # the server cannot build its book from it either (gap 104)
    status, body = _depth(rest)
    assert (status, body["code"]) == (503, -1008)
    assert body["msg"].endswith("no recorded snapshot as new as the diffs sent)")


# -- pacing -------------------------------------------------------------------------------------


def test_speed_n_takes_the_recorded_time_over_n(tape):
    part = tape.slice(0, 400)
    recorded_s = (part.ts_recv[399] - part.ts_recv[0]) / 1e9  # 1.73 s
    with serving(part, speed=2.0) as server, connect(f"{server.ws_url}/stream?streams={ALL}") as ws:
        began = time.monotonic()
        frames, code, _ = drain(ws)
        elapsed = time.monotonic() - began
    assert len(frames) == 400
    assert code == 1001
    assert recorded_s / 2 * 0.7 < elapsed < recorded_s / 2 + 2.0


def test_speed_parsing():
    assert (parse_speed("1"), parse_speed("10x"), parse_speed("max")) == (1.0, 10.0, None)
    with pytest.raises(ConfigError, match=r"expected 1 .* N .* or max"):
        parse_speed("fast")
    with pytest.raises(ConfigError):
        FeedServer(FeedTape([1], ["a@trade"], [b"{}"], (), ("x",)), speed=0.0)


# -- faults -------------------------------------------------------------------------------------


def test_stream_faults_fire_are_logged_and_the_client_sees_exactly_them(tape, tmp_path):
    part = tape.slice(0, 400)
    schedule = parse_faults(
        {"seed": 1, "fault": [
            {"kind": "duplicate", "at": 10},
            {"kind": "reorder", "at": 20},
            {"kind": "delay", "at": 30, "ms": 300},
            {"kind": "silent", "at": 40, "ms": 300},
            {"kind": "gap", "at": 50, "count": 3},
            {"kind": "disconnect", "at": 100},
            {"kind": "disconnect", "at": 200, "mode": "abrupt"},
            {"kind": "shutdown_notice", "at": 300, "ms": 100},
            {"kind": "delay", "at": 310, "ms": 600},  # the shutdown closes during this stall
        ]},
        "test.toml",
    )  # fmt: skip
    log = tmp_path / "faults.jsonl"
    closes: list[tuple[int, str]] = []
    received: list[tuple[float, bytes]] = []
    notices: list[bytes] = []
    with serving(part, speed=None, faults=schedule, fault_log=log) as server:
        while not closes or closes[-1][1] != "end of recording":
            with connect(f"{server.ws_url}/stream?streams={ALL}") as ws:
                try:
                    while True:
                        frame = ws.recv(timeout=10, decode=False)
                        if b"!serverShutdown" in frame:
                            notices.append(frame)
                        else:
                            received.append((time.monotonic(), frame))
                except ConnectionClosed as e:
                    closes.append((e.rcvd.code, e.rcvd.reason) if e.rcvd else (1006, ""))
        injected = list(server.injected)
    kinds = [f.kind for f in injected]
    assert kinds == ["duplicate", "reorder", "delay", "silent", "gap", "disconnect", "disconnect",
                     "shutdown_notice", "delay"]  # fmt: skip
    assert [json.loads(line)["kind"] for line in log.read_text().splitlines()] == kinds
    assert closes == [(1001, ""), (1006, ""), (1001, "server shutdown"), (1001, "end of recording")]
    skipped = sorted(schedule.plan(part).skipped)
    assert injected[4].details == {"fault": 5, "symbol": "BTCUSDT", "count": 3,
                                   "skipped": tuple(skipped)}  # fmt: skip
    assert all(part.streams[i] == DEPTH for i in skipped)
    order = [i for i in range(400) if i not in skipped]
    order.insert(order.index(10), 10)  # sent twice
    at = order.index(20)
    order[at], order[at + 1] = 21, 20  # 20 goes out after 21
    assert [frame for _, frame in received] == [part.texts[i] for i in order]
    times = {frame: t for t, frame in reversed(received)}  # first arrival of each frame
    assert times[part.texts[30]] - times[part.texts[29]] >= 0.25
    assert times[part.texts[40]] - times[part.texts[39]] >= 0.25
    (notice,) = notices
    assert orjson.loads(notice) == {
        "stream": "!serverShutdown",
        "data": {"e": "serverShutdown", "E": part.ts_recv[300] // 1_000_000},
    }
    assert injected[7].ts_recv == part.ts_recv[300]
    assert injected[7].index == 300


def test_rest_faults_refuse_then_serve_a_stale_snapshot(tape, tmp_path):
    part = tape.slice(2000, 100)
    schedule = parse_faults(
        {"fault": [
            {"kind": "http_451", "count": 2},
            {"kind": "http_429", "count": 2, "retry_after": 3},
            {"kind": "stale_snapshot"},
        ]},
        "test.toml",
    )  # fmt: skip
    depth = "/api/v3/depth?symbol=BTCUSDT&limit=5"
    with serving(part, speed=None, faults=schedule) as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{server.ws_url}/ws/{TRADE}").close()
        assert refused.value.response.status_code == 451
        answers = [get(server.rest_url + depth) for _ in range(5)]
        kinds = [f.kind for f in server.injected]
    assert [a[0] for a in answers] == [451, 429, 429, 200, 200]
    assert b"Service unavailable from a restricted location" in answers[0][2]
    assert answers[1][1]["Retry-After"] == "3"
    assert orjson.loads(answers[1][2])["code"] == -1003
    first_diff = next(i for i in range(part.start, part.stop) if part.streams[i] == DEPTH)
    first_u = orjson.loads(part.texts[first_diff])["data"]["U"]
    stale, fresh = orjson.loads(answers[3][2]), orjson.loads(answers[4][2])
    assert stale["lastUpdateId"] < first_u <= fresh["lastUpdateId"] + 1
    assert kinds == ["http_451", "http_451", "http_429", "http_429", "stale_snapshot"]


def test_random_faults_are_drawn_from_the_seed(tape):
    def drawn(seed: int) -> list[tuple[str, int]]:
        spec = {
            "kind": "random",
            "kinds": ["duplicate", "reorder"],
            "count": 5,
            "from": 10,
            "to": 90,
        }
        plan = parse_faults({"seed": seed, "fault": [spec]}).plan(tape.slice(0, 100))
        return [(f.kind, f.at) for faults in plan.by_index.values() for f in faults]

    assert drawn(7) == drawn(7) != drawn(8)
    assert len(drawn(7)) == 5
    assert all(10 <= at < 90 for _, at in drawn(7))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[fault]]\nkind = "disconect"\nat = 1',
         r"faults.toml: \[\[fault\]\] #1: kind = 'disconect' is not a fault kind; "
         r"did you mean 'disconnect'\?"),
        ('[[fault]]\nkind = "gap"\nat = 1\ncout = 3',
         r"faults.toml: \[\[fault\]\] #1 \(gap\): unknown key 'cout'; did you mean 'count'\?"),
        ('[[fault]]\nkind = "delay"\n[[fault]]\nkind = "disconnect"\nmode = "rude"',
         r"\[\[fault\]\] #2 \(disconnect\): mode = 'rude'; expected 'clean' or 'abrupt'"),
        ('[[fault]]\nkind = "delay"\nat = -1', r"#1 \(delay\): at must be >= 0, found -1"),
        ('[[fault]]\nkind = "delay"\nms = "fast"',
         r"#1 \(delay\): ms must be an integer, found 'fast'"),
        ('sed = 3', r"faults.toml: unknown top-level key 'sed'; did you mean 'seed'\?"),
        ('[[fault]]\nkind = "random"\nkinds = ["dupliate"]\ncount = 2',
         r"#1 \(random\): kinds must be .* found \['dupliate'\]; did you mean 'duplicate'\?"),
        ("[[fault]\nkind=", r"faults.toml: not valid TOML"),
    ],
)  # fmt: skip
def test_bad_fault_files_name_the_file_fault_and_key(tmp_path, text, message):
    path = tmp_path / "faults.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_faults(path)


def test_faults_that_cannot_fire_on_the_tape_are_refused(tape):
    part = tape.slice(0, 100)
    with pytest.raises(
        ConfigError,
        match=r"#1 \(disconnect\): at = 100 is past the end of the tape \(100 messages\)",
    ):
        parse_faults({"fault": [{"kind": "disconnect", "at": 100}]}, "f.toml").plan(part)
    with pytest.raises(ConfigError, match=r"symbol 'ETHUSDT' is not served; the tape has BTCUSDT"):
        parse_faults({"fault": [{"kind": "gap", "symbol": "ethusdt"}]}, "f.toml").plan(part)
    assert FaultSchedule().plan(part).by_index == {}


# -- the command --------------------------------------------------------------------------------


def test_cli_prints_the_url_serves_and_summarises():
    ticktape = Path(sys.executable).with_name("ticktape")
    command = [str(ticktape), "feed", "serve", BTC, "--speed", "max", "--port", "0",
               "--limit", "1000", "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "feed:"
        assert first[2] == "rest:"
        assert first[1].endswith("/stream")
        with connect(f"{first[1]}?streams={TRADE}") as ws:
            frames, code, _ = drain(ws)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert first[1].removesuffix("/stream").replace("ws://", "http://") == first[3]
    assert code == 1001
    assert len(frames) > 0
    assert out.strip() == (
        f"feed done (end of recording): 1,000 messages, {len(frames)} frames sent, "
        "1 connections, 0 faults injected"
    )


def test_cli_stops_on_sigint_with_a_summary():
    ticktape = Path(sys.executable).with_name("ticktape")
    command = [str(ticktape), "feed", "serve", "--data-dir", str(BUNDLED_DATA)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        with connect(f"{url}?streams={TRADE}") as ws:
            proc.send_signal(signal.SIGINT)
            _, code, reason = drain(ws)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert (code, reason) == (1001, "server closed")
    assert out.startswith("feed done (stopped): ")


def test_cli_reports_a_bad_fault_file_in_one_line(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\nkind = "gap"\nat = 1\ncout = 3\n')
    result = CliRunner().invoke(
        main, ["feed", "serve", BTC, "--faults", str(faults), "--data-dir", str(BUNDLED_DATA)]
    )
    assert result.exit_code == 1
    assert "ConfigError" in result.output
    assert "unknown key 'cout'; did you mean 'count'?" in result.output


def test_cli_serves_the_coinbase_sample_to_a_subscriber():
    command = [str(Path(sys.executable).parent / "ticktape"), "feed", "serve", "--venue",
               "coinbase", "--speed", "max", "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None
        url = server.stdout.readline().split()[1].removesuffix("/stream")
        with connect(url, max_size=1 << 24) as ws:
            request = {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "ticker"}
            ws.send(json.dumps(request))
            received = sum(1 for _ in ws)  # until the server closes: end of recording
        tail = server.stdout.read()
    assert received == 74  # the subscription ack and the 73 BTC-USD ticker envelopes
    assert "end of recording" in tail


def test_a_fast_paced_tape_still_answers_rest_and_control_at_once():
    """At 20x the synthetic tape (frames 50 us apart, each waited for with time.sleep) the
    loop is let go at least every ms: REST and control answers do not wait on the tape."""
    from simulator.feedsim.synthetic import synthetic_tape

    with serving(synthetic_tape(40_000, seed=1), speed=20) as server:
        url = f"{server.ws_url}/stream?streams=btcusdt@trade"
        # close_timeout: a client that stops reading never sees the close answer behind the data
        with connect(url, compression=None, close_timeout=0.2) as ws:
            for _ in range(200):  # the tape is running
                ws.recv()
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{server.rest_url}/api/v3/time", timeout=5) as answer:
                assert b"serverTime" in answer.read()
            rest_s = time.perf_counter() - t0
            ws.send('{"method":"LIST_SUBSCRIPTIONS","id":7}')
            t0 = time.perf_counter()
            while b'"id":7' not in (message := ws.recv(decode=False)):
                assert b'"stream"' in message
            control_s = time.perf_counter() - t0
    assert rest_s < 0.5  # 3.1 s before
    assert control_s < 0.5
