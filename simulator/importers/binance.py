"""Import Binance combined-stream recordings (spot, or USD-M futures) as one session per symbol.

Input: files of `<receive time ns> <message>` lines (gzip, zstd or plain, sniffed) holding
bookTicker, trade/aggTrade and diff-depth messages plus one raw REST depth snapshot per symbol.
Output per symbol: `quotes` (bookTicker), `trades` and `book` (the top N levels of the L2 book
rebuilt from the snapshot and the diffs, one row per applied diff), and the symbol's lines
verbatim as `raw.txt.zst`, itself a valid input, so a session can be re-imported from it.

Exchange time and receive time stay apart: ts_event is the venue's time (trade T, depth E,
futures bookTicker T; null for spot bookTicker, which has none) and every table is in receive
order. Diffs received before the snapshot are buffered (LIVE.md 1.4); they become a book only
when the snapshot arrives, so their rows carry the snapshot's receive time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import zstandard

from simulator.errors import ConfigError, DataError
from simulator.importers.binance_book import DepthChain, Verdict
from simulator.importers.binance_messages import (
    Depth,
    Line,
    Quote,
    Snapshot,
    Trade,
    parse_line,
)
from simulator.importers.binance_tables import (
    BookColumns,
    bbo_agreement,
    crossed_rows,
    quotes_table,
    trades_table,
)
from simulator.importers.book import OrderBook
from simulator.importers.common import ImportResult, ProgressFn, no_progress, numbered_lines
from simulator.store import write_session
from simulator.types import NS_PER_SECOND, SessionKey

VENUE_SPOT: Final = "binance"
VENUE_FUTURES: Final = "binance-futures"
RAW_FILE: Final = "raw.txt.zst"
RAW_ZSTD_LEVEL: Final = 19
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_PROGRESS_STEP: Final = 8192
"""Lines between two progress calls."""


class _Progress:
    """Counts lines twice, once when parsed and once when written to the raw file."""

    __slots__ = ("_callback", "_done", "_total")

    def __init__(self, callback: ProgressFn, total: int) -> None:
        self._callback, self._done, self._total = callback, 0, total

    def advance(self, lines: int) -> None:
        self._done += lines
        self._callback(self._done, self._total)


def import_binance(
    paths: Sequence[Path],
    data_dir: Path,
    *,
    levels: int = 20,
    progress: ProgressFn = no_progress,
    raw_level: int = RAW_ZSTD_LEVEL,
) -> list[ImportResult]:
    """Import recordings as one session per symbol under `data_dir`; return them by symbol.

    Lines of all files are grouped by symbol and the files of a symbol joined in order of
    their first receive time. progress(done, total) counts lines (each line twice: parsing,
    then writing the raw file; `raw_level` is its zstd level, the slow part at 19).
    """
    if levels < 1:
        raise ConfigError(f"levels must be at least 1, found {levels}")
    if not paths:
        raise ConfigError("no input files given; expected one or more Binance recordings")
    texts = [list(numbered_lines(path)) for path in paths]
    tracker = _Progress(progress, 2 * sum(len(lines) for lines in texts))
    files = [
        _parse_file(path, source, numbered, tracker)
        for source, (path, numbered) in enumerate(zip(paths, texts, strict=True))
    ]
    sessions = _merge_by_symbol(_assign_snapshots(files, paths), paths)
    builders = {
        symbol: _SessionBuilder(sessions[symbol], levels, paths) for symbol in sorted(sessions)
    }
    for builder in builders.values():
        builder.run()  # every symbol is checked before any is written
    return [
        _write_symbol(symbol, builder, data_dir, raw_level, tracker)
        for symbol, builder in builders.items()
    ]


def _where(paths: Sequence[Path], line: Line) -> str:
    return f"{paths[line.source]} line {line.number}"


def _parse_file(
    path: Path, source: int, numbered: list[tuple[int, str]], tracker: _Progress
) -> list[Line]:
    if not numbered:
        raise DataError(f"{path}: empty file (no lines); expected a Binance recording")
    lines: list[Line] = []
    for number, text in numbered:
        line = parse_line(path, source, number, text)
        if lines and line.ts_recv < lines[-1].ts_recv:
            raise DataError(
                f"{path} line {number}: receive time went backwards ({line.ts_recv} < "
                f"{lines[-1].ts_recv} on line {lines[-1].number}); a recording is in receive order"
            )
        lines.append(line)
        if number % _PROGRESS_STEP == 0:
            tracker.advance(_PROGRESS_STEP)
    tracker.advance(len(numbered) % _PROGRESS_STEP)
    return lines


def _assign_snapshots(files: list[list[Line]], paths: Sequence[Path]) -> list[list[Line]]:
    """Give each snapshot line a symbol: its file's, or in a mixed file, the symbol whose
    depth chain it overlaps (U <= lastUpdateId+1 <= u)."""
    assigned = []
    for lines in files:
        symbols = {line.symbol for line in lines if line.symbol}
        own = symbols.pop() if len(symbols) == 1 else None
        assigned.append(
            [
                line._replace(symbol=own or _overlapping_symbol(line, files, paths))
                if not line.symbol
                else line
                for line in lines
            ]
        )
    return assigned


def _overlapping_symbol(snapshot: Line, files: list[list[Line]], paths: Sequence[Path]) -> str:
    message = snapshot.message
    target = message.last_update_id + 1 if isinstance(message, Snapshot) else -1
    candidates = sorted(
        {
            line.symbol
            for lines in files
            for line in lines
            if isinstance(line.message, Depth)
            and line.message.first_id <= target <= line.message.last_id
        }
    )
    if len(candidates) != 1:
        raise DataError(
            f"{_where(paths, snapshot)}: cannot tell which symbol this depth snapshot "
            f"(lastUpdateId={target - 1}) belongs to: its file holds several symbols (or none) "
            f"and the depth chains of {candidates or 'no symbol'} overlap it; "
            "expected exactly one with U <= lastUpdateId+1 <= u"
        )
    return candidates[0]


def _merge_by_symbol(files: list[list[Line]], paths: Sequence[Path]) -> dict[str, list[Line]]:
    """Per symbol, its lines of every file, files joined in order of their first receive time."""
    parts: list[tuple[int, int, str, list[Line]]] = []
    for source, lines in enumerate(files):
        split: dict[str, list[Line]] = {}
        for line in lines:
            split.setdefault(line.symbol, []).append(line)
        parts.extend((part[0].ts_recv, source, symbol, part) for symbol, part in split.items())
    merged: dict[str, list[Line]] = {}
    for _, _, symbol, part in sorted(parts, key=lambda p: (p[0], p[1])):
        into = merged.setdefault(symbol, [])
        if into and part[0].ts_recv < into[-1].ts_recv:
            raise DataError(
                f"{_where(paths, part[0])}: receive time went backwards across files "
                f"({part[0].ts_recv} < {into[-1].ts_recv} at {_where(paths, into[-1])}); "
                f"the recordings of {symbol} overlap in time"
            )
        into.extend(part)
    return merged


def _is_futures(lines: list[Line]) -> bool:
    """Futures depth links diffs with `pu`; futures bookTicker carries T (spot has neither)."""
    for line in lines:
        if isinstance(line.message, Depth):
            return line.message.prev_id is not None
    return any(
        isinstance(line.message, Quote) and line.message.ts_event is not None for line in lines
    )


class _SessionBuilder:
    """One symbol's lines in receive order -> quotes, trades and book rows, plus counts."""

    def __init__(self, lines: list[Line], levels: int, paths: Sequence[Path]) -> None:
        self.lines = lines
        self.paths = paths
        self.futures = _is_futures(lines)
        self.quotes: list[tuple[int, int, Quote]] = []  # (seq, ts_recv, message)
        self.trades: list[tuple[int, int, Trade]] = []
        self.rows = BookColumns(sum(isinstance(x.message, Depth) for x in lines), levels)
        self.book = OrderBook()
        self.chain: DepthChain | None = None
        self.snapshot: Line | None = None
        self.buffer: list[tuple[int, Line, Depth]] = []
        self.diffs: Counter[str] = Counter()

    def run(self) -> None:
        for seq, line in enumerate(self.lines):
            message = line.message
            if isinstance(message, Quote):
                self.quotes.append((seq, line.ts_recv, message))
            elif isinstance(message, Trade):
                self.trades.append((seq, line.ts_recv, message))
            elif isinstance(message, Depth):
                self._on_depth(seq, line, message)
            else:
                self._on_snapshot(line, message)
        if self.buffer:
            first = self.buffer[0][1]
            raise DataError(
                f"{_where(self.paths, first)}: no depth snapshot for {first.symbol}: "
                f"{len(self.buffer):,} depth message(s) from here on but no REST snapshot line "
                '{"lastUpdateId": ...} to start the book; record the snapshot with the stream'
            )

    def _on_depth(self, seq: int, line: Line, diff: Depth) -> None:
        if (diff.prev_id is not None) != self.futures:
            raise DataError(
                f"{_where(self.paths, line)}: depth message "
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
                f"{_where(self.paths, line)}: a second depth snapshot for {line.symbol} "
                f"(the first is at {_where(self.paths, self.snapshot)}); a session has one"
            )
        self.snapshot = line
        last_id = snapshot.last_update_id
        if self.buffer and self.buffer[0][2].first_id > last_id + 1:
            first = self.buffer[0]
            raise DataError(
                f"{_where(self.paths, line)}: the depth snapshot (lastUpdateId={last_id}) is "
                f"older than the first buffered diff (U={first[2].first_id} at "
                f"{_where(self.paths, first[1])}); expected U <= lastUpdateId+1 - "
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
            raise DataError(f"{_where(self.paths, line)}: {text}")
        self.diffs[verdict.name.lower()] += 1
        if verdict is Verdict.APPLY:
            self.book.apply(diff.bids, diff.asks)
            self.rows.add(diff.ts_event, ts_recv, diff.last_id, seq, self.book)

    def tables(self) -> dict[str, pa.Table]:
        """The non-empty tables of the session."""
        tables = {
            "quotes": quotes_table(self.quotes),
            "trades": trades_table(self.trades),
            "book": self.rows.table(),
        }
        return {kind: table for kind, table in tables.items() if table.num_rows}

    def facts(self, tables: dict[str, pa.Table]) -> dict[str, object]:
        """What the import checked, for ImportResult.facts and meta.json."""
        quotes, book = tables.get("quotes"), tables.get("book")
        shared, matches = bbo_agreement(quotes, book)
        snapshot = None if self.snapshot is None else self.snapshot.message
        return {
            "lines": len(self.lines),
            "lines_per_stream": dict(sorted(Counter(x.stream for x in self.lines).items())),
            "snapshot_last_update_id": (
                snapshot.last_update_id if isinstance(snapshot, Snapshot) else None
            ),
            "diffs_discarded": self.diffs["discard"],
            "diffs_stale": self.diffs["stale"],
            "diffs_applied": self.diffs["apply"],
            "gaps": 0,  # a gap stops the import with a DataError
            "bbo_shared_ids": shared,
            "bbo_matches": matches,
            "crossed_books": crossed_rows(book, "bid_px_0", "ask_px_0"),
            "crossed_quotes": crossed_rows(quotes, "bid_px", "ask_px"),
            "median_event_minus_recv_ms": _median_push_lag_ms(self.lines),
            "first_recv_ns": self.lines[0].ts_recv,
            "last_recv_ns": self.lines[-1].ts_recv,
        }


def _push_time(line: Line) -> int | None:
    """The venue's send time E of a message (depth keeps it as ts_event), if it has one."""
    message = line.message
    if isinstance(message, Depth):
        return message.ts_event
    if isinstance(message, Quote | Trade):
        return message.ts_push
    return None


def _median_push_lag_ms(lines: list[Line]) -> float | None:
    """Median of (E - receive time) in ms: the recorder's clock offset plus network delay."""
    lags = [t - line.ts_recv for line in lines if (t := _push_time(line)) is not None]
    return None if not lags else round(float(np.median(np.array(lags, np.int64))) / 1e6, 3)


def _utc_date(ts: int) -> str:
    return datetime.fromtimestamp(ts // NS_PER_SECOND, tz=UTC).date().isoformat()


def _write_symbol(
    symbol: str, builder: _SessionBuilder, data_dir: Path, raw_level: int, tracker: _Progress
) -> ImportResult:
    lines, paths = builder.lines, builder.paths
    tables = builder.tables()
    facts = builder.facts(tables)
    venue = VENUE_FUTURES if builder.futures else VENUE_SPOT
    key = SessionKey(venue, symbol, _utc_date(lines[0].ts_recv))
    rows = {kind: table.num_rows for kind, table in tables.items()}
    inputs = list(dict.fromkeys(paths[line.source].name for line in lines))
    meta = {"importer": "binance", "inputs": inputs, "levels": builder.rows.levels, "rows": rows}
    raw = _raw_recording(lines, paths, raw_level, tracker)
    path = write_session(
        data_dir, key, tables, meta={**meta, "facts": facts}, extra_files={RAW_FILE: raw}
    )
    return ImportResult(key=key, path=path, rows=rows, facts=facts)


def _raw_recording(
    lines: list[Line], paths: Sequence[Path], level: int, tracker: _Progress
) -> bytes:
    """The symbol's lines verbatim, zstd-compressed. When the input already is exactly that
    recording (a re-import of raw.txt.zst) its bytes are kept: level 19 takes ~20 s a day."""
    reused = _same_recording(lines, paths)
    if reused is not None:
        tracker.advance(len(lines))
        return reused
    compressor = zstandard.ZstdCompressor(level=level).compressobj()
    chunks = []
    for start in range(0, len(lines), _PROGRESS_STEP):
        part = lines[start : start + _PROGRESS_STEP]
        chunks.append(compressor.compress("".join(x.text + "\n" for x in part).encode()))
        tracker.advance(len(part))
    chunks.append(compressor.flush())
    return b"".join(chunks)


def _same_recording(lines: list[Line], paths: Sequence[Path]) -> bytes | None:
    """The input file's bytes if it is one zstd file holding exactly these lines."""
    if len({line.source for line in lines}) != 1:
        return None
    data = paths[lines[0].source].read_bytes()
    if not data.startswith(_ZSTD_MAGIC):
        return None
    content = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).readall()
    expected = "".join(line.text + "\n" for line in lines).encode()
    return data if content == expected else None
