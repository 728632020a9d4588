"""A synthetic Binance tape for long runs and CI with no fixtures (LIVE.md 6b, source 3).

A seeded random-walk limit book of one symbol emits, in a fixed repeating pattern, diff
depth updates with a correct U/u chain, bookTickers whose `u` comes from the same id space,
and trades with E/T, all in Binance's combined-stream wire format; the REST stub serves
snapshots from the server's own book as for a recording (the tape starts with one).

The tape is lazy: messages are generated a chunk at a time when the server first reads them
and only the latest chunks are kept, so a tape of any length costs bounded memory. Reading
far backwards regenerates from the start (the server reads forwards).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, overload

import numpy as np
import orjson

from simulator.errors import ConfigError
from simulator.feedsim.tape import FeedTape, TapeSnapshot

CHUNK: Final = 4096
PATTERN: Final = ("depth@100ms", "bookTicker", "trade", "bookTicker", "trade")
"""Stream of message i: PATTERN[i % 5] (a diff every fifth message)."""
START_NS: Final = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
TICK_CENTS: Final = 1  # prices move in 0.01


def _price(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _qty(units: int) -> str:  # units of 1e-5
    return f"{units // 100_000}.{units % 100_000:05d}000"


class _Book:
    """The generator's state: the book (cents -> qty units), the ids, the random walk."""

    def __init__(self, seed: int, levels: int, mid_cents: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.levels = levels
        self.mid = mid_cents
        self.update_id = 1_000
        self.trade_id = 1
        self.bids = {mid_cents - 1 - k: self._size() for k in range(levels)}
        self.asks = {mid_cents + 1 + k: self._size() for k in range(levels)}

    def _size(self) -> int:
        return int(self.rng.integers(1, 200_000))

    def snapshot(self) -> bytes:
        bids = [[_price(p), _qty(q)] for p, q in sorted(self.bids.items(), reverse=True)]
        asks = [[_price(p), _qty(q)] for p, q in sorted(self.asks.items())]
        return orjson.dumps({"lastUpdateId": self.update_id, "bids": bids, "asks": asks})

    def diff(self, symbol: str, ms: int) -> bytes:
        """Move the mid by -1/0/+1 tick, keep `levels` a side around it, resize two levels."""
        self.mid += int(self.rng.integers(-1, 2)) * TICK_CENTS
        changes: list[tuple[str, int, int]] = []
        for side, book, sign in (("b", self.bids, -1), ("a", self.asks, 1)):
            wanted = {self.mid + sign * (1 + k) for k in range(self.levels)}
            changes += [(side, p, 0) for p in sorted(set(book) - wanted)]
            changes += [(side, p, self._size()) for p in sorted(wanted - set(book))]
            for p in sorted(wanted)[:: max(1, self.levels // 2)]:
                changes.append((side, p, self._size()))
        first = self.update_id + 1
        self.update_id += len(changes)
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for side, p, q in changes:
            book = self.bids if side == "b" else self.asks
            if q:
                book[p] = q
            else:
                del book[p]
            (bids if side == "b" else asks).append([_price(p), _qty(q)])
        data = {"e": "depthUpdate", "E": ms, "s": symbol, "U": first, "u": self.update_id,
                "b": bids, "a": asks}  # fmt: skip
        return orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data})

    def ticker(self, symbol: str) -> bytes:
        bid, ask = max(self.bids), min(self.asks)
        data = {"u": self.update_id, "s": symbol, "b": _price(bid), "B": _qty(self.bids[bid]),
                "a": _price(ask), "A": _qty(self.asks[ask])}  # fmt: skip
        return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data})

    def trade(self, symbol: str, ms: int) -> bytes:
        buyer_maker = bool(self.rng.integers(0, 2))
        px = max(self.bids) if buyer_maker else min(self.asks)
        data = {"e": "trade", "E": ms, "s": symbol, "t": self.trade_id, "p": _price(px),
                "q": _qty(int(self.rng.integers(1, 50_000))), "T": ms, "m": buyer_maker,
                "M": True}  # fmt: skip
        self.trade_id += 1
        return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


