"""The DuckDB catalog: which sessions exist, and SQL views over every Parquet file.

The catalog file (`<data_dir>/catalog.duckdb`) is derived data: it is rebuilt whenever the
set of Parquet files under the data directory changes (compared by path, size and mtime),
so it is never stale and never needs committing. A catalog file that is damaged or lacks
its tables is replaced; a read-only data directory, or one whose catalog another process holds
open for writing, gets an in-memory catalog instead.

`Catalog.query` runs a user's SQL read-only: one SELECT-type statement (SELECT, WITH, FROM,
VALUES, DESCRIBE, SHOW, SUMMARIZE), on a connection opened read-only when the catalog is a file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from simulator.errors import DataError
from simulator.sources.recorded import file_time_span, open_parquet
from simulator.store import read_meta, session_dir
from simulator.types import KINDS, SESSION_DATE_PATTERN, SessionKey, book_levels

CATALOG_FILE: Final = "catalog.duckdb"
CATALOG_FORMAT: Final = "2"
"""Part of the stored signature: a catalog written by another layout is rebuilt."""
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


def _one_line(error: Exception) -> str:
    """DuckDB's multi-line messages (a caret under the query) as one line."""
    return " ".join(str(error).split())


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
        self._path: Path | None = None  # the catalog file; None for an in-memory catalog
        self._con = self._open()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def close(self) -> None:
        self._con.close()

    def query(self, sql: str) -> pa.Table:
        """The result of one read-only statement; DataError for anything that would change
        the catalog or write files (DROP, INSERT, CREATE, COPY, ATTACH, SET, ...)."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as e:
            raise DataError(f"SQL query failed: {_one_line(e)}") from e
        if len(statements) != 1:
            raise DataError(f"data sql runs one statement at a time; found {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise DataError(
                f"data sql is read-only: {kind.name} statements are refused; "
                "use SELECT, WITH, DESCRIBE, SHOW or SUMMARIZE"
            )
        if self._path is not None:  # a file catalog: run it on a read-only connection too
            self._con.close()
            try:
                self._con = duckdb.connect(str(self._path), read_only=True)
            except duckdb.Error:  # another connection of this process holds it read-write
                self._con = self._open()
        try:
            return self._con.sql(sql).to_arrow_table()
        except duckdb.Error as e:
            raise DataError(f"SQL query failed: {_one_line(e)}") from e

    def _open(self) -> duckdb.DuckDBPyConnection:
        signature = f"{CATALOG_FORMAT}:{_signature(self._files)}"
        self._path = self.data_dir / CATALOG_FILE
        con = self._connect(self._path)
        if con is None:  # read-only data dir, or held by another writer: same catalog, in memory
            self._path = None
            con = duckdb.connect()
        if self._stored_signature(con) != signature:
            self._rebuild(con, signature)
        return con

    @staticmethod
    def _connect(path: Path) -> duckdb.DuckDBPyConnection | None:
        """The catalog file, replaced when it is not a DuckDB database; None if unusable."""
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as e:
            if "not a valid DuckDB database file" not in str(e):
                return None  # a lock held by another process, a read-only directory
        except OSError:
            return None
        try:  # derived data: a damaged catalog is rebuilt from the Parquet files
            for stale in (path, path.with_name(path.name + ".wal")):
                stale.unlink(missing_ok=True)
            return duckdb.connect(str(path))
        except (duckdb.Error, OSError):
            return None

    @staticmethod
    def _stored_signature(con: duckdb.DuckDBPyConnection) -> str | None:
        """The signature of a complete catalog; None when any of its parts is missing."""
        try:
            rows = con.execute("SELECT value FROM catalog_meta WHERE name = 'signature'").fetchall()
            con.execute("SELECT * FROM sessions LIMIT 0").fetchall()
            views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
            kinds = {r[0] for r in con.execute("SELECT unnest(kinds) FROM sessions").fetchall()}
        except duckdb.Error:
            return None
        if not rows or not kinds <= views:  # a view dropped by hand
            return None
        return str(rows[0][0])

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
