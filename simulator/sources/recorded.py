"""Streaming sources over recorded sessions: Parquet files and DuckDB queries.

(Several sources are interleaved by `simulator.sources.merge`.)

A source yields `EventBatch`es: columnar slices of at most `batch_rows` events whose columns
are exposed as zero-copy memoryviews over numpy arrays, the fastest thing CPython can walk
event by event (no per-event allocation, no numpy scalar boxing). Every batch has passed the
data-contract checks of `schema`; a file is never read whole unless the caller asks for the
`sort` repair, so memory stays bounded whatever the session length.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulator.errors import DataError
from simulator.sources.schema import CheckReport, RowChecker, conform, required_columns
from simulator.types import KINDS, book_levels

Repair = Literal["drop", "sort"]
BatchTransform = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
"""Rewrites a file's raw record batches before they are checked (stress injection)."""
DEFAULT_BATCH_ROWS: Final = 65_536
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class EventBatch:
    """Up to `batch_rows` consecutive events of one source, columnar.

    `columns` maps a column name to a memoryview over a numpy array (float64 for prices and
    sizes, int64 for times and ids, int8 for side): index it or zip it in the hot loop.
    `ts_event` falls back to `ts_recv` where the venue sent no time. `record` is the same
    data as Arrow for vectorised work.
    """

    source: int
    kind: str
    first_row: int
    record: pa.RecordBatch
    columns: dict[str, memoryview]
    ts_recv: IntArray
    seq: IntArray

    def __len__(self) -> int:
        return len(self.ts_recv)


class BatchSource(Protocol):
    """What `merge` and the engine consume."""

    name: str
    kind: str
    priority: int

    def batches(self) -> Iterator[EventBatch]: ...


def infer_kind(column_names: Sequence[str]) -> str:
    """Guess the kind of a table from its columns: book > quotes > trades."""
    names = set(column_names)
    if book_levels(list(column_names)) > 0:
        return "book"
    if set(required_columns("quotes", 0)) <= names:
        return "quotes"
    if {"px", "sz", "side"} <= names:
        return "trades"
    raise DataError(
        f"cannot tell the data kind from columns {sorted(names)}: quotes need bid_px, bid_sz, "
        "ask_px, ask_sz; trades need px, sz, side; a book needs bid_px_0, ... per level"
    )


def _view(column: pa.Array, dtype: type[np.generic], fill: object) -> npt.NDArray[np.generic]:
    if column.null_count:
        column = pc.fill_null(column, fill)
    return np.ascontiguousarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


@dataclass(slots=True)
class RowFilter:
    """Conform + check + (optionally) drop, batch by batch, then wrap as EventBatch.

    Live mode runs its consumed events through one of these too (with the drop repair), so
    live and replay apply the same contract."""

    kind: str
    where: str
    priority: int = 0
    repair: tuple[Repair, ...] = ()
    checker: RowChecker | None = None
    rows_out: int = 0
    levels: int = 0

    def wrap(self, raw: pa.RecordBatch) -> EventBatch | None:
        table = conform(pa.Table.from_batches([raw]), self.kind, self.where)
        if self.checker is None:
            self.levels = book_levels(table.column_names) if self.kind == "book" else 0
            self.checker = RowChecker(self.kind, self.where, self.levels)
        first_row = self.checker.report.rows
        bad = self.checker.check(table)
        if bad.any():
            if "drop" not in self.repair:
                self.checker.report.raise_if_bad()
            table = table.filter(pa.array(~bad))
            self.checker.report.repaired["dropped"] += int(bad.sum())
        if table.num_rows == 0:
            return None
        record = table.combine_chunks().to_batches()[0]
        return self._event_batch(record, first_row)

    def _event_batch(self, record: pa.RecordBatch, first_row: int) -> EventBatch:
        ts_recv = _view(record.column("ts_recv"), np.int64, 0).astype(np.int64, copy=False)
        columns: dict[str, memoryview] = {"ts_recv": ts_recv.data}
        ts_event = record.column("ts_event")
        if ts_event.null_count:
            ts_event = pc.if_else(ts_event.is_null(), record.column("ts_recv"), ts_event)
        columns["ts_event"] = _view(ts_event, np.int64, 0).data
        for name in record.column_names:
            if name in columns:
                continue
            dtype = record.schema.field(name).type
            if pa.types.is_floating(dtype):
                columns[name] = _view(record.column(name), np.float64, np.nan).data
            elif pa.types.is_integer(dtype):
                columns[name] = _view(record.column(name), np.int64, 0).data
        if "seq" in record.column_names:
            seq = np.asarray(columns["seq"], dtype=np.int64)
        else:
            seq = np.arange(first_row, first_row + record.num_rows, dtype=np.int64)
        self.rows_out += record.num_rows
        return EventBatch(
            source=self.priority,
            kind=self.kind,
            first_row=first_row,
            record=record,
            columns=columns,
            ts_recv=ts_recv,
            seq=seq,
        )

    @property
    def report(self) -> CheckReport:
        if self.checker is None:
            return CheckReport(where=self.where, kind=self.kind)
        return self.checker.report


