"""Crash-safe rotating Parquet parts for live recording, and their consolidation into a session.

While live mode runs, each table goes to `<session>/parts/<table>/part-NNNNNN.parquet`.
A part is written as `.tmp`, fsynced, renamed into place and its directory fsynced, so every
`part-*.parquet` present is complete: a crash, even SIGKILL, loses only the rows still in memory.
`meta.json` is written first (`closed: false`) and rewritten at close (`closed: true`).

`append` never waits for I/O: one daemon thread per table writes the parts (pyarrow releases
the GIL while it encodes and writes). A writer that falls behind raises RecorderOverflow rather
than drop rows, since a recording with a hole is no good for parity (LIVE.md §6c).

`consolidate` turns the parts into a normal session — `quotes/trades/book.parquet` beside
`raw`, `timer`, `status`, `decisions`, `order_requests` and `fills` — that replay, stress and report
read like an import; it is idempotent and finishes the job when rerun after a crash.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulator.errors import ConfigError, DataError, InvariantViolation, RecorderOverflow
from simulator.store import META_FILE, ROW_GROUP_ROWS, file_sha256, read_meta
from simulator.types import KINDS, SessionKey

PARTS_DIR: Final = "parts"
PARTS_FORMAT: Final = 1
"""Version of the parts layout and meta fields, recorded in meta.json as `parts_format`."""
TMP_SUFFIX: Final = ".tmp"
CONSUMED_TABLES: Final = ("quotes", "trades", "book", "timer", "status")
"""The tables of consumed events, numbered by the session-wide `seq`."""
ROLL_BYTES: Final = 8 << 20
"""Default `roll_bytes`: a part is cut once its rows hold this much (8 MiB of Arrow buffers)."""
PENDING_PARTS: Final = 20
"""Default `max_pending`, in parts: how far a writer may fall behind before it overflows."""

_PART_NAME: Final = re.compile(r"^part-(\d{6,})\.parquet$")
_REMOVED_PARTS: Final = ".parts-removed"  # parts/ renamed aside, then deleted


@dataclass(frozen=True, slots=True, kw_only=True)
class PartStats:
    """Counters of one table's writer."""

    rows_written: int  # rows in finished parts
    parts_written: int
    bytes_written: int
    rows_pending: int  # appended, not yet in a finished part (lost on a crash)
    rows_dropped: int  # refused by an overflow: the recording has a gap after the last part


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A point every table of a live recording held in finished parts (meta.json
    `checkpoint`): the consumed events through session `seq`, the raw frames through
    `frame_seq`, and the first `events` decisions' events, `orders` order requests and `fills`
    fills.
    `data recover` cuts a killed session's tables here, so that they agree."""

    seq: int
    frame_seq: int
    events: int
    orders: int
    fills: int

    def as_meta(self) -> dict[str, int]:
        return {"seq": self.seq, "frame_seq": self.frame_seq, "events": self.events,
                "orders": self.orders, "fills": self.fills}  # fmt: skip

    @staticmethod
    def from_meta(meta: Mapping[str, object]) -> Checkpoint | None:
        found = meta.get("checkpoint")
        if not isinstance(found, dict):
            return None
        fields = ("seq", "frame_seq", "events", "orders", "fills")
        if not all(isinstance(found.get(name), int) for name in fields):
            raise DataError(f"{META_FILE}: checkpoint {found} lacks one of {', '.join(fields)}")
        return Checkpoint(**{name: int(found[name]) for name in fields})

    def keep(self, name: str, table: pa.Table, rows_before: int) -> pa.Table:
        """The rows of one part of table `name` (after `rows_before` earlier rows) to keep."""
        if name in CONSUMED_TABLES:
            return table.filter(pc.less_equal(table.column("seq"), self.seq))
        if name == "raw":
            return table.filter(pc.less_equal(table.column("seq"), self.frame_seq))
        if name == "decisions":
            return table.filter(pc.less(table.column("event_index"), self.events))
        limit = {"order_requests": self.orders, "fills": self.fills}.get(name)
        if limit is None:
            return table
        return table.slice(0, max(limit - rows_before, 0))


