"""LOBSTER importer: NASDAQ message + order book CSV pairs -> book, quotes and trades sessions.

A LOBSTER pair is ``TICKER_DATE_START_END_message_N.csv`` (one row per event: seconds after
midnight, type, order id, size, price x 10000, direction) and ``..._orderbook_N.csv`` (the
book after each event: ask px, ask sz, bid px, bid sz per level; empty levels hold the
sentinel +-9999999999). Pairs come zipped (as LOBSTER ships them) or as loose CSVs.

Each pair becomes one session ``nasdaq/TICKER/DATE``: ``book`` (one row per message, halts
too), ``quotes`` (L1, a row whenever it changes), ``trades`` (executions and crosses) and
``orders`` (the order events, types 1-5, for the exact L3 FIFO queue model).
LOBSTER only gives venue time, so ``ts_recv`` equals ``ts_event``. Everything is vectorised;
only the error path that locates a malformed line walks lines one by one. The two CSVs are
read side by side a block at a time (csv_stream.py) and the tables written a row group at a
time (store.SessionWriter), so memory stays bounded whatever the size of the day; the files
equal, byte for byte, those of a whole-file import.
"""

from __future__ import annotations

import functools
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Final, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from simulator.errors import DataError
from simulator.importers.common import ImportResult, ProgressFn, no_progress
from simulator.importers.csv_stream import (
    CSV_BLOCK_BYTES,
    READ_ERRORS,
    CsvStream,
    aligned,
    corrupt_zip,
)
from simulator.store import SessionWriter
from simulator.types import NS_PER_SECOND, SessionKey, book_columns

VENUE: Final = "nasdaq"
TIME_ZONE: Final = "America/New_York"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
PRICE_SCALE: Final = 10_000
EMPTY_LEVEL: Final = 9_999_999_999
"""LOBSTER's dummy price of an unoccupied level (negative on the bid side)."""
HALT: Final = 7
CROSS_TRADE: Final = 6
TRADE_TYPES: Final = (4, 5, CROSS_TRADE)
STAGES: Final = 3
"""Progress units per pair: started, read and derived, written."""
KINDS: Final = ("book", "quotes", "trades", "orders")
ORDER_TYPES: Final = (1, 2, 3, 4, 5)
"""Message types that are events of one visible or hidden order (not crosses or halts)."""

NAME_PATTERN: Final = re.compile(
    r"^(?P<ticker>[A-Za-z0-9_.-]+?)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
    r"_(?P<kind>message|orderbook)_(?P<levels>[1-9]\d*)\.csv$"
)
EXPECTED_NAME: Final = "TICKER_YYYY-MM-DD_START_END_message_N.csv (or _orderbook_N.csv)"
TIME_PATTERN: Final = r"[0-9]{1,6}(\.[0-9]+)?"
"""Seconds after midnight; real files carry float print artefacts past 9 decimals
(``43002.632812672004``), which are rounded half-even to the nanosecond."""
ZIP_MAGIC: Final = b"PK\x03\x04"
"""A zip's first bytes: a file that starts so but does not open as a zip is damaged."""
INT_PATTERN: Final = r"-?\d{1,18}"
MESSAGE_COLUMNS: Final = ("time", "type", "order_id", "size", "price", "direction")

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Member:
    """One CSV of a pair: the name errors show, the name meta records, how to read it."""

    name: str  # as the caller spelled it, for error messages
    label: str  # without directories, so meta.json does not depend on where the input was
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True, slots=True)
class _Pair:
    key: SessionKey
    levels: int
    message: _Member
    orderbook: _Member


@dataclass(frozen=True, slots=True)
class _Messages:
    ts: Int64Array  # UTC ns
    event_type: npt.NDArray[np.int8]
    order_id: Int64Array
    size: Int64Array
    price: Int64Array
    direction: Int64Array


class _At(NamedTuple):
    """Where a block of rows starts: the file as errors name it, the 1-based line of row 0."""

    name: str
    line: int


