"""The feed server's REST side (LIVE.md 1.2, 1.4): its own order book per symbol, advanced as
the tape is sent, and the /api/v3 answers (depth, time, exchangeInfo) with the REST faults.

Server time is tape time: the recorded receive time of the current message, the clock the
frames' event times agree with. Bodies and error codes are Binance's; numbers are decimal
strings with 8 decimals, as Binance writes them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import parse_qs

import orjson

from simulator.feedsim.faults import HTTP_KINDS, Fault
from simulator.feedsim.tape import FeedTape, TapeSnapshot, is_diff_depth, symbol_of
from simulator.importers.binance_book import DepthChain, Verdict
from simulator.importers.book import Level, OrderBook

DEPTH_LIMIT_DEFAULT: Final = 100
DEPTH_LIMIT_MAX: Final = 5000
MAX_PENDING_DIFFS: Final = 10_000  # diffs kept while there is no book (as Nautilus does)
_QUOTES: Final = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
RESTRICTED: Final = (
    b'{"code":0,"msg":"Service unavailable from a restricted location according to '
    b"'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service "
    b'if you believe you received this message in error."}'
)
_BANNED: Final = (
    b'{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until further notice. '
    b'Please use the websocket for live updates to avoid bans."}'
)
_TOO_MANY: Final = (
    b'{"code":-1003,"msg":"Too many requests; current limit of IP(127.0.0.1) is 6000 requests '
    b'per minute. Please use the websocket for live updates to avoid polling the API."}'
)
_NO_SYMBOL: Final = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
_BAD_LIMIT: Final = "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
_NO_BOOK: Final = (  # Binance's words (-1008: retry later), then why this server has no book
    "Server is currently overloaded with other requests. Please try again in a few minutes. "
    "(feed server: no order book yet, and no recorded snapshot as new as the diffs sent)"
)


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def error_reply(status: int, code: int, msg: str) -> HttpReply:
    return HttpReply(status, orjson.dumps({"code": code, "msg": msg}))


def not_found(path: str) -> HttpReply:
    return error_reply(
        404,
        -1,
        f"Not found: {path}; this feed serves /ws, /stream, /api/v3/depth, /api/v3/time "
        "and /api/v3/exchangeInfo",
    )


RecordFault = Callable[..., None]
"""`record(kind, **details)`: log one injected fault at the current tape position."""


class RestApi:
    """The /api/v3 answers at the tape's current position, with the armed REST faults."""

    __slots__ = ("_books", "_depth_streams", "_left", "_record", "_retry_after", "_snapshot_at",
                 "_tape", "index")  # fmt: skip

    def __init__(self, tape: FeedTape, record: RecordFault) -> None:
        self._tape = tape
        self._record = record
        self._books = {
            s: ServedBook([x for x in tape.snapshots if x.symbol == s]) for s in tape.symbols
        }
        self._depth_streams = {s for s in set(tape.streams) if is_diff_depth(s)}
        self._snapshot_at = 0  # the next tape.snapshots entry to reach
        self._left: dict[str, int | None] = dict.fromkeys(HTTP_KINDS, 0)  # None: every request
        self._retry_after = {"http_429": 1, "http_418": 1}
        for index in range(tape.start):  # a slice: the exchange ran before the client joined
            self.advance(index)
        self.index = tape.start  # absolute index of the current message

    def advance(self, index: int) -> None:
        """The tape passed absolute message `index`: move the books (sent or skipped alike)."""
        self.index = index
        snapshots = self._tape.snapshots
        while self._snapshot_at < len(snapshots) and snapshots[self._snapshot_at].index <= index:
            snapshot = snapshots[self._snapshot_at]
            self._books[snapshot.symbol].on_snapshot(snapshot)
            self._snapshot_at += 1
        stream = self._tape.streams[index]
        if stream in self._depth_streams:
            self._books[symbol_of(stream)].on_diff(parse_diff(self._tape.texts[index]))

    def arm(self, fault: Fault) -> None:
        """A REST fault hits the next requests from now on."""
        left = self._left[fault.kind]
        if fault.count is None or left is None:
            self._left[fault.kind] = None
        else:
            self._left[fault.kind] = left + fault.count
        if fault.kind in self._retry_after:
            self._retry_after[fault.kind] = fault.retry_after

    def _take(self, kind: str) -> bool:
        left = self._left[kind]
        if left is not None and left > 0:
            self._left[kind] = left - 1
        return left is None or left > 0

    def refuse_upgrade(self, path: str) -> HttpReply | None:
        """451 for a websocket upgrade while http_451 is armed."""
        if self._take("http_451"):
            self._record("http_451", request=path)
            return HttpReply(451, RESTRICTED)
        return None

    def answer(self, path: str, query: str) -> HttpReply:
        if path == "/api/v3/time":
            return HttpReply(200, orjson.dumps({"serverTime": self.server_time_ms()}))
        if path == "/api/v3/exchangeInfo":
            first = {s: next((x for x in self._tape.snapshots if x.symbol == s), None)
                     for s in self._tape.symbols}  # fmt: skip
            return HttpReply(200, exchange_info(first, self.server_time_ms()))
        if path == "/api/v3/depth":
            return self._depth(parse_qs(query))
        return not_found(path)

    def server_time_ms(self) -> int:
        return self._tape.ts_recv[self.index] // 1_000_000

    def _depth(self, query: dict[str, list[str]]) -> HttpReply:
        refused = self._refuse_depth()
        if refused is not None:
            return refused
        symbol = query.get("symbol", [""])[0].upper()
        if not symbol:
            return error_reply(400, -1102, _NO_SYMBOL)
        if symbol not in self._books:
            return error_reply(400, -1121, "Invalid symbol.")
        limit_text = query.get("limit", [str(DEPTH_LIMIT_DEFAULT)])[0]
        if not limit_text.isdigit() or int(limit_text) < 1:
            return error_reply(400, -1100, _BAD_LIMIT)
        limit = min(int(limit_text), DEPTH_LIMIT_MAX)  # Binance caps it too
        book = self._books[symbol]
        if self._take("stale_snapshot"):
            stale_id = self._first_diff_id(symbol) - 1
            self._record("stale_snapshot", symbol=symbol, last_update_id=stale_id)
            return HttpReply(200, book.stale(limit, stale_id))
        body = book.depth(limit)
        return error_reply(503, -1008, _NO_BOOK) if body is None else HttpReply(200, body)

    def _refuse_depth(self) -> HttpReply | None:
        if self._take("http_451"):
            self._record("http_451", request="/api/v3/depth")
            return HttpReply(451, RESTRICTED)
        for kind, status, body in (("http_418", 418, _BANNED), ("http_429", 429, _TOO_MANY)):
            if self._take(kind):
                retry_after = self._retry_after[kind]
                self._record(kind, retry_after=retry_after)
                return HttpReply(status, body, (("Retry-After", str(retry_after)),))
        return None

    def _first_diff_id(self, symbol: str) -> int:
        """U of the symbol's first served diff: below every diff a client can have buffered."""
        tape = self._tape
        for index in range(tape.start, tape.stop):
            stream = tape.streams[index]
            if stream in self._depth_streams and symbol_of(stream) == symbol:
                return parse_diff(tape.texts[index]).first_id
        return 1