def fsync(path: Path) -> None:
    """Flush a file's data, or a directory's renames, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Mapping[str, object]) -> None:
    """Replace `path` with `payload` as JSON: a crash leaves the old or the new file, whole."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("w") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync(path.parent)


def _checked_options(
    where: Path, roll_rows: int, roll_seconds: float, max_pending: int | None
) -> int:
    """Validated writer options; returns the effective max_pending."""
    pending = PENDING_PARTS * roll_rows if max_pending is None else max_pending
    if roll_rows < 1 or roll_seconds <= 0 or pending < roll_rows:
        raise ConfigError(
            f"{where}: part writer needs roll_rows >= 1, roll_seconds > 0 and max_pending >= "
            f"roll_rows; found roll_rows={roll_rows}, roll_seconds={roll_seconds}, "
            f"max_pending={pending}"
        )
    return pending


def _part_number(path: Path) -> int:
    match = _PART_NAME.match(path.name)
    if match is None:
        raise InvariantViolation(f"{path}: not a part file name")
    return int(match[1])


def part_files(directory: Path) -> list[Path]:
    """The finished parts in `directory`, in write order (unfinished `*.tmp` files left out)."""
    if not directory.is_dir():
        return []
    numbered = [(int(m[1]), p) for p in directory.iterdir() if (m := _PART_NAME.match(p.name))]
    return [path for _, path in sorted(numbered)]


