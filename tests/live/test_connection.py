"""The websocket connection manager against a real websockets server on 127.0.0.1.

`FakeVenue` is a small Binance-shaped feed: one publisher counting up every `period` seconds,
sent to every connection from the moment it connects (like a real venue, so a rollover can be
checked for holes), with a per-connection plan (stream, close, abort, go silent, send
`!serverShutdown`) and a REST stub answering from a script (200/429/451/503).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from simulator.clock import WallClock
from simulator.errors import ConfigError, FeedError
from simulator.live.adapter import VenueProfile
from simulator.live.connection import FeedConnection
from simulator.live.frames import Direction, Frame, Stamper
from simulator.live.keepalive import Backoff, ConnectionConfig, ConnectLimiter
from simulator.live.network import LiveNetwork
from simulator.live.venues.binance import BinanceProfile

SNAPSHOT = '{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[]}'
SHUTDOWN = '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
SUBSCRIBE = b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}'
DEPTH_PATH = "/api/v3/depth?symbol=BTCUSDT&limit=1000"


def message(n: int) -> str:
    trade = {"e": "trade", "s": "BTCUSDT", "t": n, "p": "1.5"}
    return json.dumps({"stream": "btcusdt@trade", "data": trade}, separators=(",", ":"))


def counter(frame: Frame) -> int:
    return int(json.loads(frame.payload)["data"]["t"])


@dataclass
class Plan:
    """One connection: send `send` messages (None: without end), then `end` it: "stay" open
    and streaming, "close" (1001), "abort" the TCP connection, or go "silent"."""

    send: int | None = None
    end: str = "stay"
    shutdown_after: int | None = None  # send !serverShutdown after this many messages
    lag: int = 0  # messages this connection runs behind the publisher (a slower server)


@dataclass
class FakeVenue:
    plans: list[Plan] = field(default_factory=list)
    rest: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    period: float = 0.002
    ping_interval: float | None = None
    ws_status: int | None = None  # reject every websocket upgrade with this status
    sent: list[list[str]] = field(default_factory=list)  # per connection
    received: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    rest_paths: list[str] = field(default_factory=list)
    connect_times: list[float] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    url: str = ""
    rest_url: str = ""

    def now_n(self) -> int:
        return int((time.monotonic() - self._t0) / self.period)

    async def __aenter__(self) -> FakeVenue:
        self._t0 = time.monotonic()
        self._plans = deque(self.plans)
        self._rest = deque(self.rest)
        self._server = await serve(
            self.handle,
            "127.0.0.1",
            0,
            process_request=self.process_request,
            ping_interval=self.ping_interval,
            compression=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url, self.rest_url = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/api/"):
            self.rest_paths.append(request.path)
            status, headers, body = self._rest.popleft() if self._rest else (200, {}, SNAPSHOT)
            response = conn.respond(status, body)
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if self.ws_status is not None:
            return conn.respond(self.ws_status, "Service unavailable from a restricted location")
        self.paths.append(request.path)
        self.connect_times.append(time.monotonic())
        return None

    async def handle(self, ws: ServerConnection) -> None:
        plan = self._plans.popleft() if self._plans else Plan()
        sent: list[str] = []
        self.sent.append(sent)
        listener = asyncio.get_running_loop().create_task(self.listen(ws))
        try:
            await self.stream(ws, plan, sent)
            if plan.end == "close":
                await ws.close(1001, "going away")
            elif plan.end == "abort":
                ws.transport.abort()
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            listener.cancel()
            self.close_codes.append(ws.close_code)

    async def stream(self, ws: ServerConnection, plan: Plan, sent: list[str]) -> None:
        cursor = self.now_n()  # a new connection starts at "now", like a real venue
        while plan.send is None or len(sent) < plan.send:
            while cursor < self.now_n() - plan.lag and (plan.send is None or len(sent) < plan.send):
                sent.append(message(cursor))
                await ws.send(sent[-1])
                cursor += 1
                if len(sent) == plan.shutdown_after:
                    await ws.send(SHUTDOWN)
            await asyncio.sleep(self.period)

    async def listen(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                self.received.append(str(text))
                if "SUBSCRIBE" in str(text):
                    await ws.send('{"result":null,"id":1}')


class SubscribingProfile(BinanceProfile):
    """A venue that subscribes by message after connecting (as Coinbase does)."""

    def subscribe_messages(self, symbols: Any) -> list[bytes]:
        return [SUBSCRIBE]


def feed_args(
    venue: FakeVenue,
    frames: list[Frame],
    profile: VenueProfile | None = None,
    sink: Callable[[Frame], None] | None = None,
    **overrides: Any,
) -> tuple[Any, ...]:
    """FeedConnection's (and LiveNetwork's) arguments: fast timers, the fake venue's URLs."""
    settings: dict[str, Any] = {
        "connect_interval_s": 0.001,
        "backoff_initial_s": 0.01,
        "backoff_cap_s": 0.05,
        "snapshot_backoff_initial_s": 0.01,
        **overrides,
    }
    config = ConnectionConfig(
        url=venue.url, rest_url=venue.rest_url, symbols=("BTCUSDT",), **settings
    )
    profile = profile or BinanceProfile(streams=("trade",))
    stamper = Stamper(WallClock.wall_ns)
    return profile, config, stamper, sink or frames.append, WallClock.wall_ns


