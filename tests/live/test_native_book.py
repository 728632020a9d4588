"""The compiled L2 book gives exactly the Python book's answers: on the bundled recording's
snapshot and every diff, on generated operations, and through the live normaliser."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from orjson import loads

from simulator.errors import ConfigError
from simulator.importers.binance_messages import parse_snapshot
from simulator.importers.book import (
    BOOK_ENVIRONMENT,
    L2Book,
    NativeBook,
    OrderBook,
    book_kind,
    new_book,
)
from simulator.live.frames import Direction
from simulator.live.venues.binance import BinanceNormalizer
from tests.live.test_binance_normalizer import _recorded_frames, _run

needs_native = pytest.mark.skipif(NativeBook is None, reason="the compiled book is not built")


def _bits(values: list[float | None]) -> list[bytes | None]:
    """Exact bits (0.0 and -0.0 differ, as they would in a recorded Parquet file)."""
    return [None if v is None else struct.pack("<d", v) for v in values]


def _same(python: OrderBook, native: L2Book, levels: int) -> None:
    assert _bits(native.top_row(levels)) == _bits(python.top_row(levels))
    assert native.best() == python.best()
    assert native.depth() == python.depth()


@needs_native
def test_both_books_agree_on_every_diff_of_the_bundled_recording():
    python, native = OrderBook(), new_book("native")
    diffs = 0
    for frame in _recorded_frames():
        if frame.direction == Direction.HTTP_RESP:
            snapshot = parse_snapshot(loads(frame.payload))
            python.reset(snapshot.bids, snapshot.asks)
            native.reset(snapshot.bids, snapshot.asks)
        elif frame.stream.endswith("@depth@100ms") and python.depth() != (0, 0):
            data = loads(frame.payload)["data"]
            bids = [(float(p), float(q)) for p, q in data["b"]]
            asks = [(float(p), float(q)) for p, q in data["a"]]
            python.apply(bids, asks)
            native.apply(bids, asks)
            diffs += 1
            _same(python, native, 20)
    assert diffs > 1_000
    _same(python, native, 5_000)  # the whole book
    assert native.top(5_000) == python.top(5_000)


@needs_native
def test_both_books_agree_on_generated_sets_removals_and_resets():
    rng = np.random.default_rng(4)
    python, native = OrderBook(), new_book("native")
    prices = [*np.round(rng.uniform(99.0, 101.0, 300), 2).tolist(), 0.0, -0.0, 1e300]
    for step in range(20_000):
        is_bid, price = bool(rng.integers(0, 2)), float(rng.choice(prices))
        qty = 0.0 if rng.random() < 0.4 else float(rng.integers(0, 5))
        assert native.set(is_bid, price, qty) == python.set(is_bid, price, qty)
        assert native.size(is_bid, price) == python.size(is_bid, price)
        if step % 997 == 0:
            _same(python, native, 50)
        if step % 5_003 == 0:  # a snapshot with repeats and zero sizes, bids best first
            bids = [(p, float(rng.integers(0, 3))) for p in sorted(prices, reverse=True)[:40]]
            asks = [(p, float(rng.integers(0, 3))) for p in prices[:40] + prices[:5]]
            python.reset(bids, asks)
            native.reset(bids, asks)
    _same(python, native, 400)


@needs_native
def test_the_live_normaliser_records_the_same_tables_with_either_book(monkeypatch):
    frames = _recorded_frames()[:6_000]
    tables = {}
    for kind in ("python", "native"):
        monkeypatch.setenv(BOOK_ENVIRONMENT, kind)
        normalizer = BinanceNormalizer("BTCUSDT", depth=True)
        assert type(normalizer.book).__name__ == ("NativeBook" if kind == "native" else "OrderBook")
        tables[kind] = _run(normalizer, frames)
    assert tables["native"]["book"].num_rows > 500
    assert tables["native"] == tables["python"]


def test_the_book_choice_is_checked(monkeypatch):
    monkeypatch.setenv(BOOK_ENVIRONMENT, "fast")
    with pytest.raises(ConfigError, match=r"order book 'fast' is unknown"):
        book_kind()
    monkeypatch.setenv(BOOK_ENVIRONMENT, "python")
    assert type(new_book()) is OrderBook
