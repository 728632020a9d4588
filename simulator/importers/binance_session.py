"""The second pass of the Binance importer: one symbol's lines in receive order -> its session.

`SymbolSession.on_line` takes the symbol's lines one at a time (merged across files) and
writes quotes, trades and book rows to a store.SessionWriter a batch at a time, the raw
recording to raw.txt.zst as it goes, and keeps the facts in bounded memory: counters,
the bookTicker/book agreement joined on update ids as both arrive (`BboJoin`), and the
push lags (8 bytes a line) for their exact median.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Final

import numpy as np
import numpy.typing as npt
import zstandard

from simulator.errors import DataError, InvariantViolation
from simulator.importers.binance_book import DepthChain, Verdict
from simulator.importers.binance_messages import Depth, Line, Quote, Snapshot, Trade
from simulator.importers.binance_tables import (
    BookColumns,
    crossed_rows,
    quotes_table,
    trades_table,
)
from simulator.importers.book import OrderBook
from simulator.store import SessionWriter

BATCH_ROWS: Final = 8_192
"""Rows of a kind gathered before they go to the SessionWriter (which groups them into row
groups): the book's preallocated columns take 8192 x 4 x levels floats (5 MB at 20 levels)
per symbol being imported."""
RAW_CHUNK_LINES: Final = 8192
"""Lines per zstd compress() call of the raw recording (the whole-file importer's chunks)."""
RAW_PENDING: Final = 4
"""Chunks that may wait for the compression thread (a few MB)."""

L1 = tuple[float, float, float, float]


class BboJoin:
    """Count update ids shared by bookTicker and applied diffs, and how many of them show the
    same best bid/ask price and size, as np.intersect1d on the whole columns would (first
    occurrence of each id), while both streams arrive.

    Book ids rise strictly (DepthChain applies only u > the book's id); bookTicker ids rise
    too on Binance. Each side keeps only the rows the other side may still match; a quote
    id going down sets `unsorted`, and the caller then joins the written tables instead.
    """

    __slots__ = ("_book", "_book_max", "_quote_max", "_quotes", "matches", "shared", "unsorted")

    def __init__(self) -> None:
        self._quotes: deque[tuple[int, L1]] = deque()
        self._book: deque[tuple[int, L1]] = deque()
        self._quote_max = self._book_max = -1
        self.shared = self.matches = 0
        self.unsorted = False

    def on_quote(self, update_id: int, values: L1) -> None:
        if update_id <= self._quote_max:
            self.unsorted = self.unsorted or update_id < self._quote_max
            return  # a repeated id: its first occurrence was joined
        self._quote_max = update_id
        book = self._book
        while book and book[0][0] < update_id:
            book.popleft()
        if book and book[0][0] == update_id:
            self._match(values, book.popleft()[1])
        elif update_id > self._book_max:
            self._quotes.append((update_id, values))

    def on_book(self, update_id: int, values: L1) -> None:
        self._book_max = update_id
        quotes = self._quotes
        while quotes and quotes[0][0] < update_id:
            quotes.popleft()
        if quotes and quotes[0][0] == update_id:
            self._match(quotes.popleft()[1], values)
        elif update_id > self._quote_max:
            self._book.append((update_id, values))

    def _match(self, quote: L1, book: L1) -> None:
        self.shared += 1
        # element by element: NaN (an empty book side) equals nothing, as in numpy
        self.matches += all(a == b for a, b in zip(quote, book, strict=True))


class RawRecording:
    """The symbol's lines verbatim, zstd-compressed into a file as they come.

    Compression (the slow part at high levels) runs in one worker thread, overlapping the
    parsing: zstandard releases the GIL. Chunks are compressed and written in order, and at
    most RAW_PENDING of them wait, so memory stays bounded.
    """

    __slots__ = ("_advance", "_compressor", "_handle", "_pending", "_pool", "_texts")

    def __init__(self, path: Path, level: int, advance: Callable[[int], None]) -> None:
        self._handle: IO[bytes] = path.open("wb")
        self._compressor = zstandard.ZstdCompressor(level=level).compressobj()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-zstd")
        self._pending: deque[tuple[Future[bytes], int]] = deque()
        self._texts: list[str] = []
        self._advance = advance

    def add(self, text: str) -> None:
        self._texts.append(text)
        if len(self._texts) == RAW_CHUNK_LINES:
            self._submit()

    def _submit(self) -> None:
        data = "".join(t + "\n" for t in self._texts).encode()
        self._pending.append((self._pool.submit(self._compressor.compress, data), len(self._texts)))
        self._texts = []
        while len(self._pending) > RAW_PENDING:
            self._write_oldest()

    def _write_oldest(self) -> None:
        future, lines = self._pending.popleft()
        self._handle.write(future.result())
        self._advance(lines)

    def close(self) -> None:
        if self._texts:
            self._submit()
        while self._pending:
            self._write_oldest()
        self._handle.write(self._compressor.flush())
        self.discard()

    def discard(self) -> None:
        """Stop the worker and close the file (after an error: it is removed with the
        staging directory); closing twice is harmless."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._handle.close()


class SymbolSession:
    """One symbol's lines in receive order -> its tables (batch by batch) and facts."""

    def __init__(
        self,
        writer: SessionWriter,
        *,
        futures: bool,
        levels: int,
        paths: Sequence[Path],
        raw: RawRecording | None,
        join_bbo: bool,
        expected_lines: int,
    ) -> None:
        self.writer, self.futures, self.paths, self.raw = writer, futures, paths, raw
        self.join_bbo = join_bbo  # False without depth lines: nothing to join quotes with
        self.expected_lines = expected_lines  # what the first pass counted
        self.quotes: list[tuple[int, int, Quote]] = []  # (seq, ts_recv, message)
        self.trades: list[tuple[int, int, Trade]] = []
        self.rows = BookColumns(BATCH_ROWS, levels)
        self.book = OrderBook()
        self.chain: DepthChain | None = None
        self.snapshot: Line | None = None
        self.buffer: list[tuple[int, Line, Depth]] = []
        self.diffs: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self.bbo = BboJoin()
        self.crossed = {"quotes": 0, "book": 0}
        self.lags: list[npt.NDArray[np.int64]] = []
        self._lag_chunk: list[int] = []
        self.seq = 0
        self.first_recv = self.last_recv = 0

    def _where(self, line: Line) -> str:
        return f"{self.paths[line.source]} line {line.number}"

    def on_line(self, line: Line) -> None:
        seq, message = self.seq, line.message
        if seq == 0:
            self.first_recv = line.ts_recv
        self.seq, self.last_recv = seq + 1, line.ts_recv
        self.streams[line.stream] += 1
        if self.raw is not None:
            self.raw.add(line.text)
        if isinstance(message, Quote):
            self._on_quote(seq, line, message)
        elif isinstance(message, Trade):
            self.trades.append((seq, line.ts_recv, message))
            self._lag(message.ts_push, line.ts_recv)
            if len(self.trades) == BATCH_ROWS:
                self._flush_trades()
        elif isinstance(message, Depth):
            self._lag(message.ts_event, line.ts_recv)
            self._on_depth(seq, line, message)
        else:
            self._on_snapshot(line, message)

    def _lag(self, pushed: int | None, ts_recv: int) -> None:
        if pushed is None:
            return
        self._lag_chunk.append(pushed - ts_recv)
        if len(self._lag_chunk) == BATCH_ROWS:
            self.lags.append(np.array(self._lag_chunk, np.int64))
            self._lag_chunk = []

    def _on_quote(self, seq: int, line: Line, quote: Quote) -> None:
        self.quotes.append((seq, line.ts_recv, quote))
        self._lag(quote.ts_push, line.ts_recv)
        if self.join_bbo:
            values = (quote.bid_px, quote.bid_sz, quote.ask_px, quote.ask_sz)
            self.bbo.on_quote(quote.update_id, values)
        if len(self.quotes) == BATCH_ROWS:
            self._flush_quotes()

    def _on_depth(self, seq: int, line: Line, diff: Depth) -> None:
        if (diff.prev_id is not None) != self.futures:
            raise DataError(
                f"{self._where(line)}: depth message "
                f"{'with' if diff.prev_id is not None else 'without'} pu in a "
                f"{'futures' if self.futures else 'spot'} session; a session is spot or futures"
            )
        if self.chain is None:
            self.buffer.append((seq, line, diff))
        else:
            self._apply(self.chain, seq, line, diff, line.ts_recv)

    def _on_snapshot(self, line: Line, snapshot: Snapshot) -> None:
        if self.snapshot is not None:
            raise DataError(
                f"{self._where(line)}: a second depth snapshot for {line.symbol} "
                f"(the first is at {self._where(self.snapshot)}); a session has one"
            )
        self.snapshot = line
        last_id = snapshot.last_update_id
        if self.buffer and self.buffer[0][2].first_id > last_id + 1:
            first = self.buffer[0]
            raise DataError(
                f"{self._where(line)}: the depth snapshot (lastUpdateId={last_id}) is "
                f"older than the first buffered diff (U={first[2].first_id} at "
                f"{self._where(first[1])}); expected U <= lastUpdateId+1 - "
                "fetch the snapshot after the depth stream has started"
            )
        self.book.reset(snapshot.bids, snapshot.asks)
        self.chain = DepthChain(last_id, futures=self.futures)
        for seq, diff_line, diff in self.buffer:
            self._apply(self.chain, seq, diff_line, diff, line.ts_recv)
        self.buffer.clear()

    def _apply(self, chain: DepthChain, seq: int, line: Line, diff: Depth, ts_recv: int) -> None:
        verdict = chain.admit(diff.first_id, diff.last_id, diff.prev_id)
        if verdict is Verdict.GAP:
            text = chain.gap_text(diff.first_id, diff.last_id, diff.prev_id)
            raise DataError(f"{self._where(line)}: {text}")
        self.diffs[verdict.name.lower()] += 1
        if verdict is Verdict.APPLY:
            self.book.apply(diff.bids, diff.asks)
            rows = self.rows
            rows.add(diff.ts_event, ts_recv, diff.last_id, seq, self.book)
            self.bbo.on_book(diff.last_id, rows.l1(rows.rows - 1))
            if rows.rows == BATCH_ROWS:
                self._flush_book()

    def _flush_quotes(self) -> None:
        table = quotes_table(self.quotes)
        self.crossed["quotes"] += crossed_rows(table, "bid_px", "ask_px")
        self.writer.write("quotes", table)
        self.quotes = []

    def _flush_trades(self) -> None:
        self.writer.write("trades", trades_table(self.trades))
        self.trades = []

    def _flush_book(self) -> None:
        table = self.rows.table()
        self.crossed["book"] += crossed_rows(table, "bid_px_0", "ask_px_0")
        self.writer.write("book", table)
        self.rows.reset()

    def finish(self) -> None:
        """Check the symbol's book was started, flush what is left; DataError otherwise."""
        if self.seq != self.expected_lines:
            raise InvariantViolation(
                f"{self.writer.key}: {self.seq:,} lines built but the first pass counted "
                f"{self.expected_lines:,}; a line was lost or read twice"
            )
        if self.buffer:
            first = self.buffer[0][1]
            raise DataError(
                f"{self._where(first)}: no depth snapshot for {first.symbol}: "
                f"{len(self.buffer):,} depth message(s) from here on but no REST snapshot line "
                '{"lastUpdateId": ...} to start the book; record the snapshot with the stream'
            )
        if self.quotes:
            self._flush_quotes()
        if self.trades:
            self._flush_trades()
        if self.rows.rows:
            self._flush_book()
        if self.raw is not None:
            self.raw.close()

    def facts(self, bbo: tuple[int, int]) -> dict[str, object]:
        """What the import checked, for ImportResult.facts and meta.json (`bbo`: the join's
        figures, from BboJoin or, for unsorted quote ids, from the written tables)."""
        snapshot = None if self.snapshot is None else self.snapshot.message
        return {
            "lines": self.seq,
            "lines_per_stream": dict(sorted(self.streams.items())),
            "snapshot_last_update_id": (
                snapshot.last_update_id if isinstance(snapshot, Snapshot) else None
            ),
            "diffs_discarded": self.diffs["discard"],
            "diffs_stale": self.diffs["stale"],
            "diffs_applied": self.diffs["apply"],
            "gaps": 0,  # a gap stops the import with a DataError
            "bbo_shared_ids": bbo[0],
            "bbo_matches": bbo[1],
            "crossed_books": self.crossed["book"],
            "crossed_quotes": self.crossed["quotes"],
            "median_event_minus_recv_ms": self._median_lag_ms(),
            "first_recv_ns": self.first_recv,
            "last_recv_ns": self.last_recv,
        }

    def _median_lag_ms(self) -> float | None:
        """Median of (E - receive time) in ms: the recorder's clock offset plus network delay."""
        lags = [*self.lags, np.array(self._lag_chunk, np.int64)]
        every = np.concatenate(lags)
        return None if every.size == 0 else round(float(np.median(every)) / 1e6, 3)