def make_feed(venue: FakeVenue, frames: list[Frame], **options: Any) -> FeedConnection:
    return FeedConnection(*feed_args(venue, frames, **options))


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(feed: FeedConnection) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        yield task
    finally:
        feed.stop()
        await asyncio.wait_for(task, 5)


def scenario(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def data(frames: list[Frame], conn_id: int | None = None) -> list[Frame]:
    return [
        f
        for f in frames
        if f.direction == Direction.IN
        and f.stream == "btcusdt@trade"
        and conn_id in (None, f.conn_id)
    ]


def of(frames: list[Frame], direction: str) -> list[Frame]:
    return [f for f in frames if f.direction == direction]


def assert_no_hole(frames: list[Frame]) -> None:
    seen = {counter(f) for f in data(frames)}
    assert seen == set(range(min(seen), max(seen) + 1))


# -- pure parts --------------------------------------------------------------------------------


def test_binance_profile_names_streams_snapshot_and_notices():
    profile: VenueProfile = BinanceProfile()
    assert profile.stream_url("wss://stream.binance.com:9443/", ["BTCUSDT", "ethusdt"]) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@bookTicker/btcusdt@trade/"
        "btcusdt@depth@100ms/ethusdt@bookTicker/ethusdt@trade/ethusdt@depth@100ms"
    )
    assert BinanceProfile(streams=("trade",), time_unit="MICROSECOND").stream_url(
        "wss://x", ["BTCUSDT"]
    ) == ("wss://x/stream?streams=btcusdt@trade&timeUnit=MICROSECOND")
    assert profile.snapshot_url("https://api.binance.com", "btcusdt") == (
        "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
    )
    assert profile.subscribe_messages(["BTCUSDT"]) == []
    assert profile.stream_of(message(1).encode()) == "btcusdt@trade"
    assert profile.stream_of(b'{"result":null,"id":1}') == ""
    assert profile.is_data("btcusdt@depth@100ms")
    assert not profile.is_data("")
    assert not profile.is_data("!serverShutdown")
    assert profile.is_shutdown_notice(profile.stream_of(SHUTDOWN.encode()))
    assert profile.name == "binance"
    assert profile.needs_client_ping is False
    with pytest.raises(ConfigError, match="1024"):
        profile.stream_url("wss://x", [f"s{i}" for i in range(342)])


def test_connection_config_rejects_bad_values():
    with pytest.raises(ConfigError, match=r"^url must start with ws:// or wss://, was 'http://x'"):
        ConnectionConfig(url="http://x", rest_url="https://x", symbols=("BTCUSDT",))
    with pytest.raises(ConfigError, match=r"^idle_timeout_s must be > 0, was 0"):
        ConnectionConfig(url="ws://x", rest_url="http://x", symbols=("A",), idle_timeout_s=0)


def test_backoff_is_capped_jittered_and_seeded():
    backoff = Backoff(0.5, 2.0, 30.0, 0.25, np.random.default_rng(7))
    delays = [backoff.next_delay() for _ in range(12)]
    bases = [min(30.0, 0.5 * 2**n) for n in range(12)]
    rng = np.random.default_rng(7)
    assert delays == [min(30.0, b * (1 + rng.uniform(-0.25, 0.25))) for b in bases]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.75 <= delay <= min(30.0, base * 1.25)
    assert backoff.attempts == 12
    backoff.reset()
    assert 0.375 <= backoff.next_delay() <= 0.625