def import_lobster(
    paths: Sequence[Path],
    data_dir: Path,
    *,
    progress: ProgressFn = no_progress,
    block_bytes: int = CSV_BLOCK_BYTES,
) -> list[ImportResult]:
    """Import LOBSTER zips or message/orderbook CSVs; one session per pair found.

    A CSV may be given alone: its partner is looked up beside it by name. Re-importing the
    same files replaces the session (store.SessionWriter is atomic). Raises DataError naming
    the file, the 1-based line and the problem for any malformed input. `block_bytes` is
    how much CSV is parsed at a time (memory, not output: any size gives the same files).
    """
    pairs = _collect_pairs(paths)
    total = len(pairs) * STAGES
    results = []
    for number, pair in enumerate(pairs):
        report = functools.partial(_report_stage, progress, number * STAGES, total)
        report(0)
        results.append(_import_pair(pair, data_dir, report, block_bytes))
    progress(total, total)
    return results


def _report_stage(progress: ProgressFn, offset: int, total: int, stage: int) -> None:
    progress(offset + stage, total)


def _import_pair(
    pair: _Pair, data_dir: Path, report: Callable[[int], None], block_bytes: int
) -> ImportResult:
    day = date.fromisoformat(pair.key.date)
    message_types = {c: pa.int64() for c in MESSAGE_COLUMNS} | {"time": pa.string()}
    patterns = {c: TIME_PATTERN if c == "time" else INT_PATTERN for c in MESSAGE_COLUMNS}
    messages_csv = CsvStream(
        pair.message.name, pair.message.open, message_types,
        patterns=patterns, block_bytes=block_bytes,
    )  # fmt: skip
    book_names = _orderbook_names(pair.levels)
    book_csv = CsvStream(
        pair.orderbook.name, pair.orderbook.open, dict.fromkeys(book_names, pa.int64()),
        patterns=dict.fromkeys(book_names, INT_PATTERN), block_bytes=block_bytes,
    )  # fmt: skip
    derived = _Derived(pair.levels)
    with SessionWriter(data_dir, pair.key, KINDS) as writer:
        for offset, message_rows, book_rows in aligned(messages_csv, book_csv):
            messages = derived.messages(_At(pair.message.name, offset + 1), message_rows, day)
            book = _parse_orderbook(_At(pair.orderbook.name, offset + 1), book_rows, pair.levels)
            for kind, table in derived.tables(offset, messages, book).items():
                writer.write(kind, table)  # a kind without rows (no trades) gets no file
        report(1)
        counts = {kind: writer.rows[kind] for kind in KINDS}
        facts = derived.facts(counts)
        report(2)
        digests = (messages_csv.sha256, book_csv.sha256)
        path = writer.commit(_meta(pair, digests, facts))
    return ImportResult(key=pair.key, path=path, rows=counts, facts=facts)


def _meta(pair: _Pair, digests: tuple[str, str], facts: dict[str, object]) -> dict[str, object]:
    labels = [pair.message.label, pair.orderbook.label]
    return {
        "importer": "lobster",
        "time_zone": TIME_ZONE,
        "levels": pair.levels,
        "source_files": labels,
        "source_sha256": dict(zip(labels, digests, strict=True)),
        "event_mix": facts["event_mix"],
        "rows": facts["rows"],
    }


# --- finding pairs -------------------------------------------------------------------------


def _collect_pairs(paths: Sequence[Path]) -> list[_Pair]:
    """Resolve inputs to distinct pairs; a CSV pair given as both its files counts once."""
    pairs: dict[str, _Pair] = {}
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        found = _zip_pairs(path) if _is_zip(path) else [_csv_pair(path)]
        for pair in found:
            pairs.setdefault(str(Path(pair.message.name).resolve()), pair)
    sessions: dict[SessionKey, str] = {}
    for pair in pairs.values():
        if pair.key in sessions:
            raise DataError(
                f"{pair.message.name} and {sessions[pair.key]} are both session {pair.key}; "
                "import them separately"
            )
        sessions[pair.key] = pair.message.name
    return list(pairs.values())


def _is_zip(path: Path) -> bool:
    """True for a readable zip; DataError for one that is damaged (cut short, overwritten).

    zipfile.is_zipfile looks only for the central directory at the end, so a zip cut short
    reads as "not a zip"; its first bytes or its name still say what it was meant to be.
    """
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as opened:
        head = opened.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC or path.suffix.lower() == ".zip":
        raise _corrupt_zip(path, "its central directory is missing")
    return False