def _sorted_by_time(table: pa.Table, report_repaired: dict[str, int]) -> pa.Table:
    """The `sort` repair: stable sort by (ts_recv, seq); counts the rows it moved."""
    ts = np.asarray(table.column("ts_recv").to_numpy(), dtype=np.int64)
    late = int(np.count_nonzero(ts[1:] < np.maximum.accumulate(ts)[:-1]))
    if late:
        keys = [("ts_recv", "ascending")]
        if "seq" in table.column_names:
            keys.append(("seq", "ascending"))
        table = table.take(pc.sort_indices(table, sort_keys=keys))
        report_repaired["sorted"] = report_repaired.get("sorted", 0) + late
    return table


class ParquetSource:
    """Stream one Parquet file of one kind, checked batch by batch."""

    def __init__(
        self,
        path: Path,
        *,
        kind: str | None = None,
        priority: int = 0,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        repair: Sequence[Repair] = (),
        columns: Sequence[str] | None = None,
        transform: BatchTransform | None = None,
    ) -> None:
        self.path = path
        self._transform = transform
        self.name = str(path)
        self.priority = priority
        self._batch_rows = batch_rows
        self._columns = list(columns) if columns is not None else None
        self._file = open_parquet(path)
        self.kind = kind or infer_kind(self._file.schema_arrow.names)
        if self.kind not in KINDS:
            raise DataError(f"{path}: unknown data kind '{self.kind}'; expected one of {KINDS}")
        if self._file.metadata.num_rows == 0:
            raise DataError(f"{path}: no rows (empty file)")
        self._state = RowFilter(self.kind, str(path), priority, tuple(repair))

    @property
    def report(self) -> CheckReport:
        """Problems found and repairs made so far (complete once batches() is exhausted)."""
        return self._state.report

    def batches(self) -> Iterator[EventBatch]:
        if "sort" in self._state.repair:
            yield from self._sorted_batches()
            return
        raw_batches: Iterator[pa.RecordBatch] = self._file.iter_batches(
            self._batch_rows, columns=self._columns
        )
        if self._transform is not None:  # before the checks: injected faults must be caught
            raw_batches = self._transform(raw_batches)
        try:
            for raw in read_ahead(raw_batches):
                batch = self._state.wrap(raw)
                if batch is not None:
                    yield batch
        except (OSError, pa.ArrowException) as e:
            raise DataError(
                f"{self.path}: cannot read ({_one_line(e)}); the file is truncated or corrupt"
            ) from e

    def _sorted_batches(self) -> Iterator[EventBatch]:
        # Sorting needs the whole file in memory: the one repair that is not streamed.
        try:
            table = self._file.read(columns=self._columns)
        except (OSError, pa.ArrowException) as e:
            raise DataError(
                f"{self.path}: cannot read ({_one_line(e)}); the file is truncated or corrupt"
            ) from e
        table = conform(table, self.kind, str(self.path))
        repaired: dict[str, int] = {}
        table = _sorted_by_time(table, repaired)
        for raw in table.to_batches(self._batch_rows):
            batch = self._state.wrap(raw)
            if batch is not None:
                yield batch
        self.report.repaired.update(repaired)


_END: Final = object()
_READERS: Final[set[_Reader]] = set()  # running read-ahead threads, for stop_readers()
_JOIN_S: Final = 30.0  # a reader finishes the batch it is decoding (ms) and stops


class _Reader:
    """One read-ahead thread: decodes into a bounded queue until told to stop."""

    def __init__(self, batches: Iterator[pa.RecordBatch], depth: int) -> None:
        self.pending: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.stop_event = threading.Event()
        self._batches = batches
        self.owner = threading.get_ident()  # the thread that walks the batches: its run's
        self.thread = threading.Thread(
            target=self._produce, name="ticktape-read-ahead", daemon=True
        )
        _READERS.add(self)
        self.thread.start()

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(e)

    def _put(self, item: object) -> bool:
        while not self.stop_event.is_set():
            try:
                self.pending.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        """Stop and join the thread: no thread may still be in Arrow's native code when the
        process exits (that aborts it: "terminate called without an active exception")."""
        self.stop_event.set()
        if self.thread is not threading.current_thread():
            for _ in range(100):
                try:
                    self.thread.join(_JOIN_S)
                    break
                except RuntimeError:  # Ctrl-C landed inside start(): it may be starting yet
                    time.sleep(0.01)  # (after 1 s: it never started, nothing to join)
        _READERS.discard(self)


def stop_readers() -> None:
    """Stop the read-ahead threads of the calling thread's run (an interrupted or failed
    run); runs in other threads keep theirs."""
    me = threading.get_ident()
    for reader in list(_READERS):
        if reader.owner == me:
            reader.stop()


