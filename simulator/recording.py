"""What a run leaves behind: per-event decisions (chunked Parquet), orders, fills, equity,
risk rejections, stage-latency histograms, the digest and manifest.json.

The rare tables (orders, fills, rejections, cancels) are Python rows the engine appends; once
one holds `spill_rows` rows they move to Parquet under the run directory (the writer thread
converts and writes them) and close() reads them back in front of the rest, so a long live
run's memory stays flat and its tables are the same as if they had stayed in memory.

Per-event values go into preallocated numpy columns exposed to the engine as memoryviews;
a full chunk's timings are binned into the latency histograms, then the chunk is copied into
one of a few reused buffers and handed to the writer thread, which hashes it into the digest
and writes it to Parquet (chunks in order, so the digest is the same), so memory stays
bounded and the hot loop only writes array slots.

The digest is sha256 over the deterministic columns of decisions (never the measured
timings), then orders and fills, in a fixed canonical byte form: equal digests mean the same
decisions, orders and fills, bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulator.metrics import LatencyHistogram, StageBinner, bucket_upper
from simulator.types import CancelRequest, Fill, OrderRequest

CHUNK_ROWS: Final = 65_536
POOL: Final = 4  # chunk buffers: one being filled, two waiting, one being written
SPILL_ROWS: Final = 8192
"""Rows one rare table holds in memory before they are spilled (a few MB at most)."""
SPILL_DIR: Final = ".spill"
ROLL_CHUNKS: Final = 256
"""Decision chunks per part of decisions.parquet and equity.parquet (see _Parts): a replay of
up to ~16.7M events writes one part (renamed into place at close, no copy) and a longer one
keeps at most ~3.4 MB of row-group metadata per file."""
LIVE_ROLL_CHUNKS: Final = 32
"""The same for live (~2M events, about a minute at max speed; ~0.4 MB of metadata at most):
its memory stays flat. The parts are copied into one file at close, ~0.5 s per million
events (~12 s after 10 minutes at 36k events/s)."""
EQUITY_STRIDE: Final = 100
EQUITY_COLUMNS: Final = ("event_index", "ts_recv", "position", "equity")
STAGES: Final = ("features", "inference", "decision", "risk", "order", "tick_to_trade", "queue")
"""Measured stage times, tick-to-trade, and (simulated-time runs) each event's queueing delay."""
DECISION_COLUMNS: Final = (
    ("event_index", np.int64),
    ("ts_recv", np.int64),
    ("kind", np.int8),
    ("p", np.float64),
    ("target", np.float64),
    ("position", np.float64),
    ("equity", np.float64),
    ("order_id", np.int64),
    ("reject", np.int8),
    ("skip", np.int8),  # simulated time: 1 conflated away, 2 dropped by the queue bound
)
DIGEST_COLUMNS: Final = tuple(name for name, _ in DECISION_COLUMNS)
TIMING_COLUMNS: Final = tuple(f"{stage}_ns" for stage in STAGES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    event_index: int
    ts: int
    side: int
    qty: float
    reason: str  # the reason's name (a built-in RejectReason or a user check's)
    reason_code: int  # the code in decisions.reject (built-ins: RejectReason values)


@dataclass(slots=True)
class RunTables:
    """The rare records (orders, fills, rejections, cancels): a handful per thousand events.

    The lists hold the rows since the last spill (RunRecorder.spill); `spilled` counts the
    rows moved out per list, so `n_orders`, `n_fills`, ... and `rejection_counts` are the run's.
    """

    orders: list[OrderRequest] = field(default_factory=list)
    order_p: list[float] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)  # cancels and replaces sent
    spilled: dict[str, int] = field(
        default_factory=lambda: {"orders": 0, "fills": 0, "rejections": 0, "cancels": 0}
    )
    spilled_reasons: dict[str, int] = field(default_factory=dict)  # reason name -> rejections

    @property
    def n_orders(self) -> int:
        return self.spilled["orders"] + len(self.orders)

    @property
    def n_fills(self) -> int:
        return self.spilled["fills"] + len(self.fills)

    @property
    def n_rejections(self) -> int:
        return self.spilled["rejections"] + len(self.rejections)

    @property
    def n_cancels(self) -> int:
        return self.spilled["cancels"] + len(self.cancels)

    def rejection_counts(self) -> dict[str, int]:
        """Risk rejections of the run per reason name, most frequent first (ties by name)."""
        counts = dict(self.spilled_reasons)  # a copy: the dashboard reads from another thread
        for rejection in self.rejections:
            counts[rejection.reason] = counts.get(rejection.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def holds(self, rows: int) -> bool:
        """Whether one of the lists holds `rows` rows or more."""
        return max(len(self.orders), len(self.fills), len(self.rejections),
                   len(self.cancels)) >= rows  # fmt: skip

    def take(self) -> RunTables:
        """The rows held (as a RunTables of their own), counted as spilled; the lists start
        empty again (the engine looks them up on every append, never keeps one)."""
        taken = RunTables(self.orders, self.order_p, self.fills, self.rejections, self.cancels)
        self.orders, self.order_p, self.fills, self.rejections, self.cancels = [], [], [], [], []
        spilled = self.spilled
        spilled["orders"] += len(taken.orders)
        spilled["fills"] += len(taken.fills)
        spilled["rejections"] += len(taken.rejections)
        spilled["cancels"] += len(taken.cancels)
        reasons = self.spilled_reasons
        for rejection in taken.rejections:
            reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
        return taken


class RunRecorder:
    """Chunked per-event columns plus the rare tables, written under `out_dir`.

    `spill_at_flush`: spill the rare tables (see spill) after each decision chunk; live turns
    it off and spills between drains, once its recording has taken the new orders and fills.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        chunk_rows: int = CHUNK_ROWS,
        spill_rows: int | None = None,  # SPILL_ROWS
        spill_at_flush: bool = True,
        roll_chunks: int = ROLL_CHUNKS,
    ) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = chunk_rows
        self.spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        self.spill_at_flush = spill_at_flush
        self.arrays = {name: np.zeros(chunk_rows, dtype=dt) for name, dt in DECISION_COLUMNS}
        # the stage columns are the rows of one block, binned in one pass (StageBinner)
        self._timings = np.full((len(STAGES), chunk_rows), -1, np.int64)
        self.arrays.update(zip(TIMING_COLUMNS, self._timings, strict=True))
        self.arrays["order_id"][:] = -1  # written by the engine only on events that send one
        # memoryviews typed Any: typeshed's memoryview only admits int items, these hold floats too
        self.views: dict[str, Any] = {name: array.data for name, array in self.arrays.items()}
        self.histograms = {stage: LatencyHistogram(stage) for stage in STAGES}
        self._binner = StageBinner([self.histograms[stage] for stage in STAGES], chunk_rows)
        self.tables = RunTables()
        self.rows_written = 0
        self._rows = np.arange(chunk_rows, dtype=np.int64)
        self._digest = hashlib.sha256()
        self._writer = _TableWriter(out_dir, _ChunkLayout(chunk_rows), self._digest, roll_chunks)
        # pyarrow imports numpy.ma on its first numpy conversion (~5-20 ms): pay it here,
        # while the run loads, not at the first flush in the middle of the event loop
        pa.table({name: array[:0] for name, array in self.arrays.items()})

    def flush(self, n: int) -> None:
        """Write the first `n` rows of the chunk, then reset its sparse columns.

        The engine writes every row's ts_recv, kind, p, target, position and equity; the
        sparse columns (timings of stages that did not run, order_id, reject) keep their
        "did not happen" value unless written; event_index is filled here.
        """
        if n == 0:
            return
        arrays = self.arrays
        np.add(self._rows[:n], self.rows_written, out=arrays["event_index"][:n])
        # binned here, not in the writer thread: its ~40 numpy calls each hand the GIL back
        # and forth, and each return waits for the event loop's switch interval (5 ms), so the
        # writer fell behind and the loop waited for it (~0.2 us per obi_rule event)
        self._binner.add(self._timings[:, :n])
        # a copy into a reused buffer: the writer thread hashes and encodes it while the
        # chunk is reused (warm pages: a fresh copy of 65,536 rows faulted in ~9 MB, ~3 ms)
        self._writer.put(self._writer.take().fill(arrays, n))
        self.rows_written += n
        self._timings[:, :n] = -1  # sparse columns: back to "did not happen"
        arrays["order_id"][:n] = -1
        arrays["reject"][:n] = 0
        arrays["skip"][:n] = 0
        if self.spill_at_flush:
            self.spill(convert=True)

    def spill(self, *, convert: bool = False) -> None:
        """Once a rare table holds `spill_rows` rows, hand every held row to the writer
        thread, which appends them to Parquet under the run directory (read back by close).

        `convert`: make their Arrow tables here (~6 ms per 8,192 orders and fills), as a replay
        does at flush: in the writer thread pyarrow's conversions hand the GIL back ~80 times a
        spill, each time waiting for the busy event loop (up to 5 ms). Live leaves it to the
        writer: its loop lets the GIL go whenever it waits for the network.
        """
        if self.tables.holds(self.spill_rows):
            rows = self.tables.take()
            self._writer.put(rare_tables(rows) if convert else rows)

    def close(self) -> str:
        """Write the rare tables and histograms; return the run digest (hex)."""
        self._writer.close()
        self._writer.parts.merge()
        spill = self._writer.spill
        for name, table in rare_tables(self.tables):
            spilled = spill.read(name)
            if spilled is not None:  # the spilled rows come first, in the order they came
                table = pa.concat_tables([spilled, table]).combine_chunks()
            pq.write_table(table, self.out_dir / f"{name}.parquet", compression="zstd")
            if name == "cancels" and table.num_rows == 0:
                continue  # a table added later: hashed only when used (earlier digests hold)
            for column in _digest_columns(name, table):
                self._digest.update(name.encode())
                self._digest.update(_canonical_bytes(column))
        spill.remove()
        pq.write_table(self._histogram_table(), self.out_dir / "latency_histograms.parquet")
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop the writer thread of a run that failed or was interrupted; the error that
        stopped the run is the one reported, so a write error here is not raised."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):  # the decisions so far, as a finished run's
            self._writer.parts.merge()
        self._writer.spill.remove()

    def _histogram_table(self) -> pa.Table:
        rows: dict[str, list[object]] = {"stage": [], "bucket": [], "upper_ns": [], "count": []}
        for stage, histogram in self.histograms.items():
            buckets = np.flatnonzero(histogram.counts)
            rows["stage"].extend([stage] * len(buckets))
            rows["bucket"].extend(buckets.tolist())
            rows["upper_ns"].extend(bucket_upper(buckets).tolist())
            rows["count"].extend(histogram.counts[buckets].tolist())
        return pa.table(rows)


class _ChunkLayout:
    """Where each column of a chunk buffer lies in its one block of bytes: the digest columns
    first, in digest order, then the timings, each on a 64-byte boundary. With no padding
    between the digest columns (any chunk_rows that is a multiple of 64), a full chunk's
    digest bytes are one range: hashed in one call, which hands the GIL back once."""

    def __init__(self, chunk_rows: int) -> None:
        self.chunk_rows = chunk_rows
        self.offsets: dict[str, tuple[int, np.dtype[Any]]] = {}
        end, gapless, digest_end = 0, True, 0
        for name, dtype in (*DECISION_COLUMNS, *((t, np.int64) for t in TIMING_COLUMNS)):
            start = -(-end // 64) * 64
            gapless = gapless and (start == end or name not in DIGEST_COLUMNS)
            self.offsets[name] = (start, np.dtype(dtype))
            end = start + chunk_rows * np.dtype(dtype).itemsize
            if name == DIGEST_COLUMNS[-1]:
                digest_end = end
        self.size = end
        # little-endian bytes are the digest's canonical form
        self.digest_end = digest_end if gapless and sys.byteorder == "little" else None


class _Chunk:
    """A reused buffer holding one chunk's columns (the first `rows` rows of each), the Arrow
    table over them and its equity sample, all built once: pyarrow's numpy conversions hand
    the GIL back about twice a column, and each time the writer thread waits for the event
    loop to let it go (up to the 5 ms switch interval)."""

    __slots__ = (
        "_keep",
        "_sample",
        "_sampled",
        "_sampled_rows",
        "block",
        "columns",
        "rows",
        "table",
    )

    def __init__(self, layout: _ChunkLayout) -> None:
        self.block = np.empty(layout.size, np.uint8)
        self.columns = {
            name: self.block[start : start + layout.chunk_rows * dtype.itemsize].view(dtype)
            for name, (start, dtype) in layout.offsets.items()
        }
        self.table = _arrow_view(self.columns)
        self._keep = np.empty(layout.chunk_rows, np.bool_)
        self._sampled = {name: np.empty_like(self.columns[name]) for name in EQUITY_COLUMNS}
        self._sample = _arrow_view(self._sampled)
        self._sampled_rows = 0
        self.rows = 0

    def fill(self, arrays: dict[str, npt.NDArray[Any]], n: int) -> _Chunk:
        """Copy the first `n` rows of the recorder's columns and take the equity sample (in
        the event loop's thread: its numpy calls would each make the writer wait for the GIL)."""
        for name, column in self.columns.items():
            np.copyto(column[:n], arrays[name][:n])
        self.rows = n
        self._sample_equity()
        return self

    def decisions(self) -> pa.Table:
        """The chunk's rows as a table (a view of the buffer)."""
        return self.table if self.rows == len(self.table) else self.table.slice(0, self.rows)

    def equity(self) -> pa.Table:
        """The chunk's equity sample (a view of the sample scratch)."""
        return self._sample.slice(0, self._sampled_rows)

    def _sample_equity(self) -> None:
        """Every EQUITY_STRIDE-th event, every event that sent an order, and the chunk's last."""
        n, columns = self.rows, self.columns
        keep = np.greater_equal(columns["order_id"][:n], 0, out=self._keep[:n])
        keep[-int(columns["event_index"][0]) % EQUITY_STRIDE :: EQUITY_STRIDE] = True
        keep[-1] = True
        rows = np.flatnonzero(keep)
        for name, sampled in self._sampled.items():  # mode clip: no buffered copy of `out`
            np.take(columns[name][:n], rows, out=sampled[: len(rows)], mode="clip")
        self._sampled_rows = len(rows)


def _arrow_view(columns: dict[str, npt.NDArray[Any]]) -> pa.Table:
    """A table whose columns are the arrays' memory (no copy, no nulls)."""
    arrays = [
        pa.Array.from_buffers(
            pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
        )
        for values in columns.values()
    ]
    return pa.Table.from_arrays(arrays, names=list(columns))


class _TableWriter:
    """Hashes decision chunks into the digest and writes them (and the equity samples taken
    from them) in a background thread, in the order they came, handing their buffers back;
    spilled rare-table rows (a RunTables) go to `spill`.

    hashlib and Arrow release the GIL for most of that work, so it overlaps the event loop.
    At most POOL chunk buffers exist (take() waits for one) and two spills wait; an error is
    raised by the next put() or by close().
    """

    def __init__(
        self, out_dir: Path, layout: _ChunkLayout, digest: hashlib._Hash, roll_chunks: int
    ) -> None:
        self._layout = layout
        self._digest = digest
        self.spill = _Spill(out_dir / SPILL_DIR)
        self.parts = _Parts(out_dir, roll_chunks)
        # bounded by the buffers (at most POOL chunks) plus two spills
        self._queue: queue.Queue[_Chunk | RunTables | _Tables | None] = queue.Queue(POOL + 2)
        self._free: queue.Queue[_Chunk] = queue.Queue()
        self._made = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ticktape-recorder", daemon=True)
        self._thread.start()

    def take(self) -> _Chunk:
        """A free buffer: a written one, a new one while fewer than POOL exist, else the next
        one the thread is done with."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if self._made < POOL:
                self._made += 1
                return _Chunk(self._layout)
        self._raise_if_failed()
        return self._free.get()  # the thread hands back every buffer it got, even failing

    def put(self, item: _Chunk | RunTables | _Tables) -> None:
        """A filled buffer (the thread owns it until it hands it back), or rows to spill (or
        their tables)."""
        self._raise_if_failed()
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._free = queue.Queue()  # the buffers' memory goes back (a recorder may live on)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _hash(self, chunk: _Chunk) -> None:
        if chunk.rows == self._layout.chunk_rows and self._layout.digest_end is not None:
            self._digest.update(chunk.block[: self._layout.digest_end].data)
            return
        for name in DIGEST_COLUMNS:  # the same bytes, column by column
            values = chunk.columns[name][: chunk.rows]
            self._digest.update(values.astype(values.dtype.newbyteorder("<"), copy=False).data)

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                if not isinstance(item, _Chunk):
                    self.spill.write(rare_tables(item) if isinstance(item, RunTables) else item)
                    continue
                try:
                    self._hash(item)
                    # encoded: Arrow keeps no view of the buffer
                    self.parts.write(item.decisions(), item.equity())
                finally:
                    self._free.put(item)
        except BaseException as e:  # handed to the engine thread by put()/close()
            self._error = e
            while (item := self._queue.get()) is not None:  # drain, handing buffers back
                if isinstance(item, _Chunk):
                    self._free.put(item)
        finally:
            self.parts.close()
            self.spill.close()


class _Parts:
    """decisions.parquet and equity.parquet, written as parts of `roll_chunks` chunks each
    under the spill directory and made into the two files by `merge` (at close).

    An open ParquetWriter keeps every row group's metadata until it closes (~13 KB per
    decision chunk: ~0.5 MB a minute at 36k events/s, ~0.6 GB over a day of live), so one
    writer for the whole run grew the process for as long as it ran; a part's writer holds
    at most `roll_chunks` chunks' worth. A run of one part has it renamed into place; `merge`
    copies the parts' row groups one by one, as they were written (decoded and encoded
    again: pyarrow cannot copy a row group's bytes), so the files hold the same row groups
    a single writer wrote, byte for byte.
    """

    NAMES: Final = ("decisions", "equity")

    def __init__(self, out_dir: Path, roll_chunks: int) -> None:
        if roll_chunks < 1:
            raise ValueError(f"roll_chunks must be >= 1; found {roll_chunks}")
        self.out_dir = out_dir
        self.roll_chunks = roll_chunks
        self.paths: dict[str, list[Path]] = {name: [] for name in self.NAMES}
        self._writers: list[pq.ParquetWriter] = []
        self._chunks = 0  # in the open parts

    def write(self, decisions: pa.Table, equity: pa.Table) -> None:
        if not self._writers:
            self._open(decisions.schema, equity.schema)
        for writer, table in zip(self._writers, (decisions, equity), strict=True):
            writer.write_table(table)
        self._chunks += 1
        if self._chunks == self.roll_chunks:
            self.close()

    def close(self) -> None:
        """Finish the open parts (their footers)."""
        while self._writers:
            self._writers.pop().close()
        self._chunks = 0

    def merge(self) -> None:
        """Each table's parts into `<name>.parquet` in the run directory; the parts go."""
        for name, paths in self.paths.items():
            target = self.out_dir / f"{name}.parquet"
            if len(paths) == 1:
                os.replace(paths[0], target)
            elif paths:
                _concat_parquet(paths, target)
                for path in paths:
                    path.unlink()
            paths.clear()

    def _open(self, *schemas: pa.Schema) -> None:
        directory = self.out_dir / SPILL_DIR
        directory.mkdir(exist_ok=True)
        for name, schema in zip(self.NAMES, schemas, strict=True):
            path = directory / f"{name}-{len(self.paths[name]) + 1:06d}.parquet"
            self._writers.append(pq.ParquetWriter(path, schema, compression="zstd"))
            self.paths[name].append(path)