def _corrupt_zip(path: Path | str, cause: object) -> DataError:
    return DataError(f"{path}: truncated or corrupt zip ({cause}); download or copy it again")


def _match_name(name: str, where: str) -> re.Match[str]:
    match = NAME_PATTERN.match(name)
    if match is None:
        raise DataError(
            f"{where}: unknown file name pattern '{name}'; expected {EXPECTED_NAME} or a zip "
            "holding such a pair"
        )
    try:
        date.fromisoformat(match["date"])
    except ValueError as e:
        raise DataError(f"{where}: '{match['date']}' in the file name is not a date ({e})") from e
    return match


def _partner_name(match: re.Match[str]) -> str:
    other = "orderbook" if match["kind"] == "message" else "message"
    return match.string[: match.start("kind")] + other + match.string[match.end("kind") :]


def _make_pair(match: re.Match[str], message: _Member, orderbook: _Member) -> _Pair:
    key = SessionKey(VENUE, match["ticker"], match["date"])
    return _Pair(key=key, levels=int(match["levels"]), message=message, orderbook=orderbook)


def _csv_pair(path: Path) -> _Pair:
    match = _match_name(path.name, str(path))
    partner = path.with_name(_partner_name(match))
    if not partner.is_file():
        raise DataError(
            f"{path}: its partner {partner.name} is not beside it; LOBSTER data comes as a "
            "message file and an orderbook file with the same name stem"
        )
    first, second = (_file_member(path), _file_member(partner))
    return _make_pair(match, *((first, second) if match["kind"] == "message" else (second, first)))


def _file_member(path: Path) -> _Member:
    def open_file() -> IO[bytes]:
        return path.open("rb")

    return _Member(name=str(path), label=path.name, open=open_file)


def _zip_pairs(path: Path) -> list[_Pair]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as e:
        raise _corrupt_zip(path, e) from e
    members = {PurePosixPath(n).name: n for n in names if NAME_PATTERN.match(PurePosixPath(n).name)}
    if not members:
        raise DataError(
            f"{path}: no LOBSTER message/orderbook CSV inside; expected {EXPECTED_NAME}, "
            f"members found: {names}"
        )
    pairs = []
    for base, member in sorted(members.items()):
        match = _match_name(base, f"{path}/{member}")
        partner = _partner_name(match)
        if partner not in members:
            raise DataError(f"{path}: holds {member} but not its partner {partner}")
        if match["kind"] == "message":
            message, orderbook = _zip_member(path, member), _zip_member(path, members[partner])
            pairs.append(_make_pair(match, message, orderbook))
    return pairs


def _zip_member(path: Path, member: str) -> _Member:
    name = f"{path}/{member}"

    def open_member() -> IO[bytes]:
        # A member cut short or overwritten fails its CRC or its inflate stream (while read).
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.open(member)  # stays readable after the archive is closed
        except READ_ERRORS as e:
            raise corrupt_zip(name, e) from e

    return _Member(name=name, label=f"{path.name}/{member}", open=open_member)


# --- parsing -------------------------------------------------------------------------------