def read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Decode the next batches in a background thread while the caller walks this one.

    Arrow releases the GIL while it decompresses, so reading overlaps the Python event walk.
    Order is unchanged and at most `depth` batches wait, so memory stays bounded; an error
    in the reader is raised here, in the caller's thread. Closing the iterator (or
    stop_readers()) stops and joins the thread.
    """
    reader = _Reader(batches, depth)
    try:
        while True:
            item = reader.pending.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(pa.RecordBatch, item)
    finally:
        reader.stop()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def open_parquet(path: Path) -> pq.ParquetFile:
    """Open a Parquet file, turning every way it can be unreadable into one DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        # pre_buffer keeps every row group read so far cached until the file is closed:
        # memory would grow with the session instead of staying bounded
        return pq.ParquetFile(path, pre_buffer=False)
    except (OSError, pa.ArrowException) as e:
        raise DataError(
            f"{path}: not a readable Parquet file ({_one_line(e)}); "
            "it is truncated, corrupt or another format"
        ) from e


class DuckDBSource:
    """Stream the result of any SQL query (over the catalog's views) as checked batches."""

    def __init__(
        self,
        connection: object,
        sql: str,
        *,
        kind: str | None = None,
        priority: int = 0,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        repair: Sequence[Repair] = (),
    ) -> None:
        import duckdb  # local: only this source needs it at import time of the module

        if not isinstance(connection, duckdb.DuckDBPyConnection):
            raise TypeError("connection must be a duckdb connection (see Catalog.connect())")
        if "sort" in repair:
            raise DataError(
                "the sort repair is not available for SQL sources; add ORDER BY ts_recv"
            )
        self.name = f"sql: {' '.join(sql.split())[:80]}"
        self.priority = priority
        try:
            reader = connection.sql(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as e:
            raise DataError(f"SQL query failed: {e}") from e
        if reader is None:
            raise DataError(f"SQL query returned no result set: {sql}")
        self._reader: pa.RecordBatchReader = reader
        self.kind = kind or infer_kind(self._reader.schema.names)
        self._state = RowFilter(self.kind, self.name, priority, tuple(repair))

    @property
    def report(self) -> CheckReport:
        return self._state.report

    def batches(self) -> Iterator[EventBatch]:
        for raw in self._reader:
            batch = self._state.wrap(raw)
            if batch is not None:
                yield batch


def file_time_span(path: Path) -> tuple[int, int, int]:
    """(rows, min ts_recv, max ts_recv) of a file, from row-group statistics when present."""
    meta = open_parquet(path).metadata
    names = meta.schema.to_arrow_schema().names
    name = "ts_recv" if "ts_recv" in names else "ts_ns"  # a plain file's single timestamp
    index = names.index(name) if name in names else -1
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics if index >= 0 else None
        if stats is None or not stats.has_min_max:
            column = conform(pq.read_table(path), infer_kind(names), str(path)).column("ts_recv")
            values = column.to_numpy()
            return meta.num_rows, int(values.min()), int(values.max())
        lows.append(int(stats.min))
        highs.append(int(stats.max))
    return meta.num_rows, min(lows), max(highs)


def check_file(
    path: Path, *, kind: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> CheckReport:
    """Full validation report of one Parquet file: every problem counted, nothing raised
    for row problems (structural problems — columns, dtypes, unreadable file — still raise)."""
    parquet = open_parquet(path)
    kind = kind or infer_kind(parquet.schema_arrow.names)
    if parquet.metadata.num_rows == 0:
        raise DataError(f"{path}: no rows (empty file)")
    checker: RowChecker | None = None
    try:
        for raw in parquet.iter_batches(batch_rows):
            table = conform(pa.Table.from_batches([raw]), kind, str(path))
            if checker is None:
                levels = book_levels(table.column_names) if kind == "book" else 0
                checker = RowChecker(kind, str(path), levels)
            checker.check(table)
    except (OSError, pa.ArrowException) as e:
        raise DataError(
            f"{path}: cannot read ({_one_line(e)}); the file is truncated or corrupt"
        ) from e
    if checker is None:
        raise DataError(f"{path}: no rows (empty file)")
    return checker.report


def write_repaired(source: ParquetSource, out: Path) -> CheckReport:
    """Stream `source` (opened with a repair policy) into `out`; return what was repaired."""
    writer: pq.ParquetWriter | None = None
    try:
        for batch in source.batches():
            if writer is None:
                writer = pq.ParquetWriter(out, batch.record.schema, compression="zstd")
            writer.write_batch(batch.record)
    finally:
        if writer is not None:
            writer.close()
    return source.report


__all__ = [
    "BatchTransform",
    "DuckDBSource",
    "EventBatch",
    "ParquetSource",
    "RowFilter",
    "check_file",
    "file_time_span",
    "infer_kind",
    "open_parquet",
    "stop_readers",
    "write_repaired",
]
