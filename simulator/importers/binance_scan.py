"""The first of the Binance importer's two passes: what each input file holds, in bounded memory.

`scan_file` reads a recording once without keeping its lines: per symbol where its lines
start and end (line numbers, receive times), how many there are, whether it looks like
futures; the snapshot lines with their lastUpdateId; and, for a zstd file, whether its bytes
are exactly its lines (so a re-import can keep them as raw.txt.zst). `plan` then gives every
snapshot its symbol and joins each symbol's parts of all files in order of first receive
time, with the same checks and messages as the whole-file importer had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zstandard

from simulator.errors import DataError
from simulator.importers.binance_messages import is_depth, parse_payload, split_line
from simulator.importers.common import numbered_lines

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


@dataclass(slots=True)
class Part:
    """One symbol's lines in one file: first and last (line number, receive time), count."""

    source: int
    first: tuple[int, int]
    last: tuple[int, int]
    lines: int = 0
    futures: bool | None = None  # the first depth line's: linked by pu (futures) or not
    quote_ts_event: bool = False  # a bookTicker with T (futures only)

    def add(self, number: int, ts_recv: int) -> None:
        self.first = min(self.first, (number, ts_recv))
        self.last = max(self.last, (number, ts_recv))
        self.lines += 1


@dataclass(frozen=True, slots=True)
class SnapshotLine:
    source: int
    number: int
    ts_recv: int
    last_update_id: int


@dataclass(slots=True)
class FileScan:
    path: Path
    source: int
    lines: int = 0
    parts: dict[str, Part] = field(default_factory=dict)
    snapshots: list[SnapshotLine] = field(default_factory=list)
    verbatim: bool = False  # a zstd file whose bytes are exactly its lines, "\n"-terminated


def _ids(path: Path, number: int, stream: str, data: dict[str, Any]) -> tuple[int, int, bool]:
    """(U, u, has pu) of a depth payload; a malformed one raises parse_line's DataError."""
    try:
        return int(data["U"]), int(data["u"]), data.get("pu") is not None
    except (KeyError, TypeError, ValueError):
        parse_payload(path, number, stream, "?", data)  # raises with the exact message
        raise


def scan_file(path: Path, source: int, advance: Callable[[int], None]) -> FileScan:
    """Scan one recording, calling `advance(n)` every n lines. DataError for a malformed
    line (format, JSON, envelope, stream type, ids; payload values are checked in pass 2)
    or a receive time going backwards."""
    scan = FileScan(path=path, source=source)
    joined = hashlib.sha256() if _is_zstd(path) else None  # only a zstd file can be kept
    last: tuple[int, int] | None = None  # (ts_recv, line number)
    for number, text in numbered_lines(path):
        ts_recv, stream, symbol, data = split_line(path, number, text)
        if last is not None and ts_recv < last[0]:
            raise DataError(
                f"{path} line {number}: receive time went backwards ({ts_recv} < "
                f"{last[0]} on line {last[1]}); a recording is in receive order"
            )
        last = (ts_recv, number)
        if joined is not None:
            joined.update(text.encode() + b"\n")
        scan.lines = number
        if not symbol:
            _on_snapshot(scan, path, number, ts_recv, stream, data)
        else:
            _on_stream_line(scan, path, (number, ts_recv), (stream, symbol), data)
        if number % 8192 == 0:
            advance(8192)
    advance(scan.lines % 8192)
    if scan.lines == 0:
        raise DataError(f"{path}: empty file (no lines); expected a Binance recording")
    scan.verbatim = joined is not None and _is_verbatim(path, joined.hexdigest())
    return scan


def _on_snapshot(
    scan: FileScan, path: Path, number: int, ts_recv: int, stream: str, data: dict[str, Any]
) -> None:
    try:
        last_update_id = int(data["lastUpdateId"])
    except (KeyError, TypeError, ValueError):
        parse_payload(path, number, stream, "", data)
        raise
    parse_payload(path, number, stream, "", data)  # the levels must parse too
    scan.snapshots.append(SnapshotLine(scan.source, number, ts_recv, last_update_id))


def _on_stream_line(
    scan: FileScan,
    path: Path,
    at: tuple[int, int],
    names: tuple[str, str],
    data: dict[str, Any],
) -> None:
    stream, symbol = names
    part = scan.parts.get(symbol)
    if part is None:
        part = scan.parts[symbol] = Part(source=scan.source, first=at, last=at)
    part.add(*at)
    if is_depth(stream):
        linked = _ids(path, at[0], stream, data)[2]
        if part.futures is None:
            part.futures = linked
    elif stream == "bookTicker":
        part.quote_ts_event = part.quote_ts_event or data.get("T") is not None
    elif stream not in ("trade", "aggTrade"):
        parse_payload(path, at[0], stream, symbol, data)  # raises: unknown stream type