def _require(
    at: _At, ok: BoolArray, column: str, found: npt.NDArray[np.generic], expected: str
) -> None:
    """Raise DataError for the first row where `ok` is False, naming its 1-based line."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        row = int(bad[0])
        value = found[row : row + 1].tolist()[0]  # a plain Python value prints without np.int64()
        raise DataError(
            f"{at.name} line {at.line + row}: {column} is {value!r}; expected {expected}"
        )


def _parse_messages(
    at: _At, table: pa.Table, day: date, last_local_ns: int | None
) -> tuple[_Messages, int]:
    """A block of message rows, checked; also its last local time (the next block's floor)."""
    text = np.asarray(table.column("time").to_numpy(), dtype=object)
    ints = {c: np.asarray(table.column(c).to_numpy(), dtype=np.int64) for c in MESSAGE_COLUMNS[1:]}
    event_type, direction, size = ints["type"], ints["direction"], ints["size"]
    name = at
    _require(name, (event_type >= 1) & (event_type <= HALT), "type", event_type, "1 to 7")
    # Halts carry direction -1 by the ReadMe; crosses have no side, so neither is checked.
    sided = np.isin(direction, (-1, 1)) | (event_type >= CROSS_TRADE)
    _require(name, sided, "direction", direction, "-1 (sell order) or 1 (buy order)")
    _require(name, size >= 0, "size", size, "a share count >= 0")
    local_ns = _seconds_to_ns(name, text)
    before = local_ns[0] if last_local_ns is None else last_local_ns
    _require(
        name,
        np.diff(local_ns, prepend=before) >= 0,
        "time",
        text,
        "non-decreasing time (it is earlier than the line before)",
    )
    messages = _Messages(
        ts=_local_to_utc_ns(day, local_ns),
        event_type=event_type.astype(np.int8),
        order_id=ints["order_id"],
        size=size,
        price=ints["price"],
        direction=direction,
    )
    return messages, int(local_ns[-1])


def _seconds_to_ns(name: _At, text: npt.NDArray[np.object_]) -> Int64Array:
    """'34200.004241176' -> 34200004241176 exactly: whole and fraction parsed as integers.

    Digits past the ninth decimal round half-even to the nanosecond, decided on the text
    (never a float parse): '...0000000005' -> ...000000000, '...0000000015' -> ...000000002.
    """
    series = pl.Series("time", text, dtype=pl.String)
    well_formed = series.str.contains(f"^{TIME_PATTERN}$").to_numpy()
    _require(name, well_formed, "time", text, "seconds after midnight as digits[.digits]")
    parts = series.str.split_exact(".", 1).struct.unnest()
    whole = parts.get_column("field_0").cast(pl.Int64)
    decimals = parts.get_column("field_1").fill_null("")
    fraction = decimals.str.slice(0, 9).str.pad_end(9, "0").cast(pl.Int64)
    # The rest without trailing zeros: "" exact, "5" a tie, above "5" up, below down.
    rest = decimals.str.slice(9).str.strip_chars_end("0")
    first = rest.str.slice(0, 1)
    tie = rest == "5"
    up = (first > "5") | ((first == "5") & ~tie) | (tie & (fraction % 2 == 1))
    ns = whole * NS_PER_SECOND + fraction + up.cast(pl.Int64)
    return np.asarray(ns.to_numpy(), dtype=np.int64)


def _local_to_utc_ns(day: date, local_ns: Int64Array) -> Int64Array:
    """Wall time after local midnight -> UTC ns.

    The UTC offset is looked up per distinct minute, not once per file, because a DST switch
    moves it within a day; an ambiguous wall time takes its first occurrence (fold=0).
    Datetime arithmetic stays in integer microseconds, so nothing is rounded.
    """
    minute_ns = 60 * NS_PER_SECOND
    minutes, inverse = np.unique(local_ns // minute_ns, return_inverse=True)
    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TIME_ZONE))
    minute_utc_ns = np.array(
        [_utc_ns(midnight + timedelta(minutes=int(m))) for m in minutes], dtype=np.int64
    )
    inverse = inverse.ravel()
    return minute_utc_ns[inverse] + (local_ns - minutes[inverse] * minute_ns)


