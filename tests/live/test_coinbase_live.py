"""Coinbase live mode: the normalizer against the importer on the real recording, its gap and
resync rules, and the feed server speaking Advanced Trade to a real websockets client.

Frames are built from the recording's recv records with their exact receive times, as the
connection manager would stamp them (one connection, consecutive `seq`). No mocks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import orjson
import pyarrow.parquet as pq
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulator.feedsim.coinbase_server import (
    CoinbaseFeedServer,
    CoinbaseRecord,
    load_coinbase_records,
    serving_coinbase,
)
from simulator.feedsim.coinbase_tape import ReplayBooks, envelope
from simulator.importers.coinbase import import_coinbase
from simulator.live.adapter import VenueProfile
from simulator.live.consumed import Consumed
from simulator.live.frames import Direction, Frame, Stamper
from simulator.live.inbox import GAP_DIRECTION
from simulator.live.venues.coinbase import (
    COINBASE_WS_URL,
    MAX_MESSAGE_BYTES,
    CoinbaseNormalizer,
    CoinbaseProfile,
    sequence_num,
    stream_of,
)
from simulator.types import StatusCode, book_columns
from tests.conftest import ORIGINALS

RECORDING = ORIGINALS / "coinbase" / "COINBASE.jsonl.zst"
PRODUCTS = ("BTC-USD", "ETH-USD")
LEVELS = 20
CONN = 1
PROFILE = CoinbaseProfile()
# the importer's figures for this recording (tests/importers/test_coinbase.py pins them too)
EXPECTED_ROWS = {"BTC-USD": (73, 47, 400), "ETH-USD": (87, 32, 375)}


@pytest.fixture(scope="module")
def records() -> list[CoinbaseRecord]:
    return load_coinbase_records(RECORDING)


@pytest.fixture(scope="module")
def frames(records) -> list[Frame]:
    return file_frames(records)


@pytest.fixture(scope="module")
def reference(frames) -> dict[str, tuple[CoinbaseNormalizer, Consumed]]:
    """Every product normalized over the whole recording, all frames handed to each."""
    return {product: normalize(frames, product) for product in PRODUCTS}


def file_frames(records: list[CoinbaseRecord]) -> list[Frame]:
    connect_frame = Frame(0, CONN, records[0].ts_recv - 1, Direction.CONNECT, "", b"wss://x")
    frames = [connect_frame]
    for i, record in enumerate(records, start=1):
        payload = record.payload()
        frames.append(Frame(i, CONN, record.ts_recv, Direction.IN, stream_of(payload), payload))
    return frames


def normalize(
    frames: list[Frame], product: str, normalizer: CoinbaseNormalizer | None = None
) -> tuple[CoinbaseNormalizer, Consumed]:
    normalizer = normalizer or CoinbaseNormalizer(product, depth=True)
    out = Consumed(levels=LEVELS)
    for frame in frames:
        normalizer.on_frame(frame, out)
    return normalizer, out


def renumbered(frames: list[Frame]) -> list[Frame]:
    """Consecutive `seq`: what the reader stamps when a message never reached the socket."""
    return [replace(frame, seq=i) for i, frame in enumerate(frames)]


def codes(out: Consumed) -> list[StatusCode]:
    return [StatusCode(cast(int, row[3])) for row in out.status]


def events(out: Consumed) -> dict[str, list[tuple[object, ...]]]:
    """What the pipeline sees, without receive times and ids local to a connection."""
    return {
        "quotes": [row[:1] + row[2:6] for row in out.quotes],
        "trades": [row[:1] + row[2:6] for row in out.trades],
        "book": [row[:1] + row[2:-2] for row in out.book],
    }


def index_of(frames: list[Frame], stream: str, nth: int) -> int:
    return [i for i, f in enumerate(frames) if f.stream == stream][nth]


# -- the profile ---------------------------------------------------------------------------


def test_stream_names_product_and_channel_without_parsing(records):
    first = {stream_of(r.payload()) for r in records}
    assert first == {
        f"{p}@{c}" for p in PRODUCTS for c in ("level2", "ticker", "market_trades", "candles")
    } | {"heartbeats", "subscriptions"}
    mixed = envelope(
        "market_trades",
        "2026-08-09T21:05:48Z",
        [{"type": "update", "trades": [{"product_id": "BTC-USD"}, {"product_id": "ETH-USD"}]}],
    )
    assert stream_of(mixed[0] + b"7" + mixed[1]) == "*@market_trades"
    assert stream_of(PROFILE.subscribe_messages(["BTC-USD"])[0]) == "subscribe:level2"
    assert stream_of(b'{"type":"error","message":"Failure to subscribe"}') == "error"
    assert stream_of(b"garbage") == ""


def test_profile_subscribes_one_channel_per_message_and_always_heartbeats():
    messages = [orjson.loads(m) for m in PROFILE.subscribe_messages(["btc-usd", "ETH-USD"])]
    assert [m["channel"] for m in messages] == ["level2", "market_trades", "ticker", "heartbeats"]
    assert all(m == {**m, "type": "subscribe", "product_ids": list(PRODUCTS)} for m in messages)
    quotes_only = CoinbaseProfile(channels=("ticker",)).subscribe_messages(["BTC-USD"])
    assert [orjson.loads(m)["channel"] for m in quotes_only] == ["ticker", "heartbeats"]
    resubscribe = [orjson.loads(m) for m in PROFILE.resubscribe_messages(["BTC-USD"])]
    assert [(m["type"], m["channel"]) for m in resubscribe] == [
        ("unsubscribe", "level2"),
        ("subscribe", "level2"),
    ]
    venue: VenueProfile = PROFILE  # mypy checks the Protocol the connection manager takes
    assert venue.name == "coinbase"
    assert PROFILE.stream_url(COINBASE_WS_URL, PRODUCTS) == COINBASE_WS_URL
    assert PROFILE.snapshot_url("https://api.coinbase.com", "BTC-USD") is None
    assert not PROFILE.needs_client_ping
    assert not PROFILE.is_shutdown_notice("heartbeats")
    assert [PROFILE.is_data(s) for s in ("BTC-USD@level2", "BTC-USD@ticker", "heartbeats")] == [
        True,
        True,
        False,
    ]
    assert [PROFILE.conflatable(s) for s in ("BTC-USD@ticker", "*@ticker", "BTC-USD@level2")] == [
        True,
        False,
        False,
    ]


# -- the normalizer on the recording ---------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Path]:
    data_dir = tmp_path_factory.mktemp("data")
    return {r.key.symbol: r.path for r in import_coinbase([RECORDING], data_dir, levels=LEVELS)}


def _importer_rows(path: Path, kind: str, columns: list[str]) -> list[tuple[object, ...]]:
    table = pq.read_table(path / f"{kind}.parquet")
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_normalizer_reproduces_the_importer_sessions(records, reference, imported):
    assert [r.sequence_num for r in records] == list(range(1030))  # gap-free
    times = ["ts_event", "ts_recv"]
    for product in PRODUCTS:
        normalizer, out = reference[product]
        path = imported[product]
        quote_columns = [*times, "bid_px", "bid_sz", "ask_px", "ask_sz"]
        assert [row[:6] for row in out.quotes] == _importer_rows(path, "quotes", quote_columns)
        trade_columns = [*times, "px", "sz", "side", "trade_id"]
        assert [row[:6] for row in out.trades] == _importer_rows(path, "trades", trade_columns)
        book = [*times, *book_columns(LEVELS)]
        assert [row[:-2] for row in out.book] == _importer_rows(path, "book", book)
        assert (len(out.quotes), len(out.trades), len(out.book)) == EXPECTED_ROWS[product]
        assert codes(out) == [StatusCode.CONNECTED, StatusCode.BOOK_SYNCED]
        stats = normalizer.stats
        assert (stats.heartbeats, stats.heartbeat_gaps, stats.silences) == (25, 0, 0)
        assert (stats.gaps, stats.sequence_gaps, stats.malformed, stats.duplicates) == (0, 0, 0, 0)
        assert stats.trades_in_snapshot_excluded == 100
        assert normalizer.synced
        assert not normalizer.needs_resubscribe()


def test_frames_of_other_products_may_be_withheld(frames, reference):
    """Routed as run.py routes (by stream prefix, shared frames to all): the same events, and
    the withheld frames explain the holes in sequence_num."""
    for product in PRODUCTS:
        routed = [f for f in frames if "@" not in f.stream or f.stream.startswith(product + "@")]
        normalizer, out = normalize(routed, product)
        assert out.quotes == reference[product][1].quotes
        assert out.book == reference[product][1].book
        assert normalizer.stats.gaps == 0
        assert normalizer.stats.sequence_holes_routed > 100
    # a message lost on the wire is still seen when its neighbours were routed elsewhere
    lost = index_of(frames, "ETH-USD@level2", 50)
    wire = renumbered(frames[:lost] + frames[lost + 1 :])
    btc = [f for f in wire if "@" not in f.stream or f.stream.startswith("BTC-USD@")]
    normalizer, out = normalize(btc, "BTC-USD")
    assert normalizer.stats.sequence_gaps == 1
    assert codes(out)[-2:] == [StatusCode.GAP, StatusCode.BOOK_RESET]


def test_a_conflated_ticker_is_not_a_gap(frames, reference):
    """The inbox replaced a ticker: its stamp is missing from the frames handed on."""
    dropped = index_of(frames, "BTC-USD@ticker", 10)
    normalizer, out = normalize(frames[:dropped] + frames[dropped + 1 :], "BTC-USD")
    assert normalizer.stats.gaps == 0
    assert normalizer.stats.sequence_holes_routed == 1
    assert len(out.quotes) == len(reference["BTC-USD"][1].quotes) - 1


def test_sequence_jump_resets_the_book_and_the_next_snapshot_resyncs(records, frames, reference):
    lost = index_of(frames, "BTC-USD@level2", 100)
    wire = renumbered(frames[:lost] + frames[lost + 1 :])
    normalizer, out = normalize(wire[: lost + 1], "BTC-USD")  # up to the frame after the hole
    expected = records[lost - 1].sequence_num
    assert codes(out)[-2:] == [StatusCode.GAP, StatusCode.BOOK_RESET]
    reason = f"sequence_num on conn {CONN}: expected {expected}, found {expected + 1}"
    assert out.status[-2][4] == reason
    assert normalizer.needs_resubscribe()
    assert not normalizer.synced
    normalizer.resubscribed()
    # the resubscribe is answered by a snapshot: in place of a later BTC update, the server's
    # book after it (same sequence_num, so no new hole)
    answer = index_of(wire, "BTC-USD@level2", 150)
    record = records[answer]  # wire[answer] is frames[answer + 1], i.e. records[answer]
    assert wire[answer].payload == record.payload()
    books = ReplayBooks()
    for passed in records[: answer + 1]:
        books.apply(passed)
    event = books.snapshot_event("BTC-USD", record.timestamp)
    assert event is not None
    head, tail = envelope("l2_data", record.timestamp, [event])
    snapshot = head + str(record.sequence_num).encode() + tail
    wire[answer] = replace(wire[answer], payload=snapshot)
    rest = Consumed(levels=LEVELS)
    for frame in wire[lost + 1 :]:
        normalizer.on_frame(frame, rest)
    assert codes(rest) == [StatusCode.BOOK_SYNCED]
    assert normalizer.stats.l2_skipped_unsynced == 150 - 100  # BTC updates 100..149 of the wire
    # from the snapshot on, the book rows are the recording's (all but the consumed seq)
    resynced = reference["BTC-USD"][1].book[-len(rest.book) :]
    assert [row[:-1] for row in rest.book] == [row[:-1] for row in resynced]
    assert normalizer.synced
    assert not normalizer.needs_resubscribe()


def test_duplicate_trades_after_a_reconnect_are_dropped(records, frames, reference):
    """A second connection replays trades the first one delivered (a rollover overlap)."""
    trades = [i for i, f in enumerate(frames) if f.stream == "BTC-USD@market_trades"][-5:]
    last = frames[-1]
    again = [Frame(last.seq + 1, 2, last.ts_recv + 1, Direction.CONNECT, "", b"wss://x")]
    for n, i in enumerate(trades, start=2):
        head, tail = records[i - 1].head, records[i - 1].tail
        payload = head + str(n).encode() + tail  # the new connection numbers anew
        ts = last.ts_recv + n
        again.append(replace(frames[i], seq=last.seq + n, conn_id=2, ts_recv=ts, payload=payload))
    normalizer, out = normalize(frames + again, "BTC-USD")
    assert out.trades == reference["BTC-USD"][1].trades
    repeated = sum(len(orjson.loads(frames[i].payload)["events"][0]["trades"]) for i in trades)
    assert normalizer.stats.duplicates == repeated
    assert normalizer.stats.gaps == 0
    assert codes(out)[-1] == StatusCode.CONNECTED


def test_heartbeat_silence_is_a_gap_judged_on_receive_times(frames):
    beat = index_of(frames, "heartbeats", 10)
    head = frames[: beat + 1]
    ts, seq = head[-1].ts_recv, head[-1].seq
    ticks = [
        Frame(seq + k, 0, ts + ms * 1_000_000, Direction.TIMER, "", b"")
        for k, ms in enumerate((2_900, 3_001, 3_500), start=1)
    ]
    normalizer, out = normalize(head + ticks, "BTC-USD")
    assert codes(out)[-2:] == [StatusCode.GAP, StatusCode.BOOK_RESET]
    gaps = [row for row in out.status if row[3] == StatusCode.GAP]
    assert [(row[0] - ts) // 1_000_000 for row in gaps] == [
        3_001
    ]  # once, at the first tick past 3 s
    assert gaps[0][4] == f"no heartbeat on conn {CONN} for 3001 ms"
    assert len(out.timer) == 3
    assert normalizer.stats.silences == 1
    assert normalizer.needs_resubscribe()
    # a counter jump is counted, not declared: sequence_num shows whether data was lost
    record = orjson.loads(frames[beat].payload)
    record["events"][0]["heartbeat_counter"] += 2
    record["sequence_num"] = orjson.loads(frames[beat + 1].payload)["sequence_num"]
    jump = Frame(
        seq + 4, CONN, ts + 3_600_000_000, Direction.IN, "heartbeats", orjson.dumps(record)
    )
    later = Consumed(levels=LEVELS)
    normalizer.on_frame(jump, later)
    assert (normalizer.stats.heartbeat_gaps, normalizer.stats.heartbeats_missed) == (1, 1)
    assert later.status == []


def test_connect_close_timer_and_inbox_gap_markers(frames):
    dropped = index_of(frames, "BTC-USD@level2", 20)
    marker = replace(frames[dropped], direction=GAP_DIRECTION, payload=b"1")
    overflowed = [*frames[:dropped], marker, *frames[dropped + 1 : dropped + 40]]
    last = overflowed[-1]
    tail = [
        Frame(last.seq + 1, 0, last.ts_recv + 1, Direction.TIMER, "", b""),
        Frame(last.seq + 2, CONN, last.ts_recv + 2, Direction.CLOSE, "", b"1001 going away"),
    ]
    btc, btc_out = normalize(overflowed + tail, "BTC-USD")
    _, eth_out = normalize(overflowed + tail, "ETH-USD")
    assert codes(btc_out) == [
        StatusCode.CONNECTED,
        StatusCode.BOOK_SYNCED,
        StatusCode.GAP,
        StatusCode.BOOK_RESET,
        StatusCode.DISCONNECTED,
    ]
    assert btc_out.status[2][4] == "inbox overflow: 1 frame(s) of BTC-USD@level2 dropped"
    assert btc_out.status[-1][4] == "1001 going away"
    assert btc.stats.sequence_gaps == 0  # the marker accounts for the missing number
    # ETH's book was not touched by the loss; it only stops when its connection closes
    assert codes(eth_out) == [
        StatusCode.CONNECTED,
        StatusCode.BOOK_SYNCED,
        StatusCode.DISCONNECTED,
        StatusCode.BOOK_RESET,
    ]
    assert len(btc_out.timer) == len(eth_out.timer) == 1


def test_malformed_frames_are_counted_and_a_broken_level2_frame_is_a_gap(frames):
    snapshot = index_of(frames, "BTC-USD@level2", 0)
    update = frames[snapshot + 1]
    broken = replace(update, stream="BTC-USD@level2", payload=update.payload[:200])
    normalizer, out = normalize([*frames[: snapshot + 1], broken], "BTC-USD")
    assert normalizer.stats.malformed == 1
    assert "frame seq" in normalizer.stats.last_error
    assert codes(out)[-2:] == [StatusCode.GAP, StatusCode.BOOK_RESET]


# -- the feed server -------------------------------------------------------------------------


@dataclass
class Received:
    normalizers: dict[str, CoinbaseNormalizer]
    outs: dict[str, Consumed]
    numbers: list[int]  # sequence_num of every message, in order
    close: tuple[int, str]


async def _consume(url: str, *, resubscribe: bool) -> Received:
    """A real client: subscribe, stamp and normalize every message until the server closes."""
    stamper = Stamper(time.time_ns)
    normalizers = {p: CoinbaseNormalizer(p, depth=True) for p in PRODUCTS}
    outs = {p: Consumed(levels=LEVELS) for p in PRODUCTS}
    numbers: list[int] = []

    def hand(direction: str, stream: str, payload: bytes) -> None:
        frame = stamper.stamp(CONN, direction, stream, payload)
        for product, normalizer in normalizers.items():
            normalizer.on_frame(frame, outs[product])

    async with connect(url, max_size=MAX_MESSAGE_BYTES, compression=None) as ws:
        hand(Direction.CONNECT, "", url.encode())
        for message in PROFILE.subscribe_messages(PRODUCTS):
            hand(Direction.OUT, stream_of(message), message)
            await ws.send(message, text=True)
        try:
            while True:
                payload = await ws.recv(decode=False)
                numbers.append(sequence_num(payload))
                hand(Direction.IN, stream_of(payload), payload)
                for product, normalizer in normalizers.items():
                    if resubscribe and normalizer.needs_resubscribe():
                        normalizer.resubscribed()
                        for message in PROFILE.resubscribe_messages([product]):
                            hand(Direction.OUT, stream_of(message), message)
                            await ws.send(message, text=True)
        except ConnectionClosed as e:
            received = e.rcvd
        close = (received.code, received.reason) if received is not None else (1006, "")
    hand(Direction.CLOSE, "", f"{close[0]} {close[1]}".encode())
    return Received(normalizers, outs, numbers, close)


def test_the_server_serves_what_the_file_holds(records, reference):
    async def run() -> tuple[Received, CoinbaseFeedServer]:
        server = CoinbaseFeedServer(records, speed=None, settle_s=0.05)
        await server.start()
        try:
            got = await _consume(server.ws_url, resubscribe=False)
            await server.wait_done()
        finally:
            await server.close()
        return got, server

    got, server = asyncio.run(run())
    assert got.close == (1001, "end of recording")
    numbers = got.numbers
    assert numbers == list(range(len(numbers)))  # renumbered from 0 on this connection
    assert server.messages == len(records)
    assert server.dropped == 0
    for product in PRODUCTS:
        out = got.outs[product]
        assert events(out) == events(reference[product][1])
        assert codes(out) == [
            StatusCode.CONNECTED,
            StatusCode.BOOK_SYNCED,
            StatusCode.DISCONNECTED,
            StatusCode.BOOK_RESET,
        ]
        assert got.normalizers[product].stats.gaps == 0


def test_a_dropped_envelope_is_a_gap_and_the_resubscribe_resyncs(records, reference):
    with serving_coinbase(records, speed=20.0, drop_sequence_at=100, settle_s=0.05) as server:
        got = asyncio.run(_consume(server.ws_url, resubscribe=True))
        assert server.join(10)
    numbers = got.numbers
    holes = [(a, b) for a, b in itertools.pairwise(numbers) if b != a + 1]
    assert holes == [(99, 101)]
    assert server.dropped == 1
    assert server.snapshots_made == 2  # one per product, answering the resubscribes
    for product in PRODUCTS:
        out, normalizer = got.outs[product], got.normalizers[product]
        assert codes(out)[:5] == [
            StatusCode.CONNECTED,
            StatusCode.BOOK_SYNCED,
            StatusCode.GAP,
            StatusCode.BOOK_RESET,
            StatusCode.BOOK_SYNCED,
        ]
        assert normalizer.stats.sequence_gaps == 1
        assert normalizer.stats.resyncs == 2
        # after the resync the book is the recording's again, to the last row
        assert events(out)["book"][-1] == events(reference[product][1])["book"][-1]


def test_the_server_wants_a_subscribe_within_the_timeout_and_answers_bad_ones(records):
    async def run() -> tuple[tuple[int, str], bytes]:
        server = CoinbaseFeedServer(records, speed=None, subscribe_timeout_s=0.3)
        await server.start()
        try:
            async with connect(server.ws_url) as ws:
                await ws.send('{"type":"subscribe","channels":["level2"]}')
                error = await ws.recv(decode=False)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            return (closed.value.rcvd.code, closed.value.rcvd.reason), error
        finally:
            await server.close()

    close, error = asyncio.run(run())
    assert close == (1008, "no subscribe within 0.3 s")
    assert orjson.loads(error) == {
        "type": "error",
        "message": "one channel per message: use 'channel', not 'channels'",
    }