class _Times(Sequence[int]):
    """ts_recv of message i: evenly spaced at `rate` messages per tape second."""

    def __init__(self, n: int, step_ns: int) -> None:
        self._n, self._step = n, step_ns

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> list[int]: ...
    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        return START_NS + self._step * _index(i, self._n)


class _Streams(Sequence[str]):
    """Stream name of message i, from the pattern (a slice is a lazy view, not a list)."""

    def __init__(self, n: int, symbol: str, offset: int = 0) -> None:
        self._n, self._symbol, self._offset = n, symbol, offset
        self._names = [f"{symbol.lower()}@{stream}" for stream in PATTERN]

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        names, offset = self._names, self._offset
        return (names[(offset + i) % len(PATTERN)] for i in range(self._n))

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> _Streams: ...
    def __getitem__(self, i: int | slice) -> str | _Streams:
        if isinstance(i, slice):
            start, stop, step = i.indices(self._n)
            if step != 1:
                raise IndexError("synthetic tape streams slice with step 1 only")
            return _Streams(max(0, stop - start), self._symbol, self._offset + start)
        return self._names[(self._offset + _index(i, self._n)) % len(PATTERN)]


class SyntheticTexts(Sequence[bytes]):
    """Message texts, generated a chunk at a time in order; the last two chunks are kept."""

    def __init__(self, n: int, symbol: str, seed: int, levels: int, times: _Times) -> None:
        self._n, self._symbol, self._seed, self._levels, self._times = (
            n,
            symbol,
            seed,
            levels,
            times,
        )
        self._chunks: dict[int, list[bytes]] = {}
        self._reset()

    def _reset(self) -> None:
        self.book = _Book(self._seed, self._levels, 6_000_000)
        self.first_snapshot = self.book.snapshot()
        self._next_chunk = 0
        self._chunks.clear()

    def __len__(self) -> int:
        return self._n

    @property
    def chunks_kept(self) -> int:
        """Chunks of generated messages held in memory (2 at most)."""
        return len(self._chunks)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = _index(i, self._n)
        chunk = i // CHUNK
        if chunk not in self._chunks:
            if chunk < self._next_chunk:
                self._reset()
            while self._next_chunk <= chunk:
                self._generate()
        return self._chunks[chunk][i % CHUNK]

    def _generate(self) -> None:
        chunk, book, symbol = self._next_chunk, self.book, self._symbol
        start = chunk * CHUNK
        texts: list[bytes] = []
        for i in range(start, min(start + CHUNK, self._n)):
            kind = i % len(PATTERN)
            ms = self._times[i] // 1_000_000
            if kind == 0:
                texts.append(book.diff(symbol, ms))
            elif PATTERN[kind] == "bookTicker":
                texts.append(book.ticker(symbol))
            else:
                texts.append(book.trade(symbol, ms))
        self._chunks[chunk] = texts
        self._chunks.pop(chunk - 2, None)
        self._next_chunk = chunk + 1


def _index(i: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError(f"synthetic tape index {i} out of range (0..{n - 1})")
    return i % n


def synthetic_tape(
    messages: int, *, symbol: str = "BTCUSDT", seed: int = 0, rate: float = 1_000.0,
    levels: int = 20,
) -> FeedTape:  # fmt: skip
    """A lazy tape of `messages` messages at `rate` messages per tape second."""
    if messages < 1 or rate <= 0 or levels < 1:
        raise ConfigError(
            f"synthetic tape: messages ({messages}) and levels ({levels}) must be >= 1 and "
            f"rate ({rate}) > 0"
        )
    symbol = symbol.upper()
    times = _Times(messages, max(1, round(1e9 / rate)))
    texts = SyntheticTexts(messages, symbol, seed, levels, times)
    snapshot = TapeSnapshot(0, times[0], symbol, texts.book.update_id, texts.first_snapshot)
    return FeedTape(times, _Streams(messages, symbol), texts, (snapshot,), ("synthetic",))


__all__ = ["CHUNK", "PATTERN", "SyntheticTexts", "synthetic_tape"]