def test_connect_limiter_allows_one_attempt_per_interval():
    now = [100.0]
    limiter = ConnectLimiter(1.0, now=lambda: now[0])
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == 1.0  # the next free slot is a second later
    now[0] = 100.5
    assert limiter.reserve() == 1.5
    now[0] = 110.0
    assert limiter.reserve() == 0.0


# -- against the fake venue ----------------------------------------------------------------------


def test_frames_are_stamped_in_order_byte_exact_with_connect_out_and_close():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(plans=[Plan(send=30, end="close"), Plan()]) as venue:
            feed = make_feed(venue, frames, profile=SubscribingProfile(streams=("trade",)))
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 10)
        assert venue.paths[0] == "/stream?streams=btcusdt@trade"
        assert venue.received[:2] == [SUBSCRIBE.decode()] * 2
        assert venue.close_codes[-1] == 1000
        return venue, feed

    venue, feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(a.ts_recv < b.ts_recv for a, b in itertools.pairwise(frames))
    first = frames[0]
    assert (first.direction, first.conn_id, first.payload) == ("connect", 1, feed.url.encode())
    assert (frames[1].direction, frames[1].payload) == ("out", SUBSCRIBE)
    assert [f.payload for f in data(frames, conn_id=1)] == [s.encode() for s in venue.sent[0]]
    replies = [f for f in frames if f.direction == "in" and f.stream == ""]
    assert replies[0].payload == b'{"result":null,"id":1}'
    closes = of(frames, "close")
    assert [(f.conn_id, f.payload) for f in closes] == [(1, b"1001 going away"), (2, b"1000 stop")]
    assert frames[-1] is closes[-1]
    assert [f.conn_id for f in of(frames, "connect")] == [1, 2]
    stats = feed.stats
    assert (stats.connects, stats.reconnects, stats.rollovers) == (2, 1, 0)
    assert stats.frames == len(of(frames, "in"))
    assert stats.data_frames == len(data(frames))
    assert stats.bytes_in == sum(len(f.payload) for f in of(frames, "in"))
    assert stats.last_close_code == 1000


def test_abrupt_close_reconnects_after_seeded_backoff_within_cap():
    frames: list[Frame] = []
    settings: dict[str, Any] = {"backoff_initial_s": 0.02, "backoff_cap_s": 0.1, "seed": 11}

    async def main():
        plans = [Plan(send=1, end="abort")] * 5 + [Plan()]
        async with FakeVenue(plans=plans) as venue:
            feed = make_feed(venue, frames, **settings)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=6)) >= 3)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    reference = Backoff(0.02, 2.0, 0.1, 0.25, np.random.default_rng(11))
    assert list(feed.recent_delays) == [reference.next_delay() for _ in range(5)]
    for n, delay in enumerate(feed.recent_delays):
        base = min(0.1, 0.02 * 2**n)
        assert base * 0.75 <= delay <= min(0.1, base * 1.25)
    assert (feed.stats.connects, feed.stats.reconnects) == (6, 5)
    assert [f.payload for f in of(frames, "close")[:5]] == [b"1006 "] * 5
    assert feed.stats.backoff_s == 0.0


def test_connect_attempts_are_spaced_by_the_limiter():
    frames: list[Frame] = []

    async def main():
        plans = [Plan(send=0, end="abort")] * 4 + [Plan()]
        async with FakeVenue(plans=plans) as venue:
            feed = make_feed(
                venue, frames, connect_interval_s=0.15, backoff_initial_s=0.001, backoff_cap_s=0.001
            )
            async with running(feed):
                await wait_until(lambda: feed.stats.connects == 5)
        return venue

    venue = asyncio.run(asyncio.wait_for(main(), 20))
    gaps = [b - a for a, b in itertools.pairwise(venue.connect_times)]
    assert len(gaps) == 4
    assert min(gaps) >= 0.12  # 0.15 s apart; backoff alone would have allowed 1 ms