class PartWriter:
    """One table's rotating parts: `append` buffers rows, a background thread writes parts.

    A part is cut when `roll_rows` rows or `roll_bytes` bytes are buffered (wide rows, e.g.
    20 book levels, reach the bytes first: what a part holds in memory stays bounded),
    `roll_seconds` after its first row (monotonic time), on `flush()` and on `close()`. More
    than `max_pending` rows not yet in a finished part (default: PENDING_PARTS parts' worth)
    raises RecorderOverflow. A failed
    write stops the writer; its DataError is raised by the next append, flush or close.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        roll_rows: int = 50_000,
        roll_seconds: float = 30.0,
        max_pending: int | None = None,
        roll_bytes: int = ROLL_BYTES,
    ) -> None:
        self.max_pending = _checked_options(directory, roll_rows, roll_seconds, max_pending)
        if roll_bytes < 1:
            raise ConfigError(f"{directory}: part writer needs roll_bytes >= 1; found {roll_bytes}")
        self.directory = directory
        self.schema = schema
        self.roll_rows = roll_rows
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"*{TMP_SUFFIX}"):  # a crashed writer's unfinished part
            stale.unlink()
        existing = part_files(directory)
        self._next = _part_number(existing[-1]) + 1 if existing else 1
        self._cond = threading.Condition()
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0  # rows in _buffer
        self._buffered_bytes = 0  # their Arrow buffers' size
        self._opened_at: float | None = None  # monotonic time of the buffered part's first row
        self._flush_wanted = False
        self._closed = False
        self._error: DataError | None = None
        self._overflowed = False
        self._rows = self._parts = self._bytes = self._pending = self._dropped = 0
        self._thread = threading.Thread(
            target=self._run, name=f"parts-{directory.name}", daemon=True
        )
        self._thread.start()

    def append(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Buffer `batch` for the next part; never waits for the disk."""
        batches = self._conform(batch)
        rows = batch.num_rows
        with self._cond:
            self._raise_if_unusable()
            if self._overflowed or self._pending + rows > self.max_pending:
                self._dropped += rows
                raise self._overflow(rows)
            if rows == 0:
                return
            self._buffer.extend(batches)
            self._buffered += rows
            self._buffered_bytes += sum(b.nbytes for b in batches)
            self._pending += rows
            if self._opened_at is None:
                self._opened_at = time.monotonic()
                # notify_all: flush() callers wait on the same condition as the thread
                self._cond.notify_all()  # the thread starts this part's roll_seconds timer
            elif self._buffered >= self.roll_rows or self._buffered_bytes >= self.roll_bytes:
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every row appended so far is in a finished part."""
        with self._cond:
            target = self._rows + self._pending
            self._flush_wanted = True
            self._cond.notify_all()
            while self._rows < target and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def request_flush(self) -> int:
        """Have the thread write every row appended so far, without waiting for it; returns
        their count, for `written`."""
        with self._cond:
            self._raise_if_unusable()
            self._flush_wanted = True
            self._cond.notify_all()
            return self._rows + self._pending

    def written(self, rows: int) -> bool:
        """Whether the first `rows` rows appended are in finished parts (a failed write's
        DataError is raised)."""
        with self._cond:
            if self._error is not None:
                raise self._error
            return self._rows >= rows

    def close(self, *, keep_schema: bool = False) -> PartStats:
        """Write what is buffered and stop the thread. Idempotent.

        `keep_schema` writes one empty part when the table got no rows at all, so that its
        schema (and an empty table file after consolidation) survives.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if keep_schema and self._parts == 0:  # the thread has ended: no lock needed
            try:
                self._bytes += self._write_part([], self._next)
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"{self.directory}: writing an empty part failed: {e}") from e
            self._next += 1
            self._parts = 1
        return self.stats()

    def stats(self) -> PartStats:
        with self._cond:
            return PartStats(
                rows_written=self._rows,
                parts_written=self._parts,
                bytes_written=self._bytes,
                rows_pending=self._pending,
                rows_dropped=self._dropped,
            )

    def _conform(self, batch: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
        if not batch.schema.equals(self.schema):
            try:
                batch = batch.cast(self.schema)
            except (ValueError, TypeError, pa.ArrowException) as e:
                raise DataError(
                    f"{self.directory}: rows do not fit the table's schema ({e}); "
                    f"expected {self.schema.names}, found {batch.schema.names}"
                ) from e
        if isinstance(batch, pa.Table):
            return list(batch.to_batches())
        return [batch]

    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise InvariantViolation(f"{self.directory}: append after the part writer was closed")
        if self._error is not None:
            raise self._error

    def _overflow(self, rows: int) -> RecorderOverflow:
        if self._overflowed:
            return RecorderOverflow(
                f"{self.directory}: {rows:,} rows refused: the recorder overflowed earlier "
                f"and the recording has a gap ({self._dropped:,} rows lost so far)"
            )
        self._overflowed = True  # later appends fail too: the stream has a gap now
        return RecorderOverflow(
            f"{self.directory}: recorder fell behind ({self._pending:,} rows waiting, "
            f"{rows:,} more refused, limit {self.max_pending:,}); the recording is "
            "incomplete — stop the session, or raise max_pending / roll_rows"
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                batches = self._next_part()
                if batches is None:
                    return
                number = self._next
                self._next += 1
            try:
                size = self._write_part(batches, number)
            except Exception as e:  # handed to the caller's next append/flush/close
                error = DataError(f"{self.directory}: writing part {number} failed: {e}")
                error.__cause__ = e
                with self._cond:
                    self._error = error
                    self._cond.notify_all()
                return
            rows = sum(b.num_rows for b in batches)
            # the part's rows go now: kept by this name, they lived on while the thread waited
            # for the next part (up to roll_seconds; RSS swung by up to a part per table)
            del batches
            with self._cond:
                self._rows += rows
                self._parts += 1
                self._bytes += size
                self._pending -= rows
                self._cond.notify_all()

    def _next_part(self) -> list[pa.RecordBatch] | None:
        """Wait (lock held) until a part is due and take its rows; None once closed and empty."""
        while True:
            if not self._buffered:
                self._flush_wanted = False  # every row before the flush call is taken already
                if self._closed:
                    return None
                self._cond.wait()
                continue
            if (
                self._closed
                or self._flush_wanted
                or self._buffered >= self.roll_rows
                or self._buffered_bytes >= self.roll_bytes
            ):
                break
            opened = time.monotonic() if self._opened_at is None else self._opened_at
            left = opened + self.roll_seconds - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        batches, self._buffer = self._buffer, []
        self._buffered = self._buffered_bytes = 0
        self._opened_at = None
        return batches

    def _write_part(self, batches: list[pa.RecordBatch], number: int) -> int:
        """tmp file, fsync, rename, fsync the directory; returns the part's size in bytes."""
        final = self.directory / f"part-{number:06d}.parquet"
        tmp = final.with_name(final.name + TMP_SUFFIX)
        table = pa.Table.from_batches(batches, schema=self.schema)
        try:
            pq.write_table(table, tmp, compression="zstd")
            fsync(tmp)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):  # the write already failed; its error wins
                tmp.unlink(missing_ok=True)
            raise
        fsync(self.directory)
        return final.stat().st_size


class SessionParts:
    """A live session being recorded: meta.json first, then one PartWriter per table.

    Writers open on a table's first append; `close` writes an empty part for a table that got
    no rows, so every table's schema survives.
    """

    def __init__(
        self,
        session_dir: Path,
        meta: Mapping[str, object],
        schemas: Mapping[str, pa.Schema],
        *,
        roll_rows: int = 50_000,
        roll_seconds: float = 30.0,
        max_pending: int | None = None,
    ) -> None:
        if (session_dir / META_FILE).exists():
            raise DataError(
                f"{session_dir}: already holds a session ({META_FILE} exists); "
                "each live session records into a fresh directory"
            )
        _checked_options(session_dir, roll_rows, roll_seconds, max_pending)
        session_dir.mkdir(parents=True, exist_ok=True)
        self.session_dir = session_dir
        self._schemas = dict(schemas)
        self._options = (roll_rows, roll_seconds, max_pending)
        self._writers: dict[str, PartWriter] = {}
        self._lock = threading.Lock()
        self._closed = False
        described = {name: [f"{f.name}: {f.type}" for f in s] for name, s in schemas.items()}
        self._meta: dict[str, object] = {
            **meta,
            "closed": False,
            "parts_format": PARTS_FORMAT,
            "schemas": described,
        }
        write_json_atomic(session_dir / META_FILE, self._meta)

    def append(self, table: str, batch: pa.RecordBatch | pa.Table) -> None:
        writer = self._writers.get(table)
        (writer or self._open(table)).append(batch)

    def update_meta(self, **fields: object) -> None:
        """Merge `fields` into meta.json now (atomically), e.g. clock-offset estimates."""
        with self._lock:
            self._meta.update(fields)
            write_json_atomic(self.session_dir / META_FILE, self._meta)

    def flush(self) -> None:
        """Wait until every row appended so far is in a finished part."""
        for writer in list(self._writers.values()):
            writer.flush()

    def request_flush(self) -> dict[str, int]:
        """Have every writer write the rows appended so far, without waiting; returns their
        count per table: `flushed` tells when they are all in finished parts."""
        return {name: writer.request_flush() for name, writer in list(self._writers.items())}

    def flushed(self, appended: Mapping[str, int]) -> bool:
        """Whether the rows counted by `request_flush` are all in finished parts."""
        return all(self._writers[name].written(rows) for name, rows in appended.items())

    def stats(self) -> dict[str, PartStats]:
        return {name: writer.stats() for name, writer in list(self._writers.items())}

    def close(self, extra_meta: Mapping[str, object] | None = None) -> dict[str, PartStats]:
        """Write every buffered row, then meta.json with `closed: true` and per-table counts.

        A table whose writer failed is named under `write_errors` and its error is raised
        after meta.json is written.
        """
        with self._lock:
            self._closed = True
        stats: dict[str, PartStats] = {}
        errors: dict[str, str] = {}
        first: DataError | None = None
        for name in self._schemas:
            try:
                stats[name] = self._writer(name).close(keep_schema=True)
            except DataError as e:
                errors[name] = str(e)
                first = first or e
        tables = {
            name: {"rows": s.rows_written, "parts": s.parts_written, "bytes": s.bytes_written,
                   "dropped": s.rows_dropped}
            for name, s in stats.items()
        }  # fmt: skip
        with self._lock:
            self._meta.update({**(extra_meta or {}), "closed": True, "tables": tables})
            if errors:
                self._meta["write_errors"] = errors
            write_json_atomic(self.session_dir / META_FILE, self._meta)
        if first is not None:
            raise first
        return stats

    def abort(self, reason: str) -> None:
        """Stop the writers of a session whose run failed, keeping every row appended so far
        in finished parts, and name the failure in meta.json. The session stays unclosed:
        `data recover` consolidates it, cut at its last checkpoint like a killed recorder's.
        Write errors here are not raised: the run's own error is the one reported."""
        with self._lock:
            self._closed = True
        for writer in list(self._writers.values()):
            with contextlib.suppress(Exception):
                writer.close()
        with self._lock, contextlib.suppress(OSError):
            self._meta["failed"] = reason
            write_json_atomic(self.session_dir / META_FILE, self._meta)

    def _open(self, table: str) -> PartWriter:
        with self._lock:
            if self._closed:
                raise InvariantViolation(f"{self.session_dir}: append after the session closed")
            return self._writer(table)

    def _writer(self, table: str) -> PartWriter:
        writer = self._writers.get(table)
        if writer is not None:
            return writer
        schema = self._schemas.get(table)
        if schema is None:
            close = difflib.get_close_matches(table, list(self._schemas), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(
                f"{self.session_dir}: no table '{table}' in this recording "
                f"(tables: {', '.join(self._schemas)}){hint}"
            )
        roll_rows, roll_seconds, max_pending = self._options
        writer = PartWriter(
            self.session_dir / PARTS_DIR / table,
            schema,
            roll_rows=roll_rows,
            roll_seconds=roll_seconds,
            max_pending=max_pending,
        )
        self._writers[table] = writer
        return writer


def _open_part(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: unreadable Parquet part ({e})") from e


def _read_part(path: Path) -> pa.Table:
    with _open_part(path) as part:
        try:
            return part.read()
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: unreadable Parquet part ({e})") from e


def read_table(session_dir: Path, name: str) -> pa.Table | None:
    """Every finished part of table `name`, in order; None when it has none."""
    parts = part_files(session_dir / PARTS_DIR / name)
    if not parts:
        return None
    tables = [_read_part(path) for path in parts]
    for path, table in zip(parts, tables, strict=True):
        if not table.schema.equals(tables[0].schema):
            raise DataError(f"{path}: schema differs from {parts[0].name}'s")
    return pa.concat_tables(tables)


def consolidate(session_dir: Path) -> dict[str, int]:
    """Turn a live session's parts into session files; returns the rows per table.

    Steps, each safe to interrupt: write each `<table>.parquet` (tmp + rename), then meta.json
    with `consolidated: true`, `rows` and file hashes, then remove `parts/`. Rerunning after a
    crash rebuilds the files from the parts, which go only once meta.json is written. A
    session that was never closed (the recorder died) gets `recovered: true`; its `rows` are
    what survived, cut at the last `checkpoint` in meta.json when there is one (`cut`: the rows
    cut per table), so that every table ends at the same event. Market-data kinds without
    rows get no file, as in an import.
    """
    meta = read_meta(session_dir)
    if not meta:
        raise DataError(f"{session_dir}: no {META_FILE}; not a live session recording")
    if meta.get("consolidated") is True:
        _remove_parts(session_dir)  # finish an interrupted cleanup
        return _rows_of(meta)
    if not (session_dir / PARTS_DIR).is_dir():
        raise DataError(f"{session_dir}: no {PARTS_DIR}/ directory; nothing to consolidate")
    for stale in session_dir.glob(f"*.parquet{TMP_SUFFIX}"):  # an interrupted earlier run's
        stale.unlink()
    tables = {
        d.name: ps for d in sorted((session_dir / PARTS_DIR).iterdir()) if (ps := part_files(d))
    }
    rows = {name: sum(_part_rows(path) for path in parts) for name, parts in tables.items()}
    _check_counts(session_dir, meta, rows)
    # a killed recorder's tables end at different moments: cut them at its last checkpoint
    cut = None if meta.get("closed") is True else Checkpoint.from_meta(meta)
    files: dict[str, str] = {}
    kept: dict[str, int] = {}
    for name, (kept[name], sha256) in _merge_tables(session_dir, tables, cut).items():
        target = session_dir / f"{name}.parquet"
        if kept[name] == 0 and name in KINDS:
            target.unlink()  # readers expect a kind's file to hold rows; an absent kind is
            continue  # the contract
        files[target.name] = sha256
    fsync(session_dir)
    meta.update(consolidated=True, rows=kept, files=files)
    meta.setdefault("session", _session_name(session_dir))
    if meta.get("closed") is not True:
        meta["recovered"] = True
        if cut is not None:
            meta["cut"] = {name: rows[name] - kept[name] for name in sorted(rows)}
    write_json_atomic(session_dir / META_FILE, meta)
    _remove_parts(session_dir)
    return kept


def _rows_of(meta: Mapping[str, object]) -> dict[str, int]:
    rows = meta.get("rows")
    return {str(k): int(v) for k, v in rows.items()} if isinstance(rows, dict) else {}


def _check_counts(session_dir: Path, meta: Mapping[str, object], rows: Mapping[str, int]) -> None:
    """A closed session's meta.json counted every table's rows: the parts must hold them all."""
    recorded = meta.get("tables") if meta.get("closed") is True else None
    if not isinstance(recorded, dict):
        return
    for name, counts in sorted(recorded.items()):
        expected = counts.get("rows") if isinstance(counts, dict) else None
        if isinstance(expected, int) and expected != rows.get(name, 0):
            raise DataError(
                f"{session_dir / PARTS_DIR / name}: {META_FILE} says {expected:,} rows were "
                f"recorded but the parts hold {rows.get(name, 0):,}; parts are missing or extra"
            )


def _part_rows(path: Path) -> int:
    with _open_part(path) as part:
        return int(part.metadata.num_rows)


def _merge_tables(
    session_dir: Path, tables: Mapping[str, list[Path]], cut: Checkpoint | None
) -> dict[str, tuple[int, str]]:
    """Each table's parts merged into `<table>.parquet`: (rows written, the file's SHA-256)
    per table, in the order of `tables`.

    The tables are merged side by side, the largest first: a merge spends its time decoding
    and compressing inside Arrow, which lets go of the GIL, so closing a long live run takes
    about as long as its largest table (raw frames) instead of all of them. Every merge
    finishes before the first error (in table order) is raised; the parts stay for a rerun.
    """

    def merge(name: str) -> tuple[int, str]:
        target = session_dir / f"{name}.parquet"
        rows = _merge_parts(tables[name], target, name, cut)
        return rows, file_sha256(target)

    largest = sorted(tables, key=lambda name: -sum(p.stat().st_size for p in tables[name]))
    workers = max(1, min(len(largest), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="ticktape-merge") as pool:
        merging = {name: pool.submit(merge, name) for name in largest}
    return {name: merging[name].result() for name in tables}


def _merge_parts(parts: list[Path], target: Path, name: str, cut: Checkpoint | None) -> int:
    """Stream the parts into `target` atomically, one part in memory at a time, keeping the
    rows before `cut` (all when None); returns the rows written.

    Not store.write_parquet: that needs the whole table in memory, and a day of raw frames
    or book rows may not fit. Same settings, so the file reads like an imported one.
    """
    tmp = target.with_name(target.name + TMP_SUFFIX)
    first = _read_part(parts[0])
    seen = written = 0
    with pq.ParquetWriter(tmp, first.schema, compression="zstd", compression_level=9) as writer:
        for path in parts:
            table = first if path == parts[0] else _read_part(path)
            if not table.schema.equals(first.schema):
                raise DataError(f"{path}: schema differs from {parts[0].name}'s")
            rows = table.num_rows
            if cut is not None:
                table = cut.keep(name, table, seen)
            seen += rows
            written += table.num_rows
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    fsync(tmp)
    os.replace(tmp, target)
    return written


def _remove_parts(session_dir: Path) -> None:
    parts, removed = session_dir / PARTS_DIR, session_dir / _REMOVED_PARTS
    if parts.is_dir():
        if removed.exists():
            shutil.rmtree(removed)
        parts.rename(removed)  # one atomic step: parts/ is there whole, or gone
        fsync(session_dir)
    if removed.exists():
        shutil.rmtree(removed)


def _session_name(session_dir: Path) -> str:
    """`venue/symbol/date` when the directory sits in the data-directory layout, else its name."""
    name = "/".join(session_dir.resolve().parts[-3:])
    try:
        return str(SessionKey.parse(name))
    except DataError:
        return session_dir.name
