"""Where sessions live on disk and how they are written: atomically, replacing any old copy.

Layout: ``<data_dir>/<venue>/<symbol>/<date>/{quotes,trades,book}.parquet`` plus ``meta.json``
and any raw venue files kept for feed replays. A session is written into a hidden temporary
directory beside its final place and renamed into place, so a crash never leaves a
half-written session visible and a re-import replaces, never duplicates. `SessionWriter`
does the same a batch at a time, for importers whose input does not fit in memory: its files
are byte for byte those write_session writes for the whole tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import DataError
from simulator.sources.schema import RowChecker, conform, require_valid
from simulator.types import KINDS, SessionKey, book_levels

DATA_DIR_ENV: Final = "TICKTAPE_DATA"
DEFAULT_DATA_DIR: Final = "data"
META_FILE: Final = "meta.json"
ROW_GROUP_ROWS: Final = 65_536
"""Row-group size of written Parquet files: the unit a source reads at a time."""


def default_data_dir() -> Path:
    """`$TICKTAPE_DATA` when set, else `data/` under the working directory."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def session_dir(data_dir: Path, key: SessionKey) -> Path:
    return data_dir / key.venue / key.symbol / key.date


def kind_path(data_dir: Path, key: SessionKey, kind: str) -> Path:
    return session_dir(data_dir, key) / f"{kind}.parquet"


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write one table with the project's settings (zstd, fixed row groups, fsync)."""
    pq.write_table(
        table, path, compression="zstd", compression_level=9, row_group_size=ROW_GROUP_ROWS
    )
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_session(
    data_dir: Path,
    key: SessionKey,
    tables: Mapping[str, pa.Table],
    *,
    meta: Mapping[str, object],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Validate and write a whole session atomically; return its directory.

    `tables` maps a kind (quotes/trades/book) to its table; every table is checked against
    the data contract first and a violation raises DataError before anything is written.
    """
    unknown = sorted(set(tables) - set(KINDS))
    if unknown:
        raise DataError(f"{key}: unknown data kind(s) {unknown}; expected some of {list(KINDS)}")
    for kind, table in tables.items():
        require_valid(table, kind, where=f"{key} {kind}")
    final = session_dir(data_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".tmp-{key.date}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for kind, table in tables.items():
            write_parquet(table, staging / f"{kind}.parquet")
        for name, payload in (extra_files or {}).items():
            (staging / name).write_bytes(payload)
        files = {p.name: file_sha256(p) for p in sorted(staging.iterdir())}
        full_meta = {**meta, "session": str(key), "files": files}
        (staging / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n")
        _swap_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


class SessionWriter:
    """Write one session's tables batch by batch (bounded memory), then publish it atomically.

    `write(kind, batch)` checks each batch against the data contract (RowChecker carries the
    last row across batches, so the checks equal write_session's on the whole table) and
    writes every full row group of ROW_GROUP_ROWS rows to a staging directory; `commit(meta)`
    raises DataError for the first kind (in `kinds` order) with a bad row, else writes the
    rest, meta.json and swaps the directory into place. Leaving a `with` block without a
    commit (an error) removes the staging directory. Kinds never written get no file.
    """

    def __init__(self, data_dir: Path, key: SessionKey, kinds: Sequence[str]) -> None:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise DataError(
                f"{key}: unknown data kind(s) {unknown}; expected some of {list(KINDS)}"
            )
        self.key, self.kinds = key, tuple(kinds)
        self._final = session_dir(data_dir, key)
        # directories made here are removed again by abort(): a failed import leaves nothing
        self._made = [
            d for d in (self._final.parent, *self._final.parent.parents) if not d.exists()
        ]
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._staging = self._final.parent / f".tmp-{key.date}-{uuid.uuid4().hex[:8]}"
        self._staging.mkdir()
        self._pending: dict[str, list[pa.Table]] = {kind: [] for kind in self.kinds}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._checkers: dict[str, RowChecker] = {}
        self.rows: dict[str, int] = dict.fromkeys(self.kinds, 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._staging.exists():
            self.abort()

    def write(self, kind: str, batch: pa.Table) -> None:
        """Append `batch` (rows in file order) to the `kind` table."""
        if batch.num_rows == 0:
            return
        where = f"{self.key} {kind}"
        checker = self._checkers.get(kind)
        if checker is None:
            levels = book_levels(batch.column_names) if kind == "book" else 0
            checker = self._checkers[kind] = RowChecker(kind, where, levels)
        checker.check(conform(batch, kind, where))
        self._pending[kind].append(batch)
        self.rows[kind] += batch.num_rows
        if sum(t.num_rows for t in self._pending[kind]) >= ROW_GROUP_ROWS:
            self._flush(kind, final=False)

    def _flush(self, kind: str, *, final: bool) -> None:
        pending = pa.concat_tables(self._pending[kind])
        full = pending.num_rows if final else pending.num_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
        if full:
            writer = self._writers.get(kind)
            if writer is None:
                path = self._staging / f"{kind}.parquet"
                writer = pq.ParquetWriter(
                    path, pending.schema, compression="zstd", compression_level=9
                )
                self._writers[kind] = writer
            # one contiguous chunk per row group, as pq.write_table slices a whole table
            writer.write_table(pending.slice(0, full).combine_chunks(), ROW_GROUP_ROWS)
        self._pending[kind] = [pending.slice(full)] if full < pending.num_rows else []

    def close_tables(self) -> dict[str, Path]:
        """Check and finish every table (DataError for the first kind with a bad row); return
        the written files by kind, readable until commit() or abort()."""
        for kind in self.kinds:
            checker = self._checkers.get(kind)
            if checker is not None:
                checker.report.raise_if_bad()
        for kind in self.kinds:
            if self._pending[kind]:
                self._flush(kind, final=True)
            writer = self._writers.pop(kind, None)
            if writer is not None:
                writer.close()
                with (self._staging / f"{kind}.parquet").open("rb") as handle:
                    os.fsync(handle.fileno())
        return {
            kind: self._staging / f"{kind}.parquet"
            for kind in self.kinds
            if (self._staging / f"{kind}.parquet").exists()
        }

    def staged(self, name: str) -> Path:
        """Where to write an extra file of the session (committed with it)."""
        return self._staging / name

    def commit(
        self, meta: Mapping[str, object], extra_files: Mapping[str, bytes | Path] | None = None
    ) -> Path:
        """Check, finish and publish the session; return its directory. `extra_files` are
        copied in by name (a Path is copied, never read whole)."""
        self.close_tables()
        for name, payload in (extra_files or {}).items():
            if isinstance(payload, Path):
                shutil.copyfile(payload, self._staging / name)
            else:
                (self._staging / name).write_bytes(payload)
        files = {p.name: file_sha256(p) for p in sorted(self._staging.iterdir())}
        full_meta = {**meta, "session": str(self.key), "files": files}
        (self._staging / META_FILE).write_text(
            json.dumps(full_meta, indent=2, sort_keys=True) + "\n"
        )
        _swap_into_place(self._staging, self._final)
        return self._final

    def abort(self) -> None:
        """Drop everything written so far."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self._staging, ignore_errors=True)
        for directory in self._made:  # innermost first
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename `staging` to `final`; an old copy is moved aside first and removed after."""
    retired = None
    if final.exists():
        retired = final.parent / f".tmp-old-{final.name}-{uuid.uuid4().hex[:8]}"
        final.rename(retired)
    staging.rename(final)
    if retired is not None:
        shutil.rmtree(retired)


def read_meta(directory: Path) -> dict[str, object]:
    path = directory / META_FILE
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(loaded).__name__}")
    return loaded