def test_idle_feed_reconnects_while_server_pings_keep_the_peer_alive():
    frames: list[Frame] = []

    async def main():
        plans = [Plan(send=3, end="silent"), Plan()]
        async with FakeVenue(plans=plans, ping_interval=0.05) as venue:
            # dead-peer below idle: only the server's pings keep the first connection "alive"
            feed = make_feed(venue, frames, idle_timeout_s=0.4, dead_peer_timeout_s=0.3)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 3)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert (feed.stats.idle_timeouts, feed.stats.dead_peer_timeouts) == (1, 0)
    assert of(frames, "close")[0].payload == b"1000 idle timeout"
    assert feed.stats.reconnects == 1


def test_dead_peer_is_dropped_and_replaced():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(plans=[Plan(send=3, end="silent"), Plan()]) as venue:
            feed = make_feed(venue, frames, idle_timeout_s=5.0, dead_peer_timeout_s=0.3)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 3)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert (feed.stats.dead_peer_timeouts, feed.stats.idle_timeouts) == (1, 0)
    assert of(frames, "close")[0].payload == b"1006 dead-peer timeout"


def assert_clean_switch(frames: list[Frame]) -> None:
    """Conn 2 takes over at its first data frame; conn 1 hands on nothing after it."""
    switch = frames.index(data(frames, conn_id=2)[0])
    assert [f.direction for f in frames[:switch] if f.conn_id == 2] == ["connect"]
    assert [f for f in frames[switch:] if f.conn_id == 1 and f.direction == "in"] == []
    close = next(f for f in frames if f.direction == "close" and f.conn_id == 1)
    assert close.payload == b"1000 rollover"
    assert frames.index(close) > switch
    assert_no_hole(frames)


def test_rollover_at_max_lifetime_switches_without_a_hole():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue() as venue:
            feed = make_feed(venue, frames, max_lifetime_s=2.0)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 100, timeout=8)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert (feed.stats.rollovers, feed.stats.reconnects, feed.stats.connects) == (1, 0, 2)
    assert feed.stats.conn_id == 2
    assert_clean_switch(frames)


def test_server_shutdown_notice_switches_at_once():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(plans=[Plan(shutdown_after=30), Plan()]) as venue:
            feed = make_feed(venue, frames)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 50)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert (feed.stats.shutdown_notices, feed.stats.rollovers, feed.stats.reconnects) == (1, 1, 0)
    notices = [f for f in frames if f.stream == "!serverShutdown"]
    assert [f.conn_id for f in notices] == [1]
    assert_clean_switch(frames)


def test_rollover_to_a_lagging_connection_overlaps_without_a_hole():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(plans=[Plan(shutdown_after=30), Plan(lag=25)]) as venue:
            feed = make_feed(venue, frames)
            async with running(feed):
                await wait_until(lambda: len(data(frames, conn_id=2)) >= 50)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert (feed.stats.rollovers, feed.stats.reconnects) == (1, 0)
    assert_clean_switch(frames)
    counters = [counter(f) for f in data(frames)]
    assert len(counters) > len(set(counters))  # the overlap: the normalizer de-duplicates it


def test_snapshot_waits_out_429_then_hands_on_the_body():
    frames: list[Frame] = []

    async def main():
        rest = [(429, {"Retry-After": "1"}, "Too many requests"), (200, {}, SNAPSHOT)]
        async with FakeVenue(rest=rest) as venue:
            feed = make_feed(venue, frames)
            async with running(feed):
                await wait_until(lambda: feed.stats.conn_id == 1)
                feed.request_snapshot("BTCUSDT")
                await wait_until(lambda: feed.stats.snapshots == 1)
        assert venue.rest_paths == [DEPTH_PATH] * 2
        return venue, feed

    venue, feed = asyncio.run(asyncio.wait_for(main(), 20))
    url = (venue.rest_url + DEPTH_PATH).encode()
    requests, responses = of(frames, "http_req"), of(frames, "http_resp")
    assert [(f.stream, f.payload, f.conn_id) for f in requests] == [
        ("btcusdt@snapshot", url, 1)
    ] * 2
    assert [(f.stream, f.payload) for f in responses] == [("btcusdt@snapshot", SNAPSHOT.encode())]
    assert requests[1].ts_recv - requests[0].ts_recv >= 0.9e9  # Retry-After: 1 honoured
    assert (feed.stats.rest_requests, feed.stats.rest_429) == (2, 1)


