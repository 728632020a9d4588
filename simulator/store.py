"""Where sessions live on disk and how they are written: atomically, replacing any old copy.

Layout: ``<data_dir>/<venue>/<symbol>/<date>/{quotes,trades,book}.parquet`` plus ``meta.json``
and any raw venue files kept for feed replays. A session is written into a hidden temporary
directory beside its final place and renamed into place, so a crash never leaves a
half-written session visible and a re-import replaces, never duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import DataError
from simulator.sources.schema import require_valid
from simulator.types import KINDS, SessionKey

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
