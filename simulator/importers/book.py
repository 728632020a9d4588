"""An L2 order book shared by the importers (Binance, Coinbase): absolute level sizes.

One dict price -> size per side for O(1) replace and remove, plus one ascending price list per
side kept sorted with bisect, so the top N levels are a slice rather than a sort: an update
touches a few levels while the book holds about 1000 a side.
"""

from __future__ import annotations

import os
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Final, Protocol

from simulator.errors import ConfigError

Level = tuple[float, float]
"""(price, quantity)."""

BOOKS: Final = ("native", "python")
BOOK_ENVIRONMENT: Final = "TICKTAPE_BOOK"


class L2Book(Protocol):
    """OrderBook or its compiled twin (`_book.NativeBook`): the same answers."""

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None: ...
    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None: ...
    def set(self, is_bid: bool, price: float, qty: float) -> bool: ...
    def best(self) -> tuple[float | None, float | None]: ...
    def size(self, is_bid: bool, price: float) -> float: ...
    def top(self, levels: int) -> tuple[list[float], list[float], list[float], list[float]]: ...
    def top_row(self, levels: int) -> list[float | None]: ...
    def depth(self) -> tuple[int, int]: ...


class OrderBook:
    """An L2 book; a quantity of 0 removes a level, any other replaces it (absolute, not delta)."""

    __slots__ = ("_ask_prices", "_asks", "_bid_prices", "_bids")

    def __init__(self) -> None:
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._bid_prices: list[float] = []  # ascending: the best bid is last
        self._ask_prices: list[float] = []  # ascending: the best ask is first

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book by a snapshot."""
        self._bids = {price: qty for price, qty in bids if qty != 0.0}
        self._asks = {price: qty for price, qty in asks if qty != 0.0}
        self._bid_prices = sorted(self._bids)
        self._ask_prices = sorted(self._asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply one diff's level changes."""
        for price, qty in bids:
            _set(self._bids, self._bid_prices, price, qty)
        for price, qty in asks:
            _set(self._asks, self._ask_prices, price, qty)

    def set(self, is_bid: bool, price: float, qty: float) -> bool:
        """Set one level; False when it removes a level the book does not hold."""
        if is_bid:
            return _set(self._bids, self._bid_prices, price, qty)
        return _set(self._asks, self._ask_prices, price, qty)

    def best(self) -> tuple[float | None, float | None]:
        """(best bid, best ask) prices; None for an empty side."""
        bid = self._bid_prices[-1] if self._bid_prices else None
        return bid, (self._ask_prices[0] if self._ask_prices else None)

    def size(self, is_bid: bool, price: float) -> float:
        """The size at `price` (0 when the level is empty)."""
        return (self._bids if is_bid else self._asks).get(price, 0.0)

    def top(self, levels: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """(bid prices, bid sizes, ask prices, ask sizes) of the best `levels` levels, best first;
        shorter lists when a side holds fewer levels."""
        bid_px = self._bid_prices[: -levels - 1 : -1]
        ask_px = self._ask_prices[:levels]
        bids, asks = self._bids, self._asks
        return bid_px, [bids[p] for p in bid_px], ask_px, [asks[p] for p in ask_px]

    def top_row(self, levels: int) -> list[float | None]:
        """The best `levels` levels in types.book_columns order; None past a side's last level."""
        bid_px, bid_sz, ask_px, ask_sz = self.top(levels)
        row: list[float | None] = [None] * (4 * levels)
        # per level: bid_px, bid_sz, ask_px, ask_sz; strided slices fill a side in one step
        row[0 : 4 * len(bid_px) : 4] = bid_px
        row[1 : 4 * len(bid_sz) : 4] = bid_sz
        row[2 : 4 * len(ask_px) : 4] = ask_px
        row[3 : 4 * len(ask_sz) : 4] = ask_sz
        return row

    def depth(self) -> tuple[int, int]:
        """Number of (bid, ask) levels held."""
        return len(self._bid_prices), len(self._ask_prices)


def _set(sizes: dict[float, float], prices: list[float], price: float, qty: float) -> bool:
    if qty == 0.0:
        # feeds also remove levels a snapshot never held (beyond its depth): ignored, reported
        if sizes.pop(price, None) is None:
            return False
        del prices[bisect_left(prices, price)]
        return True
    if price not in sizes:
        insort(prices, price)
    sizes[price] = qty
    return True


try:
    from simulator.importers._book import NativeBook
except ImportError:  # not built (no C compiler at install): the Python book runs
    NativeBook = None  # type: ignore[assignment,misc]


def book_kind(kind: str | None = None) -> str:
    """The book to build: `kind` if given, else $TICKTAPE_BOOK, else native when built."""
    wanted = kind if kind is not None else os.environ.get(BOOK_ENVIRONMENT) or None
    if wanted is None:
        return "native" if NativeBook is not None else "python"
    if wanted not in BOOKS:
        raise ConfigError(f"order book {wanted!r} is unknown; expected one of {BOOKS}")
    if wanted == "native" and NativeBook is None:
        raise ConfigError(
            "the compiled order book is not built (it needs a C compiler at install time: "
            f"reinstall with `pip install -e .`), or set {BOOK_ENVIRONMENT}=python"
        )
    return wanted


def new_book(kind: str | None = None) -> L2Book:
    """A live normaliser's book: the compiled one when built (see `book_kind`)."""
    if book_kind(kind) == "native" and NativeBook is not None:
        return NativeBook()
    return OrderBook()


__all__ = ["BOOKS", "BOOK_ENVIRONMENT", "L2Book", "Level", "NativeBook", "OrderBook", "book_kind",
           "new_book"]  # fmt: skip
