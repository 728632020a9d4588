"""Valid venue recordings of any size, written a chunk at a time (tests and benchmarks/).

`write_lobster_pair` writes a LOBSTER message/orderbook CSV pair; `write_binance_recording`
a Binance spot combined-stream recording (bookTicker, trade and diff-depth lines with a
valid update-id chain, plus the REST snapshot). Both are deterministic per seed, keep only
one chunk in memory, and produce books that are never crossed, so every row imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

LOBSTER_STEM: Final = "SYNT_2012-06-21_34200000_57600000"
CHUNK_ROWS: Final = 100_000
EMPTY: Final = 9_999_999_999


def _lobster_times(rng: np.random.Generator, start_ns: int, n: int) -> tuple[pa.Array, int]:
    """Strictly increasing seconds after midnight as '34200.123456789' text."""
    ns = start_ns + np.cumsum(rng.integers(1, 5_000_000, n))
    whole = pa.array(ns // 10**9).cast(pa.string())
    fraction = pc.utf8_lpad(pa.array(ns % 10**9).cast(pa.string()), 9, "0")
    return pc.binary_join_element_wise(whole, fraction, "."), int(ns[-1])


def _lobster_chunk(
    rng: np.random.Generator, n: int, levels: int, mid: int, start_ns: int
) -> tuple[pa.Table, pa.Table, int, int]:
    """One chunk of message and orderbook rows (prices in 1e-4 dollars, 1-cent ticks)."""
    times, end_ns = _lobster_times(rng, start_ns, n)
    mids = mid + np.cumsum(rng.integers(-1, 2, n)) * 100
    half = rng.integers(1, 3, n) * 100
    kind = rng.choice([1, 2, 3, 4, 5, 6, 7], n, p=[0.44, 0.01, 0.35, 0.12, 0.06, 0.01, 0.01])
    direction = np.where(rng.random(n) < 0.5, 1, -1)
    messages = pa.table(
        {
            "time": times,
            "type": kind,
            "order_id": rng.integers(1, 10**8, n),
            "size": rng.integers(1, 500, n),
            "price": np.where(direction > 0, mids - half, mids + half),
            "direction": direction,
        }
    )
    book = {}
    for level in range(levels):
        ask = mids + half + level * 100
        bid = mids - half - level * 100
        gone = rng.random(n) < 0.02 * level  # deeper levels are sometimes empty
        book[f"ask_px_{level + 1}"] = np.where(gone, EMPTY, ask)
        book[f"ask_sz_{level + 1}"] = np.where(gone, 0, rng.integers(1, 900, n))
        book[f"bid_px_{level + 1}"] = np.where(gone, -EMPTY, bid)
        book[f"bid_sz_{level + 1}"] = np.where(gone, 0, rng.integers(1, 900, n))
    return messages, pa.table(book), int(mids[-1]), end_ns


def write_lobster_pair(
    directory: Path, rows: int, *, levels: int = 10, seed: int = 0
) -> tuple[Path, Path]:
    """A LOBSTER pair of `rows` events under `directory`; returns (message, orderbook)."""
    directory.mkdir(parents=True, exist_ok=True)
    message = directory / f"{LOBSTER_STEM}_message_{levels}.csv"
    orderbook = directory / f"{LOBSTER_STEM}_orderbook_{levels}.csv"
    rng = np.random.default_rng(seed)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    mid, ts = 5_850_000, 34_200 * 10**9
    with message.open("wb") as messages_out, orderbook.open("wb") as book_out:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            messages, book, mid, ts = _lobster_chunk(rng, n, levels, mid, ts)
            pacsv.write_csv(messages, messages_out, options)
            pacsv.write_csv(book, book_out, options)
    return message, orderbook


SYMBOL: Final = "SYNTUSDT"
T0_MS: Final = 1_723_075_200_000  # 2024-08-08 00:00:00 UTC
WINDOW: Final = 5
"""Levels per side each depth diff sets; levels that leave the window are sent as 0."""


class _BinanceBook:
    """A book of exactly WINDOW levels per side around a random-walk mid (in cents)."""

    def __init__(self, rng: np.random.Generator, symbol: str, first_update_id: int) -> None:
        self.rng, self.symbol = rng, symbol
        self.mid = 6_000_000
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.update_id = first_update_id

    def move(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Move the mid, reset the window; the (price, size) changes, removals as size 0."""
        self.mid += int(self.rng.integers(-2, 3))
        bids = {self.mid - 1 - i: int(self.rng.integers(1, 5_000)) for i in range(WINDOW)}
        asks = {self.mid + 1 + i: int(self.rng.integers(1, 5_000)) for i in range(WINDOW)}
        bid_changes = [(p, 0) for p in self.bids if p not in bids] + list(bids.items())
        ask_changes = [(p, 0) for p in self.asks if p not in asks] + list(asks.items())
        self.bids, self.asks = bids, asks
        return bid_changes, ask_changes