def _concat_parquet(paths: list[Path], target: Path) -> None:
    """The row groups of `paths`, in order, written as they were into `target` (tmp, then
    renamed; one row group in memory at a time)."""
    tmp = target.with_name(f"{target.name}.tmp")
    with pq.ParquetFile(paths[0]) as first:
        schema = first.schema_arrow
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for path in paths:
            with pq.ParquetFile(path) as part:
                for group in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(group))
    os.replace(tmp, target)


class _Spill:
    """The rare tables' spilled rows: one Parquet file per table under `directory`, a row
    group per spill (written by the writer thread), read back whole by RunRecorder.close."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writers: dict[str, pq.ParquetWriter] = {}

    def write(self, tables: _Tables) -> None:
        for name, table in tables:
            if table.num_rows == 0:
                continue
            writer = self._writers.get(name)
            if writer is None:
                self.directory.mkdir(exist_ok=True)
                writer = pq.ParquetWriter(self.directory / f"{name}.parquet", table.schema)
                self._writers[name] = writer
            writer.write_table(table)

    def close(self) -> None:
        while self._writers:
            self._writers.popitem()[1].close()

    def read(self, name: str) -> pa.Table | None:
        """The rows of `name` spilled so far (after close), None when none were."""
        path = self.directory / f"{name}.parquet"
        return pq.read_table(path) if path.exists() else None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


_REJECTION_SCHEMA: Final = pa.schema(
    [("event_index", pa.int64()), ("ts", pa.int64()), ("side", pa.int8()),
     ("qty", pa.float64()), ("reason", pa.string()), ("reason_code", pa.int8())]
)  # fmt: skip


def _digest_columns(name: str, table: pa.Table) -> list[pa.ChunkedArray]:
    """The columns a table contributes to the digest, in the canonical form of the first
    release: rejections by reason code (the name is a label of it), and a column added since
    only when it holds something other than its default, so runs that don't use it keep
    their digests."""
    if name == "risk_rejections":
        return [table.column(c) for c in ("event_index", "ts", "side", "qty", "reason_code")]
    return [
        table.column(c)
        for c in table.column_names
        if c not in _LATER_COLUMNS
        or pc.any(pc.not_equal(table.column(c), _LATER_COLUMNS[c])).as_py()
    ]


_LATER_COLUMNS: Final[dict[str, object]] = {"post_only": False}
"""Columns added after the first release of a table -> their default value."""


_Tables = tuple[tuple[str, pa.Table], ...]  # (name, table) in digest order: rare_tables


def rare_tables(tables: RunTables) -> _Tables:
    """The rare tables as written (file name without .parquet, table), in digest order."""
    return (
        ("orders", orders_table(tables)),
        ("fills", fills_table(tables.fills)),
        ("risk_rejections", rejections_table(tables.rejections)),
        ("cancels", cancels_table(tables.cancels)),
    )


def rejections_table(rejections: list[Rejection]) -> pa.Table:
    """Column by column (a replay spills in its event loop: from_pylist over asdict() rows
    took ~5 us a rejection, this ~0.4)."""
    names = _REJECTION_SCHEMA.names  # the Rejection fields, in the schema's order
    columns = {name: [getattr(r, name) for r in rejections] for name in names}
    return pa.table(columns, schema=_REJECTION_SCHEMA)


def orders_table(tables: RunTables) -> pa.Table:
    orders = tables.orders
    return pa.table(
        {
            "order_id": pa.array([o.order_id for o in orders], pa.int64()),
            "ts_decision": pa.array([o.ts_decision for o in orders], pa.int64()),
            "side": pa.array([int(o.side) for o in orders], pa.int8()),
            "qty": pa.array([o.qty for o in orders], pa.float64()),
            "order_type": pa.array([int(o.order_type) for o in orders], pa.int8()),
            "limit_px": pa.array([o.limit_px for o in orders], pa.float64()),
            "p": pa.array(tables.order_p, pa.float64()),
            "post_only": pa.array([o.post_only for o in orders], pa.bool_()),
        }
    )


def cancels_table(cancels: list[CancelRequest]) -> pa.Table:
    """Cancels and cancel-replaces as sent (`new_px`/`new_qty` null for a plain cancel)."""
    return pa.table(
        {
            "order_id": pa.array([c.order_id for c in cancels], pa.int64()),
            "ts_decision": pa.array([c.ts_decision for c in cancels], pa.int64()),
            "new_px": pa.array([c.new_px for c in cancels], pa.float64()),
            "new_qty": pa.array([c.new_qty for c in cancels], pa.float64()),
        }
    )


def fills_table(fills: list[Fill]) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([f.order_id for f in fills], pa.int64()),
            "side": pa.array([int(f.side) for f in fills], pa.int8()),
            "px": pa.array([f.px for f in fills], pa.float64()),
            "qty": pa.array([f.qty for f in fills], pa.float64()),
            "fee": pa.array([f.fee for f in fills], pa.float64()),
            "liquidity": pa.array([f.liquidity for f in fills], pa.string()),
            "ts_event": pa.array([f.ts_event for f in fills], pa.int64()),
            "ts_recv": pa.array([f.ts_recv for f in fills], pa.int64()),
        }
    )


def _canonical_bytes(column: pa.ChunkedArray) -> bytes:
    """Little-endian values with nulls as a fixed marker: the same table gives the same bytes."""
    if pa.types.is_string(column.type):
        return "\x1f".join("" if v is None else str(v) for v in column.to_pylist()).encode()
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype == object:
        values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()


def write_manifest(out_dir: Path, manifest: dict[str, object]) -> Path:
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path
