"""What `ticktape feed serve` sends: a tape of recorded frames in receive order.

A tape is every combined-stream message of one or more recorded sessions, merged by receive
time, as the exact bytes the venue sent (`{"stream":"btcusdt@bookTicker","data":{...}}`), plus
the REST depth snapshots the recorder fetched, each placed between the messages it arrived
between. Two recordings are read:

- an imported session directory holding `raw.txt.zst` (`<receive ns> <json>` lines, see
  importers/binance_messages.py); its snapshot line has no stream, so its symbol is the
  session's symbol (meta.json "session", else the directory's symbol);
- a live-mode session: `raw.parquet`, or the parts `parts/raw/part-*.parquet` (RAW_SCHEMA,
  frames.py): "in" rows holding a combined-stream message, and "http_resp" rows of stream
  `<symbol>@snapshot` holding the REST body. Other rows are not market data and are skipped.

A slice (`FeedTape.slice`) keeps the messages before it: the server replays them into its own
book without sending them, as an exchange that was running before the client joined.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, NamedTuple

import orjson

from simulator.errors import DataError
from simulator.live.frames import SNAPSHOT_SUFFIX, stream_of
from simulator.store import read_meta, session_dir
from simulator.types import SessionKey

RAW_TEXT: Final = "raw.txt.zst"
RAW_PARQUET: Final = "raw.parquet"
PARTS_GLOB: Final = "parts/raw/part-*.parquet"
DEFAULT_SESSION: Final = "binance/BTCUSDT/2024-08-08"
_SNAPSHOT_PREFIX: Final = b'{"lastUpdateId":'
_DIFF_DEPTH: Final = re.compile(r"^depth(@\d+ms)?$")


def symbol_of(stream: str) -> str:
    """`btcusdt@trade` -> `BTCUSDT`."""
    return stream.partition("@")[0].upper()


def is_diff_depth(stream: str) -> bool:
    """True for `<symbol>@depth` and `<symbol>@depth@100ms` (not the partial `@depth20`)."""
    return _DIFF_DEPTH.match(stream.partition("@")[2]) is not None


@dataclass(frozen=True, slots=True)
class TapeSnapshot:
    """A recorded REST depth snapshot; `index` = the number of tape messages received before
    it (absolute, over the whole tape, not the slice)."""

    index: int
    ts_recv: int
    symbol: str
    last_update_id: int
    text: bytes


class TapeEntry(NamedTuple):
    """One recording line: a message (`stream` set) or a REST snapshot (`stream` "")."""

    ts_recv: int
    stream: str  # "" for a snapshot
    text: bytes
    symbol: str  # a snapshot's symbol; "" for messages


@dataclass(frozen=True, slots=True, eq=False)
class FeedTape:
    """Recorded messages in receive order and the snapshots between them.

    `ts_recv`, `streams` and `texts` hold the whole recording; `start`/`stop` select the
    served messages. Served index i is absolute index `start + i`.
    """

    ts_recv: Sequence[int]
    streams: Sequence[str]
    texts: Sequence[bytes]
    snapshots: tuple[TapeSnapshot, ...]
    sessions: tuple[str, ...]
    start: int = 0
    stop: int = -1  # -1: the end of the recording
    symbols: tuple[str, ...] = field(init=False)
    """Uppercase symbols of the whole recording (streams and snapshots), sorted."""

    def __post_init__(self) -> None:
        if self.stop < 0:
            object.__setattr__(self, "stop", len(self.texts))
        found = {symbol_of(s) for s in set(self.streams)} | {s.symbol for s in self.snapshots}
        object.__setattr__(self, "symbols", tuple(sorted(found)))

    def __len__(self) -> int:
        return self.stop - self.start

    def slice(self, start: int = 0, limit: int | None = None) -> FeedTape:
        """The served messages from `start` (relative to this slice), at most `limit` of them."""
        if start < 0 or (limit is not None and limit < 0):
            raise DataError(f"tape slice start={start} limit={limit}: both must be >= 0")
        if start > len(self):
            raise DataError(f"tape slice start={start} is past the end ({len(self)} messages)")
        first = self.start + start
        last = self.stop if limit is None else min(self.stop, first + limit)
        return replace(self, start=first, stop=last)

    def served_streams(self) -> list[str]:
        """Stream names among the served messages, sorted."""
        return sorted(set(self.streams[self.start : self.stop]))


def load_tape(specs: Sequence[str], data_dir: Path) -> FeedTape:
    """Resolve SESSION names or directories and merge their recordings by receive time."""
    names = list(specs) or [DEFAULT_SESSION]
    parts = [(name, _read_session(_resolve(name, data_dir))) for name in names]
    return merge_tapes([entries for _, entries in parts], tuple(name for name, _ in parts))


def merge_tapes(recordings: Sequence[Sequence[TapeEntry]], sessions: tuple[str, ...]) -> FeedTape:
    """One tape from recordings each in receive order; ties keep the recordings' order."""
    ts_recv: list[int] = []
    streams: list[str] = []
    texts: list[bytes] = []
    snapshots: list[TapeSnapshot] = []
    for entry in heapq.merge(*recordings, key=lambda e: e.ts_recv):
        if entry.stream:
            ts_recv.append(entry.ts_recv)
            streams.append(entry.stream)
            texts.append(entry.text)
        else:
            update_id = _last_update_id(entry.text, entry.symbol)
            snapshot = TapeSnapshot(len(texts), entry.ts_recv, entry.symbol, update_id, entry.text)
            snapshots.append(snapshot)
    if not texts:
        raise DataError(f"sessions {', '.join(sessions)} hold no combined-stream messages")
    return FeedTape(ts_recv, streams, texts, tuple(snapshots), sessions)


