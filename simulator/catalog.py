"""The DuckDB catalog: which sessions exist, and SQL views over every Parquet file.

The catalog file (`<data_dir>/catalog.duckdb`) is derived data: it is rebuilt whenever the
set of Parquet files under the data directory changes (compared by path, size and mtime),
so it is never stale and never needs committing. A read-only data directory gets an
in-memory catalog instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb

from simulator.errors import DataError
from simulator.sources.recorded import file_time_span, open_parquet
from simulator.store import read_meta, session_dir
from simulator.types import KINDS, SESSION_DATE_PATTERN, SessionKey, book_levels

CATALOG_FILE: Final = "catalog.duckdb"
_DATE_DIR: Final = re.compile(SESSION_DATE_PATTERN)  # 2012-06-21, or 2026-11-21T153005 (live)
_PATH_PARTS: Final = r"([^/]+)/([^/]+)/([^/]+)/[^/]+$"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One row of `ticktape data ls`."""

    key: SessionKey
    kinds: tuple[str, ...]
    rows: dict[str, int]
    ts_start: int
    ts_end: int
    levels: int
    time_zone: str

    def as_json(self) -> dict[str, object]:
        return {
            "session": str(self.key),
            "venue": self.key.venue,
            "symbol": self.key.symbol,
            "date": self.key.date,
            "kinds": list(self.kinds),
            "rows": self.rows,
            "ts_start": self.ts_start,
            "ts_end": self.ts_end,
            "levels": self.levels,
            "time_zone": self.time_zone,
        }


def session_files(data_dir: Path) -> dict[SessionKey, dict[str, Path]]:
    """Every session directory under `data_dir` with its kind files (hidden dirs skipped)."""
    found: dict[SessionKey, dict[str, Path]] = {}
    for path in sorted(data_dir.glob("*/*/*/*.parquet")):
        date_dir = path.parent
        parts = path.relative_to(data_dir).parts
        if any(p.startswith(".") for p in parts) or not _DATE_DIR.fullmatch(date_dir.name):
            continue
        kind = path.stem
        if kind not in KINDS:
            continue
        key = SessionKey(parts[0], parts[1], parts[2])
        found.setdefault(key, {})[kind] = path
    return found


def _signature(files: dict[SessionKey, dict[str, Path]]) -> str:
    digest = hashlib.sha256()
    for key in sorted(files):
        for _kind, path in sorted(files[key].items()):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def describe_session(key: SessionKey, files: dict[str, Path]) -> SessionInfo:
    rows: dict[str, int] = {}
    starts, ends = [], []
    for kind, path in sorted(files.items()):
        rows[kind], start, end = file_time_span(path)
        starts.append(start)
        ends.append(end)
    levels = 0
    if "book" in files:
        levels = book_levels(open_parquet(files["book"]).schema_arrow.names)
    meta = read_meta(files[next(iter(files))].parent)
    return SessionInfo(
        key=key,
        kinds=tuple(k for k in KINDS if k in files),
        rows=rows,
        ts_start=min(starts),
        ts_end=max(ends),
        levels=levels,
        time_zone=str(meta.get("time_zone", "UTC")),
    )


class Catalog:
    """Sessions and per-kind views (`quotes`, `trades`, `book`) over a data directory."""

    def __init__(self, data_dir: Path) -> None:
        if not data_dir.is_dir():
            raise DataError(
                f"data directory {data_dir} does not exist; pass --data-dir or set TICKTAPE_DATA"
            )
        self.data_dir = data_dir
        self._files = session_files(data_dir)
        self._con = self._open()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def close(self) -> None:
        self._con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        signature = _signature(self._files)
        path = self.data_dir / CATALOG_FILE
        try:
            con = duckdb.connect(str(path))
        except (duckdb.Error, OSError):  # read-only data dir: same catalog, in memory
            con = duckdb.connect()
        if self._stored_signature(con) != signature:
            self._rebuild(con, signature)
        return con

    @staticmethod
    def _stored_signature(con: duckdb.DuckDBPyConnection) -> str | None:
        try:
            row = con.execute("SELECT value FROM catalog_meta WHERE name = 'signature'").fetchone()
        except duckdb.Error:
            return None
        return None if row is None else str(row[0])

    def _rebuild(self, con: duckdb.DuckDBPyConnection, signature: str) -> None:
        con.execute("DROP TABLE IF EXISTS catalog_meta")
        con.execute("DROP TABLE IF EXISTS sessions")
        con.execute("CREATE TABLE catalog_meta (name VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(
            "CREATE TABLE sessions (session VARCHAR PRIMARY KEY, venue VARCHAR, symbol VARCHAR, "
            "date VARCHAR, kinds VARCHAR[], rows_json VARCHAR, ts_start BIGINT, ts_end BIGINT, "
            "levels INTEGER, time_zone VARCHAR, path VARCHAR)"
        )
        for key, files in sorted(self._files.items()):
            info = describe_session(key, files)
            con.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [str(key), key.venue, key.symbol, key.date, list(info.kinds),
                 json.dumps(info.rows), info.ts_start, info.ts_end, info.levels,
                 info.time_zone, str(session_dir(self.data_dir, key).resolve())],
            )  # fmt: skip
        for kind in KINDS:
            self._create_view(con, kind)
        con.execute("INSERT INTO catalog_meta VALUES ('signature', ?)", [signature])

    def _create_view(self, con: duckdb.DuckDBPyConnection, kind: str) -> None:
        paths = [str(f[kind].resolve()) for _, f in sorted(self._files.items()) if kind in f]
        con.execute(f"DROP VIEW IF EXISTS {kind}")
        if not paths:
            return
        listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        # venue/symbol/date come from the path: <data_dir>/<venue>/<symbol>/<date>/<kind>.parquet
        con.execute(
            f"CREATE VIEW {kind} AS SELECT "
            f"regexp_extract(filename, '{_PATH_PARTS}', 1) AS venue, "
            f"regexp_extract(filename, '{_PATH_PARTS}', 2) AS symbol, "
            f"regexp_extract(filename, '{_PATH_PARTS}', 3) AS date, * EXCLUDE (filename) "
            f"FROM read_parquet([{listing}], union_by_name = true, filename = true)"
        )

    def sessions(self) -> list[SessionInfo]:
        rows = self._con.execute(
            "SELECT venue, symbol, date, kinds, rows_json, ts_start, ts_end, levels, time_zone "
            "FROM sessions ORDER BY venue, symbol, date"
        ).fetchall()
        return [
            SessionInfo(
                key=SessionKey(r[0], r[1], r[2]),
                kinds=tuple(r[3]),
                rows={k: int(v) for k, v in json.loads(r[4]).items()},
                ts_start=int(r[5]),
                ts_end=int(r[6]),
                levels=int(r[7]),
                time_zone=str(r[8]),
            )
            for r in rows
        ]

    def files(self, key: SessionKey) -> dict[str, Path]:
        if key not in self._files:
            known = ", ".join(str(k) for k in sorted(self._files)) or "none"
            raise DataError(
                f"no session {key} under {self.data_dir} (sessions: {known}); "
                "import one with `ticktape data import`"
            )
        return dict(self._files[key])