class Diff(NamedTuple):
    first_id: int  # U
    last_id: int  # u
    bids: list[Level]
    asks: list[Level]


def parse_diff(text: bytes) -> Diff:
    data = orjson.loads(text)["data"]
    return Diff(int(data["U"]), int(data["u"]), _levels(data["b"]), _levels(data["a"]))


def _levels(rows: Iterable[list[str]]) -> list[Level]:
    return [(float(px), float(qty)) for px, qty in rows]


class ServedBook:
    """The server's own book of one symbol, advanced as the tape is sent (LIVE.md 1.4).

    It starts at a recorded snapshot when the tape reaches it: the diffs sent before it are
    replayed through DepthChain, so those with u <= lastUpdateId are discarded. Once in sync
    the book is the truth and later recorded snapshots are ignored; after a gap in the
    recording it waits for the next one.
    """

    __slots__ = ("_book", "_chain", "_pending", "_upcoming", "gaps", "last_first_id")

    def __init__(self, snapshots: Sequence[TapeSnapshot]) -> None:
        self._book = OrderBook()
        self._chain: DepthChain | None = None
        self._pending: deque[Diff] = deque(maxlen=MAX_PENDING_DIFFS)
        self._upcoming = deque(snapshots)  # recorded snapshots the tape has not reached
        self.gaps = 0
        self.last_first_id: int | None = None  # U of the last diff sent

    def on_snapshot(self, snapshot: TapeSnapshot) -> None:
        """The tape reached a recorded snapshot of this symbol."""
        if self._upcoming and self._upcoming[0] is snapshot:
            self._upcoming.popleft()
        if self._chain is not None:
            return
        data = orjson.loads(snapshot.text)
        self._book.reset(_levels(data["bids"]), _levels(data["asks"]))
        self._chain = DepthChain(snapshot.last_update_id, futures=False)
        pending = list(self._pending)
        self._pending.clear()
        for diff in pending:
            self._apply(diff)

    def on_diff(self, diff: Diff) -> None:
        self.last_first_id = diff.first_id
        self._apply(diff)

    def _apply(self, diff: Diff) -> None:
        if self._chain is None:
            self._pending.append(diff)
            return
        verdict = self._chain.admit(diff.first_id, diff.last_id, None)
        if verdict is Verdict.APPLY:
            self._book.apply(diff.bids, diff.asks)
        elif verdict is Verdict.GAP:
            self.gaps += 1
            self._chain = None
            self._pending.append(diff)

    def depth(self, limit: int) -> bytes | None:
        """The /api/v3/depth body at the current send position, None when there is no book.

        In sync: the book, lastUpdateId = the u of the last diff applied. Before the tape
        reaches the next recorded snapshot, that snapshot answers as long as its lastUpdateId
        >= the U of the last diff sent: every client's first buffered diff then has U <=
        lastUpdateId, so LIVE.md 1.4 accepts it (a snapshot ahead of the stream is fine, the
        client discards the diffs it covers). Otherwise it is older than what was sent and no
        honest answer exists: None (the server answers 503).
        """
        if self._chain is not None:
            return depth_body(self._chain.book_id, *self._book.top(limit))
        if self._upcoming:
            snapshot = self._upcoming[0]
            if self.last_first_id is None or snapshot.last_update_id >= self.last_first_id:
                return recorded_depth(snapshot, limit)
        return None

    def stale(self, limit: int, last_update_id: int) -> bytes:
        """An old snapshot: today's levels under a lastUpdateId below every diff sent."""
        if self._chain is None and self._upcoming:
            data = orjson.loads(self._upcoming[0].text)
            bids, asks = _levels(data["bids"])[:limit], _levels(data["asks"])[:limit]
            return _depth_levels(last_update_id, bids, asks)
        return depth_body(last_update_id, *self._book.top(limit))


