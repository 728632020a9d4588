"""Run directories: checked before anything is created, written aside, moved into place whole.

A run (replay, stress, train) is written into a hidden staging directory beside its target
(`.<name>.partial-<pid>`). Only a run that finished is moved into place; one that fails or is
interrupted (Ctrl-C) is removed with its staging directory. So a run directory is never
empty, never half-written, and never a mix of an old run's files and a new run's tables.

The target is checked first (`check_target`): a non-empty directory that is not a run of the
same kind is refused unless `force`, which clears it. A replay or stress run replaces the
whole directory; a training run (`merge=True`) replaces only its own files, so training into
a folder of other models (e.g. `strategies/`) keeps them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

from simulator.errors import ConfigError

RunKind = Literal["replay", "stress", "train"]
STAGING_MARK: Final = ".partial-"


def run_kind(directory: Path) -> RunKind | None:
    """What run `directory` holds: replay (manifest.json, or summary.json over several
    sessions), stress (comparison.parquet), train (a `*.train.json`), or None."""
    if (directory / "manifest.json").is_file() or (directory / "summary.json").is_file():
        return "replay"  # one session's run, or several sessions' runs and their summary
    if (directory / "comparison.parquet").is_file():
        return "stress"
    if any(directory.glob("*.train.json")):
        return "train"
    return None


def check_target(target: Path, kind: RunKind, *, force: bool = False) -> None:
    """Refuse a target the run may not write into (ConfigError); creates nothing."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target}: is a file, not a directory")
    if not target.is_dir() or not any(target.iterdir()) or force:
        return
    found = run_kind(target)
    if found == kind:
        return
    holds = f"holds a {found} run" if found else "is not a run directory"
    raise ConfigError(
        f"--out {target}: not empty and {holds}, not a {kind} run; choose another directory "
        "or pass --force to clear it"
    )


@contextlib.contextmanager
def staged(target: Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success move its contents to `target`.

    On any exception (KeyboardInterrupt included) the staging directory is removed and
    `target` is left as it was; a parent directory created here is removed when empty.
    """
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    staging = target.parent / f".{target.name}{STAGING_MARK}{os.getpid()}"
    _remove(staging)  # a crashed earlier run of this process id
    try:
        yield staging
        if not staging.is_dir():
            raise ConfigError(f"{target}: the run wrote nothing")
        _commit(staging, target, merge=merge)
    except BaseException:
        _remove(staging)
        for parent in created:  # deepest first
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def clear_directory(target: Path) -> None:
    """Empty `target` (a run about to be written in place, already checked)."""
    if target.is_dir():
        for path in target.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _commit(staging: Path, target: Path, *, merge: bool) -> None:
    if merge and target.is_dir():
        for path in sorted(staging.iterdir()):
            os.replace(path, target / path.name)  # one file at a time, each atomic
        staging.rmdir()
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)  # aside first: a crash here leaves the old run, whole
    os.replace(staging, target)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
