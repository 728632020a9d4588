"""Turn what a user types for SESSION into files: a catalog name, a directory or a Parquet file.

SESSION is `venue/symbol/date` (looked up under the data directory), a session directory
holding `<kind>.parquet` files, or a single Parquet file whose kind is told by its columns
(a plain file with bid_px, bid_sz, ask_px, ask_sz and a timestamp is a quote stream).
A live session is usable once its Parquet parts are consolidated (`ticktape data recover`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from simulator.errors import DataError
from simulator.sources.recorded import (
    BatchTransform,
    ParquetSource,
    Repair,
    infer_kind,
    open_parquet,
)
from simulator.store import read_meta, session_dir
from simulator.types import KINDS, SessionKey

_LIVE_PARTS_DIR: Final = "parts"  # = simulator.live.parts.PARTS_DIR; replay need not import live


@dataclass(frozen=True, slots=True)
class SessionRef:
    """A resolved session: a display name, its files by kind and its import metadata."""

    name: str
    files: dict[str, Path]
    meta: dict[str, object]

    @property
    def time_zone(self) -> str:
        return str(self.meta.get("time_zone", "UTC"))

    @property
    def directory(self) -> Path:
        """Where the session's files are (beside them: a live recording's other tables)."""
        return next(iter(self.files.values())).parent

    def source(
        self,
        kind: str,
        *,
        priority: int = 0,
        repair: tuple[Repair, ...] = (),
        transform: BatchTransform | None = None,
    ) -> ParquetSource:
        if kind not in self.files:
            raise DataError(
                f"session {self.name} has no {kind} (it has: {', '.join(sorted(self.files))})"
            )
        return ParquetSource(
            self.files[kind], kind=kind, priority=priority, repair=repair, transform=transform
        )


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".parquet") or spec.startswith((".", "/", "~")) or Path(spec).exists()


def resolve_session(spec: str, data_dir: Path) -> SessionRef:
    """Resolve SESSION as typed on the command line; DataError names what was not found."""
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if path.is_dir():
            return _from_directory(path, spec)
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
        kind = infer_kind(open_parquet(path).schema_arrow.names)
        return SessionRef(name=str(path), files={kind: path}, meta={})
    key = SessionKey.parse(spec)
    directory = session_dir(data_dir, key)
    if not directory.is_dir():
        hint = _closest_session(str(key), data_dir)
        maybe = f" (did you mean {hint}?)" if hint else ""
        raise DataError(
            f"no session {key} under {data_dir}{maybe}; `ticktape data ls` lists the sessions there"
        )
    return _from_directory(directory, str(key))


def _closest_session(name: str, data_dir: Path) -> str | None:
    """The session under `data_dir` whose venue, symbol and date each equal or closely match
    those of `name` (a typo'd symbol gets the right one; another symbol gets nothing)."""
    typed = name.split("/")
    best, best_score = None, 0.0
    for path in sorted(data_dir.glob("*/*/*")):
        parts = path.relative_to(data_dir).parts
        if not path.is_dir() or len(parts) != len(typed):
            continue
        scores = [
            difflib.SequenceMatcher(None, a, b).ratio() for a, b in zip(typed, parts, strict=True)
        ]
        if min(scores) >= 0.6 and sum(scores) > best_score:
            best, best_score = "/".join(parts), sum(scores)
    return best


def session_directory(spec: str, data_dir: Path) -> Path:
    """The directory SESSION names: a path, or venue/symbol/date under the data directory."""
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
    else:
        path = session_dir(data_dir, SessionKey.parse(spec))
    if not path.is_dir():
        raise DataError(f"{path}: no such session directory")
    return path


def _require_consolidated(directory: Path, name: str) -> None:
    """A live session still in rotating parts (simulator/live/parts.py) is not readable yet."""
    if not (directory / _LIVE_PARTS_DIR).is_dir():
        return
    meta = read_meta(directory)
    if meta.get("consolidated") is True:
        return  # only the removal of parts/ was interrupted: the session files are complete
    closed = "true" if meta.get("closed") is True else "false"
    raise DataError(
        f"{directory}: live session was not consolidated (closed: {closed}); "
        f"run `ticktape data recover {name}` to turn its parts into session files"
    )


def _from_directory(directory: Path, name: str) -> SessionRef:
    _require_consolidated(directory, name)
    files = {k: directory / f"{k}.parquet" for k in KINDS if (directory / f"{k}.parquet").exists()}
    if not files:
        raise DataError(f"{directory}: holds no quotes/trades/book Parquet files")
    return SessionRef(name=name, files=files, meta=read_meta(directory))
