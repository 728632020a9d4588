"""The market as the pipeline sees it right now: one mutable object the engine updates in place.

Hot path: the engine writes the L1 fields on every quote/book event (no allocation). Deeper
levels are not copied; `book_columns`/`book_row` point into the current book batch and are
read only on the cold path (when an order walks the book).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final

MAX_TS: Final = 2**63 - 1


class MarketState:
    """Current best bid/ask, optional book depth and last trade of one instrument."""

    __slots__ = (
        "ask_px",
        "ask_sz",
        "bid_px",
        "bid_sz",
        "book_columns",
        "book_row",
        "last_trade_px",
        "last_trade_side",
        "last_trade_sz",
        "last_trade_ts",
        "levels",
        "n_order_events",
        "n_trades",
        "order_event",
        "order_id",
        "order_px",
        "order_side",
        "order_sz",
        "order_ts",
        "ts_event",
        "ts_recv",
    )

    def __init__(self, levels: int = 1) -> None:
        self.levels = levels
        self.ts_recv = 0
        self.ts_event = 0
        self.bid_px = math.nan
        self.bid_sz = math.nan
        self.ask_px = math.nan
        self.ask_sz = math.nan
        # per level: (bid_px, bid_sz, ask_px, ask_sz) memoryviews of the current book batch
        self.book_columns: tuple[tuple[memoryview, memoryview, memoryview, memoryview], ...] = ()
        self.book_row = -1
        self.last_trade_px = math.nan
        self.last_trade_ts = 0
        # size and aggressor side of the last trade, and a count of trades: resting orders
        # with a queue position (execution/resting.py) advance on each new trade
        self.last_trade_sz = math.nan
        self.last_trade_side = 0
        self.n_trades = 0
        # the last order-level event (the `orders` kind, for the l3_fifo queue) and a count
        self.order_event = 0
        self.order_id = 0
        self.order_side = 0
        self.order_px = math.nan
        self.order_sz = math.nan
        self.order_ts = 0
        self.n_order_events = 0

    @property
    def has_quote(self) -> bool:
        return self.bid_px == self.bid_px and self.ask_px == self.ask_px  # NaN-safe, no call

    @property
    def mid(self) -> float:
        return (self.bid_px + self.ask_px) * 0.5

    def depth(self, side: int) -> Iterator[tuple[float, float]]:
        """Levels an order of `side` (+1 buy, -1 sell) takes from, best first: asks for a buy.

        Falls back to the L1 quote when the session has no book. Empty levels are skipped.
        Lazy: most orders stop at the first level, so deeper ones are never read.
        """
        row = self.book_row
        if not self.book_columns or row < 0:
            yield (self.ask_px, self.ask_sz) if side > 0 else (self.bid_px, self.bid_sz)
            return
        for bid_px, bid_sz, ask_px, ask_sz in self.book_columns:
            px, sz = (ask_px[row], ask_sz[row]) if side > 0 else (bid_px[row], bid_sz[row])
            if px == px and sz > 0:  # NaN marks an empty level
                yield px, sz