def _utc_ns(moment: datetime) -> int:
    return ((moment - EPOCH) // timedelta(microseconds=1)) * 1_000


def _orderbook_names(levels: int) -> list[str]:
    """The orderbook CSV's columns: ask px, ask sz, bid px, bid sz of level 1, 2, ..."""
    sides = ("ask_px", "ask_sz", "bid_px", "bid_sz")
    return [f"{f}_{i}" for i in range(1, levels + 1) for f in sides]


def _parse_orderbook(at: _At, table: pa.Table, levels: int) -> dict[str, FloatArray]:
    """The book in types.book_columns order, float64 dollars/shares, NaN for an empty level."""
    book: dict[str, FloatArray] = {}
    for level in range(levels):
        for side in ("bid", "ask"):
            raw_px, raw_sz = (
                np.asarray(table.column(f"{side}_{f}_{level + 1}").to_numpy(), dtype=np.int64)
                for f in ("px", "sz")
            )
            empty = np.abs(raw_px) >= EMPTY_LEVEL
            column, expected = f"{side}_px_{level + 1}", f"a positive price or +-{EMPTY_LEVEL}"
            _require(at, empty | (raw_px > 0), column, raw_px, expected)
            book[f"{side}_px_{level}"] = np.where(empty, np.nan, _dollars(raw_px))
            book[f"{side}_sz_{level}"] = np.where(empty, np.nan, raw_sz.astype(np.float64))
    return {name: book[name] for name in book_columns(levels)}


def _dollars(raw: Int64Array) -> FloatArray:
    return np.round(raw / PRICE_SCALE, 4)


# --- derived tables ------------------------------------------------------------------------


def _arrow(values: FloatArray) -> pa.Array:
    """Float column with NaN (an empty level) stored as null, as the data contract wants."""
    return pa.array(values, mask=np.isnan(values))


def _times(messages: _Messages, rows: npt.NDArray[np.intp] | slice) -> dict[str, pa.Array]:
    ts = pa.array(messages.ts[rows])
    return {"ts_event": ts, "ts_recv": ts}


def _book_table(messages: _Messages, book: dict[str, FloatArray], offset: int) -> pa.Table:
    columns = _times(messages, slice(None))
    columns |= {name: _arrow(values) for name, values in book.items()}
    columns["seq"] = pa.array(np.arange(offset, offset + len(messages.ts), dtype=np.int64))
    columns["event_type"] = pa.array(messages.event_type)
    return pa.table(columns)


def _l1(book: dict[str, FloatArray]) -> list[FloatArray]:
    return [book[f"{name}_0"] for name in ("bid_px", "bid_sz", "ask_px", "ask_sz")]


def _quote_rows(
    book: dict[str, FloatArray], event_type: npt.NDArray[np.int8], before: FloatArray | None
) -> tuple[npt.NDArray[np.intp], FloatArray | None]:
    """Rows whose L1 differs from the previous non-halt row's (`before`: the last one of the
    blocks before; the first row of the file always counts), and the new last one."""
    kept = np.flatnonzero(event_type != HALT)
    if len(kept) == 0:
        return kept, before
    top = np.column_stack(_l1(book))[kept]
    previous = top[:-1] if before is None else np.vstack([before, top[:-1]])
    following = top[1:] if before is None else top
    same = (following == previous) | (np.isnan(following) & np.isnan(previous))
    changed = ~same.all(axis=1)
    if before is None:
        changed = np.concatenate(([True], changed))
    return kept[changed], top[-1]


def _quotes_table(
    messages: _Messages, book: dict[str, FloatArray], rows: npt.NDArray[np.intp], offset: int
) -> pa.Table:
    columns = _times(messages, rows)
    for name, values in zip(("bid_px", "bid_sz", "ask_px", "ask_sz"), _l1(book), strict=True):
        columns[name] = _arrow(values[rows])
    columns["seq"] = pa.array(rows.astype(np.int64) + offset)
    return pa.table(columns)


def _trades_table(messages: _Messages, rows: npt.NDArray[np.intp], offset: int) -> pa.Table:
    event_type = messages.event_type[rows]
    # Executing a resting sell order (-1) is a buy by the aggressor; crosses have no aggressor.
    side = np.where(event_type == CROSS_TRADE, 0, -messages.direction[rows]).astype(np.int8)
    columns = _times(messages, rows)
    columns |= {
        "px": pa.array(_dollars(messages.price[rows])),
        "sz": pa.array(messages.size[rows].astype(np.float64)),
        "side": pa.array(side),
        "seq": pa.array(rows.astype(np.int64) + offset),
        "order_id": pa.array(messages.order_id[rows]),
        "event_type": pa.array(event_type),
    }
    return pa.table(columns)


def _orders_table(messages: _Messages, rows: npt.NDArray[np.intp], offset: int) -> pa.Table:
    columns = _times(messages, rows)
    columns |= {
        "order_id": pa.array(messages.order_id[rows]),
        "event_type": pa.array(messages.event_type[rows]),
        "side": pa.array(messages.direction[rows].astype(np.int8)),
        "px": pa.array(_dollars(messages.price[rows])),
        "sz": pa.array(messages.size[rows].astype(np.float64)),
        "seq": pa.array(rows.astype(np.int64) + offset),
    }
    return pa.table(columns)


@dataclass(slots=True)
class _Derived:
    """Block by block: checks carried across blocks, the derived tables and the facts.

    The facts are exact whole-file figures kept in bounded memory: counts, extremes, and the
    spread's distinct values with their counts (a few thousand ticks) for its median.
    """

    levels: int
    last_local_ns: int | None = None
    last_top: FloatArray | None = None
    messages_seen: int = 0
    event_mix: Counter[int] = field(default_factory=Counter)
    spreads: Counter[float] = field(default_factory=Counter)
    mids: list[float] = field(default_factory=list)  # running [min, max]
    empty_l1: int = 0

    def messages(self, at: _At, table: pa.Table, day: date) -> _Messages:
        messages, self.last_local_ns = _parse_messages(at, table, day, self.last_local_ns)
        return messages

    def tables(
        self, offset: int, messages: _Messages, book: dict[str, FloatArray]
    ) -> dict[str, pa.Table]:
        """This block's rows of each kind (seq counts from the file's first row)."""
        quote_rows, self.last_top = _quote_rows(book, messages.event_type, self.last_top)
        trade_rows = np.flatnonzero(np.isin(messages.event_type, TRADE_TYPES))
        order_rows = np.flatnonzero(np.isin(messages.event_type, ORDER_TYPES))
        self._count(messages, book)
        return {
            "book": _book_table(messages, book, offset),
            "quotes": _quotes_table(messages, book, quote_rows, offset),
            "trades": _trades_table(messages, trade_rows, offset),
            "orders": _orders_table(messages, order_rows, offset),
        }

    def _count(self, messages: _Messages, book: dict[str, FloatArray]) -> None:
        self.messages_seen += len(messages.ts)
        kinds, numbers = np.unique(messages.event_type, return_counts=True)
        self.event_mix.update(dict(zip(kinds.tolist(), numbers.tolist(), strict=True)))
        bid, ask = book["bid_px_0"], book["ask_px_0"]
        both = ~np.isnan(bid) & ~np.isnan(ask)
        self.empty_l1 += int(np.count_nonzero(~both))
        mid, spread = ((bid + ask) / 2)[both], (ask - bid)[both]
        if mid.size:
            low, high = float(np.min(mid)), float(np.max(mid))
            self.mids = (
                [min(self.mids[0], low), max(self.mids[1], high)] if self.mids else [low, high]
            )
        values, numbers = np.unique(spread, return_counts=True)
        self.spreads.update(dict(zip(values.tolist(), numbers.tolist(), strict=True)))

    def facts(self, counts: dict[str, int]) -> dict[str, object]:
        """Figures to compare with PROVENANCE.md, over every message row with both L1 sides."""
        spread = sorted(self.spreads)
        return {
            "event_mix": {str(k): self.event_mix[k] for k in sorted(self.event_mix)},
            "rows": {"messages": self.messages_seen, **counts},
            "levels": self.levels,
            "mid_min": _rounded(self.mids[0] if self.mids else None),
            "mid_max": _rounded(self.mids[1] if self.mids else None),
            "spread_min": _rounded(spread[0] if spread else None),
            "spread_median": _rounded(_median(self.spreads)),
            "spread_max": _rounded(spread[-1] if spread else None),
            "crossed_or_locked": sum(n for value, n in self.spreads.items() if value <= 0),
            "empty_l1_rows": self.empty_l1,
        }


def _median(counts: Counter[float]) -> float | None:
    """np.median of the values `counts` holds (each as often as counted): the middle value,
    or the mean of the two middle ones, computed as numpy does ((a + b) / 2)."""
    total = sum(counts.values())
    if total == 0:
        return None
    middle = [(total - 1) // 2, total // 2]  # 0-based ranks of the one or two middle values
    found: list[float] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while middle and middle[0] < seen:
            found.append(value)
            middle.pop(0)
    return float(np.mean(np.array(found, np.float64)))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
