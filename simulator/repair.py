"""`ticktape data check --repair ... --out`: a repaired, complete copy of a session.

Every kind file (quotes, trades, book) is streamed through the repair policy (drop bad rows,
sort by ts_recv) and written; every other file of the session directory (meta.json, raw venue
files, a live recording's tables) is copied. meta.json then records what was repaired, its
`rows` and `files` hashes describe the new files, so the copy is a session that replay, stress
and feed serve accept like the original. The copy is written beside `out` and renamed into
place: all of it, or nothing (a repair that is not enough raises DataError).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from simulator.errors import DataError
from simulator.rundir import staged
from simulator.session import SessionRef
from simulator.sources.recorded import Repair, open_parquet, write_repaired
from simulator.sources.schema import CheckReport
from simulator.store import META_FILE, file_sha256, read_meta
from simulator.types import KINDS


@dataclass(frozen=True, slots=True)
class RepairedCopy:
    out: Path
    reports: dict[str, CheckReport]  # per kind: the problems found and the rows repaired


def is_single_file(ref: SessionRef) -> bool:
    """SESSION named one Parquet file, not a session directory."""
    return Path(ref.name).suffix == ".parquet" and Path(ref.name).is_file()


def repair_session(ref: SessionRef, repair: tuple[Repair, ...], out: Path) -> RepairedCopy:
    """Write the repaired copy of `ref` to `out` (a .parquet file for a single-file SESSION
    named so, else a directory); nothing is written when a repair is not enough."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out}: exists and is not empty; name a new directory")
    if is_single_file(ref) and out.suffix == ".parquet":
        ((kind, _),) = ref.files.items()
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            report = _write_kind(ref, kind, repair, tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return RepairedCopy(out, {kind: report})
    with staged(out) as staging:
        staging.mkdir(parents=True)
        reports = {k: _write_kind(ref, k, repair, staging / f"{k}.parquet") for k in ref.files}
        if not is_single_file(ref):
            _copy_the_rest(ref.directory, staging)
            _update_meta(staging, ref, reports)
    return RepairedCopy(out, reports)


def _write_kind(
    ref: SessionRef, kind: str, repair: tuple[Repair, ...], target: Path
) -> CheckReport:
    source = ref.source(kind, repair=repair)
    try:
        return write_repaired(source, target)
    except DataError as e:
        raise DataError(f"{kind}: the repair {'+'.join(repair)} is not enough: {e}") from e


def _copy_the_rest(directory: Path, target: Path) -> None:
    """Every file of the session that is not a kind file (hidden ones and live parts aside)."""
    kind_files = {f"{kind}.parquet" for kind in KINDS}
    for path in sorted(directory.iterdir()):
        if path.name in kind_files or path.name.startswith(".") or path.name == "parts":
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def _update_meta(target: Path, ref: SessionRef, reports: dict[str, CheckReport]) -> None:
    meta = read_meta(target)
    rows = meta.get("rows")
    files = meta.get("files")
    for kind in reports:
        path = target / f"{kind}.parquet"
        if isinstance(rows, dict):
            rows[kind] = open_parquet(path).metadata.num_rows
        if isinstance(files, dict):
            files[path.name] = file_sha256(path)
    meta.update(
        repaired={kind: dict(sorted(r.repaired.items())) for kind, r in reports.items()},
        repaired_from=ref.name,
    )
    (target / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
