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

Two passes keep memory bounded whatever the size of the input: the first scans every file
(binance_scan.py: where each symbol's lines are, the snapshots, order and format checks),
the second builds every symbol's session from its lines as they stream by
(binance_session.py) into store.SessionWriter staging directories (up to SYMBOLS_PER_PASS
symbols per read of the files), published only once every symbol is built and checked. The
files equal, byte for byte, those of the whole-file importer.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pyarrow.parquet as pq

from simulator.errors import ConfigError
from simulator.importers.binance_messages import Line, parse_payload, split_line
from simulator.importers.binance_scan import (
    FileScan,
    Part,
    SnapshotOwners,
    assign_snapshots,
    depth_chains,
    is_futures,
    merge_order,
    needs_owners,
    scan_file,
)
from simulator.importers.binance_session import RawRecording, SymbolSession
from simulator.importers.binance_tables import bbo_agreement
from simulator.importers.common import ImportResult, ProgressFn, no_progress, numbered_lines
from simulator.store import SessionWriter
from simulator.types import NS_PER_SECOND, SessionKey

VENUE_SPOT: Final = "binance"
VENUE_FUTURES: Final = "binance-futures"
RAW_FILE: Final = "raw.txt.zst"
RAW_ZSTD_LEVEL: Final = 19
KINDS: Final = ("quotes", "trades", "book")
SYMBOLS_PER_PASS: Final = 4
"""Symbols built in one read of the files: each holds up to a row group of each table in
memory (~50 MB at 20 levels), so a recording of many symbols is read once per 4 of them."""


class _Progress:
    """Counts lines twice: once in the first pass, once when written to the raw file. The
    total is known after the first pass; until then it is shown as twice the lines read."""

    __slots__ = ("_callback", "_done", "total")

    def __init__(self, callback: ProgressFn) -> None:
        self._callback, self._done, self.total = callback, 0, 0

    def advance(self, lines: int) -> None:
        self._done += lines
        self._callback(self._done, self.total or 2 * self._done)


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
    their first receive time. progress(done, total) counts lines (each line twice: the
    first pass, then writing the raw file; `raw_level` is its zstd level, the slow part at
    19). Every symbol is checked before any is written.
    """
    if levels < 1:
        raise ConfigError(f"levels must be at least 1, found {levels}")
    if not paths:
        raise ConfigError("no input files given; expected one or more Binance recordings")
    tracker = _Progress(progress)
    scans = [scan_file(path, source, tracker.advance) for source, path in enumerate(paths)]
    tracker.total = 2 * sum(scan.lines for scan in scans)
    targets = needs_owners(scans)
    owners = SnapshotOwners(targets) if targets else None
    if owners is not None:  # a snapshot in a file of several symbols: whose chain is it?
        for path in paths:
            depth_chains(path, owners)
    assigned = assign_snapshots(scans, owners, paths)
    merged = merge_order(scans, paths)
    with ExitStack() as stack:
        sessions: dict[str, SymbolSession] = {}
        for symbol in sorted(merged):
            writer = stack.enter_context(SessionWriter(data_dir, _key(symbol, merged), KINDS))
            raw = None
            if _verbatim_input(merged[symbol], scans) is None:
                raw = RawRecording(writer.staged(RAW_FILE), raw_level, tracker.advance)
                stack.callback(raw.discard)  # closing twice is harmless
            sessions[symbol] = SymbolSession(
                writer,
                futures=is_futures(merged[symbol]),
                levels=levels,
                paths=paths,
                raw=raw,
                join_bbo=any(part.futures is not None for part in merged[symbol]),
                expected_lines=sum(part.lines for part in merged[symbol]),
            )
        _build(paths, merged, assigned, sessions)  # every symbol is checked before any is written
        return [
            _commit(symbol, sessions[symbol], merged[symbol], scans, (paths, levels), tracker)
            for symbol in sorted(merged)
        ]


def _key(symbol: str, merged: dict[str, list[Part]]) -> SessionKey:
    """Futures or spot, dated by the symbol's first receive time (UTC)."""
    parts = merged[symbol]
    day = datetime.fromtimestamp(parts[0].first[1] // NS_PER_SECOND, tz=UTC).date()
    venue = VENUE_FUTURES if is_futures(parts) else VENUE_SPOT
    return SessionKey(venue, symbol, day.isoformat())


def _verbatim_input(parts: list[Part], scans: Sequence[FileScan]) -> Path | None:
    """The input file when it is one zstd file holding exactly this symbol's lines: a
    re-import of raw.txt.zst keeps its bytes (level 19 takes ~20 s a day)."""
    if len(parts) != 1:
        return None
    scan = scans[parts[0].source]
    return scan.path if scan.verbatim and parts[0].lines == scan.lines else None


def _build(
    paths: Sequence[Path],
    merged: dict[str, list[Part]],
    assigned: dict[tuple[int, int], str],
    sessions: dict[str, SymbolSession],
) -> None:
    """The second pass: the files once per order of files that symbols share (usually one)
    and per SYMBOLS_PER_PASS of its symbols; each symbol's tables are finished (checked,
    written to staging) right after its pass, so its buffers are freed."""
    orders: dict[tuple[int, ...], list[str]] = {}
    for symbol, parts in sorted(merged.items()):
        orders.setdefault(tuple(p.source for p in parts), []).append(symbol)
    for sources, symbols in orders.items():
        for start in range(0, len(symbols), SYMBOLS_PER_PASS):
            chunk = {s: sessions[s] for s in symbols[start : start + SYMBOLS_PER_PASS]}
            for source in sources:
                _read_file(paths, source, assigned, chunk, skip=len(chunk) < len(symbols))
            for session in chunk.values():
                session.finish()
                session.writer.close_tables()


def _read_file(
    paths: Sequence[Path],
    source: int,
    assigned: dict[tuple[int, int], str],
    sessions: dict[str, SymbolSession],
    *,
    skip: bool,
) -> None:
    """Feed each line of one file to its symbol's session, if that is among `sessions`;
    with `skip`, lines of other symbols are passed over without parsing when their text
    names the symbol plainly (a lost line would fail SymbolSession's line count)."""
    path = paths[source]
    for number, text in numbered_lines(path):
        if skip and (named := _stream_symbol(text)) is not None and named not in sessions:
            continue
        ts_recv, stream, symbol, data = split_line(path, number, text)
        owner = symbol or assigned[(source, number)]
        session = sessions.get(owner)
        if session is not None:
            message = parse_payload(path, number, stream, symbol, data)
            session.on_line(Line(source, number, ts_recv, stream, owner, message, text))


def _stream_symbol(text: str) -> str | None:
    """SYMBOL of a line written as Binance sends it ('<ts> {"stream":"btcusdt@...'), read off
    the text; None for any other shape (the line is then parsed in full)."""
    head = text.find(" ")
    if not text.startswith(' {"stream":"', head):
        return None
    begin = head + 12
    at, quote = text.find("@", begin), text.find('"', begin)
    if at < 0 or quote < at or "\\" in text[begin:at]:
        return None
    return text[begin:at].upper()


def _commit(
    symbol: str,
    session: SymbolSession,
    parts: list[Part],
    scans: Sequence[FileScan],
    inputs: tuple[Sequence[Path], int],
    tracker: _Progress,
) -> ImportResult:
    paths, levels = inputs
    writer = session.writer
    tables = writer.close_tables()
    bbo = (session.bbo.shared, session.bbo.matches)
    if session.bbo.unsorted:  # bookTicker ids went down: join the whole columns instead
        bbo = bbo_agreement(
            *(
                pq.read_table(tables[kind]) if kind in tables else None
                for kind in ("quotes", "book")
            )
        )
    facts = session.facts(bbo)
    rows = {kind: writer.rows[kind] for kind in KINDS if writer.rows[kind]}
    names = list(dict.fromkeys(paths[part.source].name for part in parts))
    meta = {"importer": "binance", "inputs": names, "levels": levels, "rows": rows}
    verbatim = _verbatim_input(parts, scans)
    if verbatim is not None:
        tracker.advance(parts[0].lines)
    extra = {} if verbatim is None else {RAW_FILE: verbatim}
    path = writer.commit({**meta, "facts": facts}, extra_files=extra)
    return ImportResult(key=writer.key, path=path, rows=rows, facts=facts)
