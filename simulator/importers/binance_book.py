"""A Binance local order book: REST snapshot + diff-depth messages -> L2 book (LIVE.md 1.4).

`OrderBook` holds one dict price -> quantity per side for O(1) replace and remove, plus one
ascending price list per side kept sorted with bisect, so the top N levels are a slice rather
than a sort: a diff touches a few levels while the book holds about 1000 a side. `DepthChain`
holds the update-id rules as pure decisions with no I/O, so a live feed can share them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from enum import IntEnum

Level = tuple[float, float]
"""(price, quantity)."""


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
        _update_side(self._bids, self._bid_prices, bids)
        _update_side(self._asks, self._ask_prices, asks)

    def top(self, levels: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """(bid prices, bid sizes, ask prices, ask sizes) of the best `levels` levels, best first;
        shorter lists when a side holds fewer levels."""
        bid_px = self._bid_prices[: -levels - 1 : -1]
        ask_px = self._ask_prices[:levels]
        bids, asks = self._bids, self._asks
        return bid_px, [bids[p] for p in bid_px], ask_px, [asks[p] for p in ask_px]

    def depth(self) -> tuple[int, int]:
        """Number of (bid, ask) levels held."""
        return len(self._bid_prices), len(self._ask_prices)


def _update_side(sizes: dict[float, float], prices: list[float], changes: Iterable[Level]) -> None:
    for price, qty in changes:
        if qty == 0.0:
            # Binance also removes levels the snapshot never held (beyond its depth): ignore those.
            if sizes.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]
            continue
        if price not in sizes:
            insort(prices, price)
        sizes[price] = qty


class Verdict(IntEnum):
    """What to do with one diff-depth message."""

    APPLY = 0
    DISCARD = 1  # u <= the snapshot's lastUpdateId: already in the snapshot
    STALE = 2  # u <= the book's id after sync: a duplicate or late message
    GAP = 3  # the update-id chain is broken: the book can no longer be trusted


class DepthChain:
    """Update-id bookkeeping of one local book, started from a snapshot's lastUpdateId.

    Before sync, diffs with u <= lastUpdateId are discarded and the first one applied must
    satisfy U <= lastUpdateId + 1 <= u. After it, spot diffs must continue with
    U == previous u + 1 and futures diffs with pu == previous u.
    """

    __slots__ = ("book_id", "futures", "snapshot_id", "synced")

    def __init__(self, last_update_id: int, *, futures: bool) -> None:
        self.snapshot_id = last_update_id
        self.book_id = last_update_id
        self.futures = futures
        self.synced = False

    def admit(self, first_id: int, last_id: int, prev_id: int | None) -> Verdict:
        """Judge one diff (U, u, pu); on APPLY the book id moves to u."""
        if last_id <= self.book_id:
            return Verdict.STALE if self.synced else Verdict.DISCARD
        if not self.synced:
            ok = first_id <= self.book_id + 1
        elif self.futures:
            ok = prev_id == self.book_id
        else:
            ok = first_id == self.book_id + 1
        if not ok:
            return Verdict.GAP
        self.book_id = last_id
        self.synced = True
        return Verdict.APPLY

    def gap_text(self, first_id: int, last_id: int, prev_id: int | None) -> str:
        """Why `admit` answered GAP for this diff: expected and found ids."""
        if not self.synced:
            return (
                f"update-id gap after the snapshot: the first diff must satisfy "
                f"U <= lastUpdateId+1 <= u; expected U <= {self.book_id + 1}, "
                f"found U={first_id} (u={last_id})"
            )
        if self.futures:
            return (
                f"update-id gap: expected pu={self.book_id} (the previous u), "
                f"found pu={prev_id} (U={first_id}, u={last_id})"
            )
        return (
            f"update-id gap: expected U={self.book_id + 1} (the previous u + 1), "
            f"found U={first_id} (u={last_id})"
        )