def test_newer_snapshot_request_supersedes_one_in_flight():
    frames: list[Frame] = []

    async def main():
        rest = [(429, {"Retry-After": "0.3"}, "Too many requests"), (200, {}, SNAPSHOT)]
        async with FakeVenue(rest=rest) as venue:
            feed = make_feed(venue, frames)
            async with running(feed):
                await wait_until(lambda: feed.stats.conn_id == 1)
                feed.request_snapshot("BTCUSDT")
                await wait_until(lambda: feed.stats.rest_429 == 1)
                feed.request_snapshot("BTCUSDT")
                await wait_until(lambda: feed.stats.snapshots_superseded == 1)
                await wait_until(lambda: feed.stats.snapshots == 1)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert len(of(frames, "http_resp")) == 1
    assert feed.stats.rest_requests == 2


def test_snapshot_gives_up_after_five_tries_with_an_empty_response():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(rest=[(503, {}, "busy")] * 5) as venue:
            feed = make_feed(venue, frames)
            async with running(feed):
                feed.request_snapshot("BTCUSDT")  # before the loop runs: queued
                await wait_until(lambda: feed.stats.snapshot_failures == 1)
        return feed

    feed = asyncio.run(asyncio.wait_for(main(), 20))
    assert len(of(frames, "http_req")) == 5
    assert [f.payload for f in of(frames, "http_resp")] == [b""]
    assert feed.stats.last_error.startswith("HTTP 503 from http://127.0.0.1:")


BINANCE_US_HINT = r"--url wss://stream\.binance\.us:9443 --rest-url https://api\.binance\.us$"


def test_451_on_the_upgrade_is_a_feed_error_with_the_binance_us_hint():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(ws_status=451) as venue:
            network = LiveNetwork(*feed_args(venue, frames))
            network.start()
            await wait_until(lambda: not network.running)
            return network

    network = asyncio.run(asyncio.wait_for(main(), 20))
    with pytest.raises(FeedError, match=r"answered HTTP 451: binance refuses .*" + BINANCE_US_HINT):
        network.stop()
    with pytest.raises(FeedError):
        network.check()
    assert frames == []
    assert network.stats.connects == 0


def test_451_on_rest_is_fatal_and_the_feed_still_closes_cleanly():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue(rest=[(451, {}, "restricted")]) as venue:
            feed = make_feed(venue, frames)
            task = asyncio.get_running_loop().create_task(feed.run())
            await wait_until(lambda: feed.stats.conn_id == 1)
            feed.request_snapshot("BTCUSDT")
            with pytest.raises(FeedError, match=BINANCE_US_HINT):
                await asyncio.wait_for(task, 5)
        assert venue.close_codes == [1000]

    scenario(main())
    assert frames[-1].payload == b"1000 stop"


def test_a_sink_error_stops_the_feed_and_is_raised():
    class Full(Exception):
        pass

    frames: list[Frame] = []

    def sink(frame: Frame) -> None:
        if len(frames) == 5:
            raise Full("inbox full")
        frames.append(frame)

    async def main():
        async with FakeVenue() as venue:
            feed = make_feed(venue, frames, sink=sink)
            with pytest.raises(Full):
                await asyncio.wait_for(feed.run(), 5)
        assert venue.close_codes == [1000]

    scenario(main())


def test_live_network_stop_closes_with_1000_from_another_thread():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue() as venue:
            network = LiveNetwork(*feed_args(venue, frames))
            network.start()
            await wait_until(lambda: len(data(frames)) >= 20)
            network.check()  # nothing wrong so far
            await asyncio.to_thread(network.stop, 5.0)
            assert not network.running
        assert venue.close_codes == [1000]

    scenario(main())
    assert frames[-1].direction == "close"
    assert frames[-1].payload == b"1000 stop"
    assert [t.name for t in threading.enumerate() if t.name.startswith("ticktape")] == []


def test_stop_before_run_returns_without_connecting():
    frames: list[Frame] = []

    async def main():
        async with FakeVenue() as venue:
            feed = make_feed(venue, frames)
            feed.stop()
            await asyncio.wait_for(feed.run(), 5)
        assert venue.paths == []

    scenario(main())
    assert frames == []
