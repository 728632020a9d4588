"""What every importer shares: the result record, progress reporting, input opening."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from simulator.errors import DataError
from simulator.types import SessionKey

ProgressFn = Callable[[int, int], None]
"""Called as progress(done, total) while an import runs (units chosen by the importer,
usually input bytes). The CLI turns it into a rich progress bar; library callers may pass
`no_progress`."""


def no_progress(done: int, total: int) -> None:
    """A ProgressFn that shows nothing."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One session written by an importer, with the figures it checked on the way."""

    key: SessionKey
    path: Path
    rows: dict[str, int]
    facts: dict[str, object] = field(default_factory=dict)


def open_text(path: Path) -> IO[str]:
    """Open a text recording that may be gzip-, zstd-compressed or plain (sniffed, not by name).

    Raises DataError for a missing, empty or binary-but-unknown file.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as probe:
        head = probe.read(4)
    if not head:
        raise DataError(f"{path}: empty file")
    if head[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if head == b"\x28\xb5\x2f\xfd":
        reader = zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)
        return io.TextIOWrapper(reader, encoding="utf-8")
    if head[:2] == b"PK":
        raise DataError(f"{path}: a zip archive; this importer expects a text recording")
    return path.open("r", encoding="utf-8")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline); decoding errors name the line."""
    with open_text(path) as handle:
        number = 0
        try:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n")
        except (UnicodeDecodeError, EOFError, OSError, zstandard.ZstdError) as e:
            raise DataError(f"{path} line {number + 1}: cannot read ({e})") from e