def _resolve(spec: str, data_dir: Path) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec.startswith((".", "/", "~")):
        raise DataError(f"{path}: no such session directory")
    directory = session_dir(data_dir, SessionKey.parse(spec))
    if not directory.is_dir():
        raise DataError(
            f"no session {spec} under {data_dir}; `ticktape data ls` lists the sessions there"
        )
    return directory


def _read_session(directory: Path) -> list[TapeEntry]:
    if (directory / RAW_TEXT).exists():
        return read_raw_text(directory / RAW_TEXT, _session_symbol(directory))
    if (directory / RAW_PARQUET).exists():
        return read_raw_parquet([directory / RAW_PARQUET])
    parts = sorted(directory.glob(PARTS_GLOB))  # the glob leaves out *.tmp parts being written
    if parts:
        return read_raw_parquet(parts)
    raise DataError(
        f"{directory}: nothing to serve; expected {RAW_TEXT} (an imported Binance session), "
        f"{RAW_PARQUET} or {PARTS_GLOB} (a live-mode session)"
    )


def _session_symbol(directory: Path) -> str:
    session = read_meta(directory).get("session")
    if isinstance(session, str):
        return SessionKey.parse(session).symbol.upper()
    return directory.parent.name.upper()  # <venue>/<SYMBOL>/<date>


def read_raw_text(path: Path, symbol: str) -> list[TapeEntry]:
    """Entries of a `raw.txt.zst` recording; snapshot lines get `symbol`."""
    import zstandard

    try:
        with path.open("rb") as handle:
            raw = zstandard.ZstdDecompressor().stream_reader(handle).read()
    except zstandard.ZstdError as e:
        raise DataError(f"{path}: not a zstd file ({e})") from e
    entries: list[TapeEntry] = []
    last = 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line:
            continue
        head, _, text = line.partition(b" ")
        if not head.isdigit() or not text:
            raise DataError(
                f"{path} line {number}: expected '<receive time ns> <json message>', "
                f"found {line[:60]!r}"
            )
        ts = int(head)
        if ts < last:
            raise DataError(f"{path} line {number}: receive time went backwards ({ts} < {last})")
        last = ts
        stream = stream_of(text)
        if not stream and not text.startswith(_SNAPSHOT_PREFIX):
            raise DataError(
                f"{path} line {number}: neither a combined-stream message "
                '{"stream": ..., "data": {...}} nor a REST depth snapshot {"lastUpdateId": ...}'
            )
        entries.append(TapeEntry(ts, stream, text, "" if stream else symbol))
    return entries


def read_raw_parquet(paths: Iterable[Path]) -> list[TapeEntry]:
    """Entries of a live-mode raw table (one file or rotating parts), in seq order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        try:
            tables.append(
                pq.read_table(path, columns=["seq", "ts_recv", "direction", "stream", "payload"])
            )
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            raise DataError(f"{path}: not a live-mode raw table ({e})") from e
    table = pa.concat_tables(tables).sort_by("seq")
    entries: list[TapeEntry] = []
    rows = zip(
        *(table.column(c).to_pylist() for c in ("ts_recv", "direction", "stream", "payload")),
        strict=True,
    )
    for ts, direction, stream, payload in rows:
        if direction == "in" and stream_of(payload):
            entries.append(TapeEntry(ts, stream_of(payload), payload, ""))
        elif direction == "http_resp" and stream.endswith(SNAPSHOT_SUFFIX):
            entries.append(TapeEntry(ts, "", payload, symbol_of(stream)))
    entries.sort(key=lambda e: e.ts_recv)  # stable: seq order within one receive time
    return entries


def _last_update_id(text: bytes, symbol: str) -> int:
    try:
        value = orjson.loads(text)["lastUpdateId"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(
            f"the {symbol} REST depth snapshot is malformed ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(value, int):
        raise DataError(f"the {symbol} REST depth snapshot has lastUpdateId {value!r}")
    return value
