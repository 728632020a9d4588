"""Binance messages -> Arrow tables in the session contract, and the checks run over them.

Every table has the contract columns (types.QUOTE_COLUMNS / book_columns order) plus the
venue's ids and `seq`, the line's index in its symbol's merged recording (the merge
tie-breaker and the way back to the raw line).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from simulator.importers.binance_messages import Quote, Trade
from simulator.importers.book import OrderBook
from simulator.types import QUOTE_COLUMNS, book_columns

_SIDES: Final = ("bid_px", "bid_sz", "ask_px", "ask_sz")


class BookColumns:
    """Preallocated numpy columns of the book table, filled one applied diff at a time."""

    __slots__ = ("_sides", "levels", "rows", "seq", "ts_event", "ts_recv", "update_id")

    def __init__(self, capacity: int, levels: int) -> None:
        self.levels = levels
        self.rows = 0
        self.ts_event = np.zeros(capacity, np.int64)
        self.ts_recv = np.zeros(capacity, np.int64)
        self.update_id = np.zeros(capacity, np.int64)
        self.seq = np.zeros(capacity, np.int64)
        # bid_px, bid_sz, ask_px, ask_sz by level; NaN marks a level the book does not hold
        self._sides = np.full((4, capacity, levels), np.nan, np.float64)

    def add(self, ts_event: int, ts_recv: int, update_id: int, seq: int, book: OrderBook) -> None:
        i = self.rows
        self.ts_event[i], self.ts_recv[i], self.update_id[i], self.seq[i] = (
            ts_event,
            ts_recv,
            update_id,
            seq,
        )
        for side, values in zip(self._sides, book.top(self.levels), strict=True):
            side[i, : len(values)] = values
        self.rows = i + 1

    def reset(self) -> None:
        """Empty the columns for the next batch of rows (tables already made keep theirs)."""
        self.rows = 0
        self._sides.fill(np.nan)

    def l1(self, row: int) -> tuple[float, float, float, float]:
        """Best bid px/sz and ask px/sz of a row (NaN: the side is empty)."""
        return (
            float(self._sides[0, row, 0]),
            float(self._sides[1, row, 0]),
            float(self._sides[2, row, 0]),
            float(self._sides[3, row, 0]),
        )

    def table(self) -> pa.Table:
        """The rows so far, copied: reset() may reuse the columns while the table lives on."""
        n = self.rows
        columns: dict[str, pa.Array] = {
            "ts_event": pa.array(self.ts_event[:n].copy()),
            "ts_recv": pa.array(self.ts_recv[:n].copy()),
        }
        for name in book_columns(self.levels):
            kind, level = name.rsplit("_", 1)
            values = self._sides[_SIDES.index(kind), :n, int(level)].copy()
            columns[name] = pa.array(values, mask=np.isnan(values))
        columns["update_id"] = pa.array(self.update_id[:n].copy())
        columns["seq"] = pa.array(self.seq[:n].copy())
        return pa.table(columns)


def quotes_table(rows: list[tuple[int, int, Quote]]) -> pa.Table:
    """bookTicker rows (seq, ts_recv, quote) -> the quotes table; spot ts_event stays null."""
    return pa.table(
        {
            "ts_event": pa.array([q.ts_event for _, _, q in rows], pa.int64()),
            "ts_recv": pa.array([ts for _, ts, _ in rows], pa.int64()),
            "bid_px": pa.array([q.bid_px for _, _, q in rows], pa.float64()),
            "bid_sz": pa.array([q.bid_sz for _, _, q in rows], pa.float64()),
            "ask_px": pa.array([q.ask_px for _, _, q in rows], pa.float64()),
            "ask_sz": pa.array([q.ask_sz for _, _, q in rows], pa.float64()),
            "update_id": pa.array([q.update_id for _, _, q in rows], pa.int64()),
            "seq": pa.array([seq for seq, _, _ in rows], pa.int64()),
        }
    )


def trades_table(rows: list[tuple[int, int, Trade]]) -> pa.Table:
    """trade/aggTrade rows (seq, ts_recv, trade) -> the trades table."""
    return pa.table(
        {
            "ts_event": pa.array([t.ts_event for _, _, t in rows], pa.int64()),
            "ts_recv": pa.array([ts for _, ts, _ in rows], pa.int64()),
            "px": pa.array([t.px for _, _, t in rows], pa.float64()),
            "sz": pa.array([t.sz for _, _, t in rows], pa.float64()),
            "side": pa.array([t.side for _, _, t in rows], pa.int8()),
            "trade_id": pa.array([t.trade_id for _, _, t in rows], pa.int64()),
            "seq": pa.array([seq for seq, _, _ in rows], pa.int64()),
        }
    )


def _floats(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return np.asarray(table.column(name).to_numpy(), dtype=np.float64)  # nulls become NaN


def bbo_agreement(quotes: pa.Table | None, book: pa.Table | None) -> tuple[int, int]:
    """(update ids shared by bookTicker and an applied diff, how many of them show exactly
    the same best bid/ask price and size in both)."""
    if quotes is None or book is None:
        return 0, 0
    shared, at_quote, at_book = np.intersect1d(
        quotes.column("update_id").to_numpy(),
        book.column("update_id").to_numpy(),
        return_indices=True,
    )
    same = np.ones(shared.size, np.bool_)
    for quote_name, book_name in zip(QUOTE_COLUMNS, book_columns(1), strict=True):
        same &= _floats(quotes, quote_name)[at_quote] == _floats(book, book_name)[at_book]
    return int(shared.size), int(same.sum())


def crossed_rows(table: pa.Table | None, bid: str, ask: str) -> int:
    """Rows whose best bid is at or above the best ask (crossed or locked)."""
    if table is None:
        return 0
    return int(np.count_nonzero(_floats(table, bid) >= _floats(table, ask)))
