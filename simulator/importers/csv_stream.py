"""Strict typed CSV files read a block at a time, hashed on the way, for importers whose
input does not fit in memory.

`CsvStream` yields Arrow tables of consecutive rows (no header, no nulls, no skipped lines,
so row i of the file is line i + 1) while it computes the file's sha256 over exactly the bytes
read; an empty file or a malformed line becomes one DataError naming it (found by a second,
line-by-line pass over the file: the error path only). `aligned` pairs two such streams row
for row. The messages name LOBSTER, the one importer of CSV files.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Final

import pyarrow as pa
import pyarrow.csv as pacsv

from simulator.errors import DataError

CSV_BLOCK_BYTES: Final = 1 << 20
"""Bytes the CSV reader parses at a time. pyarrow's streaming reader reads ~20 blocks ahead
of the one being parsed, so this sets the memory: 8 MB blocks held ~400 MB of CSV in flight
for a GB pair; 1 MB blocks are as fast and hold ~50 MB."""
READ_ERRORS: Final = (zipfile.BadZipFile, zlib.error, EOFError)
"""What a damaged zip member raises while it is read (CRC mismatch, bad inflate stream)."""

Opener = Callable[[], IO[bytes]]


class _HashingReader(io.RawIOBase):
    """A readable stream that hashes what passes through and keeps a read failure for later
    (pyarrow reports it as its own error type)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.failure: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(buffer))
        except READ_ERRORS as e:
            self.failure = e
            raise
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) whatever the CSV reader left, e.g. trailing bytes after the rows."""
        while self.read(1 << 20):
            pass


class CsvStream:
    """Consecutive tables of a headerless CSV with fixed column types; sha256 after the end."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        types: dict[str, pa.DataType],
        *,
        patterns: dict[str, str],
        block_bytes: int = CSV_BLOCK_BYTES,
    ) -> None:
        self.name, self._opener, self._types = name, opener, types
        self._patterns, self._block_bytes = patterns, block_bytes
        self.rows = 0
        self.sha256 = ""

    def tables(self) -> Iterator[pa.Table]:
        """The rows, a block at a time; DataError for an empty file or a malformed line."""
        with self._opener() as raw:
            reader = _HashingReader(raw)
            try:
                batches = pacsv.open_csv(
                    reader,
                    read_options=pacsv.ReadOptions(
                        column_names=list(self._types), block_size=self._block_bytes
                    ),
                    parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                    convert_options=pacsv.ConvertOptions(
                        column_types=self._types, null_values=[], strings_can_be_null=False
                    ),
                )
                for batch in batches:
                    self.rows += batch.num_rows
                    yield pa.Table.from_batches([batch])
                reader.drain()
            except READ_ERRORS as e:  # raised through pyarrow as it was
                raise corrupt_zip(self.name, e) from e
            except (pa.ArrowException, OSError) as e:
                failure = reader.failure or _read_failure(reader)
                if failure is not None:  # a damaged zip member inflates to garbage first
                    raise corrupt_zip(self.name, failure) from e
                raise self._bad_line_error(e) from e
        self.sha256 = reader.sha256.hexdigest()

    def _bad_line_error(self, cause: Exception) -> DataError:
        """Find the first malformed line (error path only, so a plain loop is fine)."""
        columns = list(self._types)
        patterns = [re.compile(self._patterns[c]) for c in columns]
        with self._opener() as raw:
            if not any(line.strip() for line in raw):  # pyarrow refuses a blank file too
                return DataError(f"{self.name}: empty file; expected one CSV row per LOBSTER event")
        with self._opener() as raw:
            for number, line_bytes in enumerate(raw, start=1):
                line = line_bytes.rstrip(b"\r\n").decode("utf-8", errors="replace")
                fields = line.split(",")
                if len(fields) != len(columns):
                    return DataError(
                        f"{self.name} line {number}: expected {len(columns)} comma-separated "
                        f"fields, found {len(fields)}: {line[:80]!r}"
                    )
                for column, pattern, field in zip(columns, patterns, fields, strict=True):
                    if pattern.fullmatch(field) is None:
                        kind = "seconds after midnight" if column == "time" else "an integer"
                        return DataError(
                            f"{self.name} line {number}: {column} is {field!r}; expected {kind}"
                        )
        return DataError(f"{self.name}: cannot parse as LOBSTER CSV ({cause})")


def _read_failure(reader: _HashingReader) -> Exception | None:
    """The read error (CRC, inflate) further on, if any: a zip member is checked at its end."""
    try:
        reader.drain()
    except READ_ERRORS as e:
        return e
    return None


def corrupt_zip(where: object, cause: object) -> DataError:
    return DataError(f"{where}: truncated or corrupt zip ({cause}); download or copy it again")


def aligned(first: CsvStream, second: CsvStream) -> Iterator[tuple[int, pa.Table, pa.Table]]:
    """(offset, rows of `first`, the same rows of `second`) until both end; DataError naming
    both row counts when one file has more rows than the other."""
    left, right = first.tables(), second.tables()
    held: list[pa.Table | None] = [None, None]
    offset = 0
    while True:
        for side, stream in enumerate((left, right)):
            if held[side] is None or held[side].num_rows == 0:  # type: ignore[union-attr]
                held[side] = next(stream, None)
        a, b = held
        if a is None or b is None:
            break
        n = min(a.num_rows, b.num_rows)
        yield offset, a.slice(0, n), b.slice(0, n)
        offset += n
        held = [a.slice(n), b.slice(n)]
    rest = [0, 0]
    for side, stream in enumerate((left, right)):
        table = held[side]
        rest[side] = (0 if table is None else table.num_rows) + sum(t.num_rows for t in stream)
    if rest[0] or rest[1]:
        raise DataError(
            f"{first.name} has {offset + rest[0]:,} rows but {second.name} has "
            f"{offset + rest[1]:,}; expected one order book row per message"
        )