def _levels(changes: list[tuple[int, int]]) -> str:
    return ",".join(f'["{p / 100:.2f}","{q / 1000:.3f}"]' for p, q in changes)


def _binance_lines(book: _BinanceBook, ts_ns: int, trade_id: int) -> tuple[list[str], int]:
    """One step: a depth diff, then a bookTicker and (often) a trade, each its own line."""
    ms = ts_ns // 1_000_000
    first = book.update_id + 1
    bids, asks = book.move()
    book.update_id = first + int(book.rng.integers(0, 3))
    symbol = book.symbol
    stream = symbol.lower()
    lines = [
        f'{ts_ns} {{"stream":"{stream}@depth@100ms","data":{{"e":"depthUpdate","E":{ms},'
        f'"s":"{symbol}","U":{first},"u":{book.update_id},"b":[{_levels(bids)}],'
        f'"a":[{_levels(asks)}]}}}}'
    ]
    bid, ask = book.mid - 1, book.mid + 1
    lines.append(
        f'{ts_ns + 1_000} {{"stream":"{stream}@bookTicker","data":{{"u":{book.update_id},'
        f'"s":"{symbol}","b":"{bid / 100:.2f}","B":"{book.bids[bid] / 1000:.3f}",'
        f'"a":"{ask / 100:.2f}","A":"{book.asks[ask] / 1000:.3f}"}}}}'
    )
    if book.rng.random() < 0.7:
        trade_id += 1
        maker = "true" if book.rng.random() < 0.5 else "false"
        lines.append(
            f'{ts_ns + 2_000} {{"stream":"{stream}@trade","data":{{"e":"trade","E":{ms},'
            f'"s":"{symbol}","t":{trade_id},"p":"{book.mid / 100:.2f}","q":"0.010",'
            f'"T":{ms},"m":{maker}}}}}'
        )
    return lines, trade_id


def write_binance_recording(
    path: Path, steps: int, *, seed: int = 0, symbols: tuple[str, ...] = (SYMBOL,)
) -> Path:
    """A spot recording of `steps` depth diffs per symbol (plus quotes and trades), symbols
    interleaved step by step, with each symbol's snapshot received after its fourth diff (so
    some diffs are buffered and discarded). Symbol k's update ids start at 1,000 + 10**9 k."""
    rng = np.random.default_rng(seed)
    books = [_BinanceBook(rng, symbol, 1_000 + 10**9 * k) for k, symbol in enumerate(symbols)]
    ts_ns, trade_ids = T0_MS * 1_000_000, [0] * len(books)
    with path.open("w", encoding="utf-8") as out:
        chunk: list[str] = []
        for step in range(steps):
            for k, book in enumerate(books):
                ts_ns += int(rng.integers(1_000_000, 50_000_000))
                lines, trade_ids[k] = _binance_lines(book, ts_ns, trade_ids[k])
                chunk += lines
                if step == 3:  # the REST snapshot of the book as it is now
                    chunk.append(f"{ts_ns + 3_000} {_snapshot_line(book)}")
            if len(chunk) >= 10_000:
                out.write("\n".join(chunk) + "\n")
                chunk = []
        out.write("\n".join(chunk) + "\n" if chunk else "")
    return path


def _snapshot_line(book: _BinanceBook) -> str:
    """The current book as a REST snapshot; its lastUpdateId lies inside the last diff."""
    bids = _levels(sorted(book.bids.items(), reverse=True))
    asks = _levels(sorted(book.asks.items()))
    return f'{{"lastUpdateId":{book.update_id},"bids":[{bids}],"asks":[{asks}]}}'