def recorded_depth(snapshot: TapeSnapshot, limit: int) -> bytes:
    data = orjson.loads(snapshot.text)
    return _depth_levels(snapshot.last_update_id, data["bids"][:limit], data["asks"][:limit])


def depth_body(
    last_update_id: int,
    bid_px: list[float],
    bid_sz: list[float],
    ask_px: list[float],
    ask_sz: list[float],
) -> bytes:
    return _depth_levels(
        last_update_id,
        list(zip(bid_px, bid_sz, strict=True)),
        list(zip(ask_px, ask_sz, strict=True)),
    )


def _depth_levels(
    last_update_id: int,
    bids: Sequence[Sequence[float | str]],
    asks: Sequence[Sequence[float | str]],
) -> bytes:
    return orjson.dumps(
        {"lastUpdateId": last_update_id, "bids": _decimals(bids), "asks": _decimals(asks)}
    )


def _decimals(levels: Sequence[Sequence[float | str]]) -> list[list[str]]:
    # Binance writes 8 decimals ("61837.63000000"); recorded strings pass through unchanged
    return [[v if isinstance(v, str) else f"{v:.8f}" for v in level] for level in levels]


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) by the longest known quote-asset suffix: BTCUSDT -> (BTC, USDT)."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def _step(values: Iterable[str]) -> str:
    """The smallest increment the decimal strings use: ["1.50", "2.25"] -> "0.01000000"."""
    places = max((len(v.partition(".")[2].rstrip("0")) for v in values), default=8)
    return f"{10.0 ** -min(places, 8):.8f}"


# Binance spot's minimum order value for the major pairs (5 USDT), as the venue states it
_NOTIONAL_FILTER: Final = {
    "filterType": "NOTIONAL",
    "minNotional": "5.00000000",
    "applyMinToMarket": True,
    "maxNotional": "9000000.00000000",
    "applyMaxToMarket": False,
    "avgPriceMins": 5,
}


def exchange_info(snapshots: dict[str, TapeSnapshot | None], server_time_ms: int) -> bytes:
    """A minimal /api/v3/exchangeInfo: the served symbols with price and lot filters whose
    steps are read off the recorded snapshot's decimals, and Binance's 5 USDT minimum notional."""
    symbols = []
    for symbol, snapshot in sorted(snapshots.items()):
        data = orjson.loads(snapshot.text) if snapshot is not None else {"bids": [], "asks": []}
        levels = data["bids"] + data["asks"]
        base, quote = split_symbol(symbol)
        symbols.append(
            {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": base,
                "quoteAsset": quote,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": _step(p for p, _ in levels),
                        "maxPrice": "1000000.00000000",
                        "tickSize": _step(p for p, _ in levels),
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": _step(q for _, q in levels),
                        "maxQty": "9000.00000000",
                        "stepSize": _step(q for _, q in levels),
                    },
                    _NOTIONAL_FILTER,
                ],
            }
        )
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": server_time_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }
    )