def depth_chains(path: Path, owners: SnapshotOwners) -> None:
    """Feed `owners` every depth line of a file (already scanned: its lines are valid)."""
    for number, text in numbered_lines(path):
        if "@depth" not in text:
            continue
        _, stream, symbol, data = split_line(path, number, text)
        if symbol and is_depth(stream):
            owners.on_depth(symbol, *_ids(path, number, stream, data)[:2])


def _is_zstd(path: Path) -> bool:
    if not path.is_file():
        return False  # numbered_lines names the missing file
    with path.open("rb") as handle:
        return handle.read(4) == ZSTD_MAGIC


def _is_verbatim(path: Path, joined_sha256: str) -> bool:
    """True for a zstd file whose decompressed bytes are its lines, each + "\\n"."""
    with path.open("rb") as handle:
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        digest = hashlib.sha256()
        while block := reader.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == joined_sha256


def _where(paths: Sequence[Path], source: int, number: int) -> str:
    return f"{paths[source]} line {number}"


class SnapshotOwners:
    """Which symbols' depth chains cover each snapshot's lastUpdateId + 1 (U <= id <= u)."""

    def __init__(self, targets: Sequence[int]) -> None:
        self._targets = sorted(set(targets))
        self.covering: dict[int, set[str]] = {t: set() for t in self._targets}

    def on_depth(self, symbol: str, first_id: int, last_id: int) -> None:
        for target in self._targets:
            if first_id <= target <= last_id:
                self.covering[target].add(symbol)


def assign_snapshots(
    scans: Sequence[FileScan], owners: SnapshotOwners | None, paths: Sequence[Path]
) -> dict[tuple[int, int], str]:
    """(source, line) of each snapshot -> its symbol: its file's only symbol, or in a mixed
    file the symbol whose depth chain overlaps it; the snapshot joins that symbol's part."""
    assigned: dict[tuple[int, int], str] = {}
    for scan in scans:
        own = next(iter(scan.parts)) if len(scan.parts) == 1 else None
        for snapshot in scan.snapshots:
            symbol = own or _overlapping_symbol(snapshot, owners, paths)
            assigned[(snapshot.source, snapshot.number)] = symbol
            part = scan.parts.get(symbol)
            at = (snapshot.number, snapshot.ts_recv)
            if part is None:
                scan.parts[symbol] = Part(source=scan.source, first=at, last=at, lines=1)
            else:
                part.add(*at)
    return assigned


def needs_owners(scans: Sequence[FileScan]) -> list[int]:
    """Snapshot targets (lastUpdateId + 1) that need the depth chains of every file."""
    return [
        snapshot.last_update_id + 1
        for scan in scans
        if len(scan.parts) != 1
        for snapshot in scan.snapshots
    ]


def _overlapping_symbol(
    snapshot: SnapshotLine, owners: SnapshotOwners | None, paths: Sequence[Path]
) -> str:
    target = snapshot.last_update_id + 1
    candidates = sorted(owners.covering.get(target, set())) if owners is not None else []
    if len(candidates) != 1:
        raise DataError(
            f"{_where(paths, snapshot.source, snapshot.number)}: cannot tell which symbol this "
            f"depth snapshot (lastUpdateId={target - 1}) belongs to: its file holds several "
            f"symbols (or none) and the depth chains of {candidates or 'no symbol'} overlap it; "
            "expected exactly one with U <= lastUpdateId+1 <= u"
        )
    return candidates[0]


def merge_order(scans: Sequence[FileScan], paths: Sequence[Path]) -> dict[str, list[Part]]:
    """Per symbol, its parts of every file in order of their first receive time (then file
    order); DataError when two parts of a symbol overlap in time."""
    parts = sorted(
        ((part.first[1], part.source, symbol, part) for scan in scans
         for symbol, part in scan.parts.items()),
        key=lambda p: (p[0], p[1]),
    )  # fmt: skip
    merged: dict[str, list[Part]] = {}
    for _, _, symbol, part in parts:
        into = merged.setdefault(symbol, [])
        if into and part.first[1] < into[-1].last[1]:
            previous = into[-1]
            raise DataError(
                f"{_where(paths, part.source, part.first[0])}: receive time went backwards "
                f"across files ({part.first[1]} < {previous.last[1]} at "
                f"{_where(paths, previous.source, previous.last[0])}); "
                f"the recordings of {symbol} overlap in time"
            )
        into.append(part)
    return merged


def is_futures(parts: Sequence[Part]) -> bool:
    """Futures depth links diffs with `pu`; futures bookTicker carries T (spot has neither)."""
    for part in parts:
        if part.futures is not None:
            return part.futures
    return any(part.quote_ts_event for part in parts)
