"""The live Binance normaliser and the inbox: book sync on the real recording, duplicates,
gaps, stale snapshots, quote conflation and declared gaps."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pyarrow as pa
import pytest
import zstandard

from simulator.importers.binance_tables import bbo_agreement
from simulator.live.consumed import Checked, Consumed
from simulator.live.frames import Direction, Frame, Stamper, stream_of
from simulator.live.inbox import GAP_DIRECTION, Inbox
from simulator.live.venues.binance import BinanceNormalizer
from simulator.types import StatusCode
from tests.conftest import REPO

SESSION = REPO / "data" / "binance" / "BTCUSDT" / "2024-08-08"


def _recorded_frames() -> list[Frame]:
    raw = zstandard.ZstdDecompressor().stream_reader((SESSION / "raw.txt.zst").open("rb"))
    frames = []
    for seq, line in enumerate(io.TextIOWrapper(raw).read().splitlines()):
        ts, _, body = line.partition(" ")
        payload = body.encode()
        stream = stream_of(payload)
        if stream:
            frames.append(Frame(seq, 1, int(ts), Direction.IN, stream, payload))
        else:  # the REST depth snapshot
            frames.append(Frame(seq, 1, int(ts), Direction.HTTP_RESP, "btcusdt@snapshot", payload))
    return frames


def _run(normalizer: BinanceNormalizer, frames: list[Frame]) -> dict[str, pa.Table]:
    out, checked = Consumed(levels=20), Checked()
    tables: dict[str, list[pa.Table]] = {}
    for start in range(0, len(frames), 5_000):
        for frame in frames[start : start + 5_000]:
            normalizer.on_frame(frame, out)
        passed, _ = checked.batches(out.tables())
        for kind, table in passed.items():
            tables.setdefault(kind, []).append(table)
    assert checked.dropped == dict.fromkeys(checked.dropped, 0)
    return {kind: pa.concat_tables(parts) for kind, parts in tables.items()}


@pytest.fixture(scope="module")
def recorded():
    frames = _recorded_frames()
    normalizer = BinanceNormalizer("BTCUSDT", depth=True)
    return normalizer, _run(normalizer, frames)


def test_book_rebuilt_live_matches_book_ticker_at_every_shared_update_id(recorded):
    normalizer, tables = recorded
    assert normalizer.stats.diffs_applied == 6_493
    assert normalizer.stats.gaps == 0
    assert tables["quotes"].num_rows == 73_174
    assert tables["trades"].num_rows == 19_904
    shared, same = bbo_agreement(tables["quotes"], tables["book"])
    assert (shared, same) == (1_072, 1_072)


def test_live_normalizer_reproduces_the_imported_session(recorded):
    import pyarrow.parquet as pq

    _, tables = recorded
    for kind in ("quotes", "trades", "book"):
        imported = pq.read_table(SESSION / f"{kind}.parquet")
        for name in imported.column_names:
            if name == "seq":  # the importer counts lines per symbol, live counts events
                continue
            live = tables[kind].column(name).to_numpy(zero_copy_only=False)
            expected = imported.column(name).to_numpy(zero_copy_only=False)
            same = np.array_equal(live, expected, equal_nan=live.dtype.kind == "f")
            assert same, (kind, name)
    seqs = np.concatenate([tables[k].column("seq").to_numpy() for k in tables])
    assert np.array_equal(np.sort(seqs), np.arange(len(seqs)))  # one session-wide order


def _depth(first: int, last: int, bid: str = "100.0") -> Frame:
    data = {"e": "depthUpdate", "E": 1_000, "s": "X", "U": first, "u": last,
            "b": [[bid, "1.0"]], "a": [["101.0", "1.0"]]}  # fmt: skip
    payload = orjson.dumps({"stream": "x@depth@100ms", "data": data})
    return Frame(last, 1, last, Direction.IN, "x@depth@100ms", payload)


def _snapshot(last_update_id: int) -> Frame:
    payload = orjson.dumps({"lastUpdateId": last_update_id, "bids": [["99.0", "2.0"]],
                            "asks": [["102.0", "2.0"]]})  # fmt: skip
    return Frame(0, 1, last_update_id, Direction.HTTP_RESP, "x@snapshot", payload)


def _codes(out: Consumed) -> list[int]:
    return [row[3] for row in out.status]  # type: ignore[misc]


def test_a_gap_resets_the_book_and_asks_for_a_snapshot_that_resyncs_it():
    n, out = BinanceNormalizer("X", depth=True), Consumed(levels=5)
    n.on_frame(_depth(10, 12), out)
    assert n.needs_snapshot()
    n.snapshot_requested()
    n.on_frame(_snapshot(11), out)  # U=10 <= 12 <= u=12: the buffered diff applies
    assert n.synced
    assert _codes(out) == [StatusCode.BOOK_SYNCED]
    n.on_frame(_depth(13, 14), out)
    n.on_frame(_depth(13, 14), out)  # a duplicate after a reconnect: dropped
    n.on_frame(_depth(17, 18), out)  # 15-16 never came
    assert _codes(out)[1:] == [StatusCode.GAP, StatusCode.BOOK_RESET]
    assert n.stats.duplicates == 1
    assert not n.synced
    assert n.needs_snapshot()
    n.snapshot_requested()
    n.on_frame(_snapshot(5), out)  # older than the buffered diff: asked again
    assert _codes(out)[-1] == StatusCode.STALE_SNAPSHOT
    assert n.needs_snapshot()
    n.on_frame(_snapshot(17), out)
    assert n.synced
    assert _codes(out)[-1] == StatusCode.BOOK_SYNCED
    assert len(out.book) == 3  # 10-12, 13-14, then 17-18 from the buffer after the resync


def test_the_inbox_conflates_quotes_and_declares_gaps_for_everything_else():
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(3, conflatable=lambda s: s.endswith("@bookTicker"))
    for _ in range(5):
        inbox.put(stamper.stamp(1, Direction.IN, "x@bookTicker", b"q"))
    for _ in range(4):
        inbox.put(stamper.stamp(1, Direction.IN, "x@trade", b"t"))
    frames = inbox.drain(0.0)
    assert [f.stream for f in frames] == ["x@bookTicker", "x@trade", "x@trade", "x@trade"]
    assert frames[0].seq == 4  # the latest quote survived
    assert [f.direction for f in frames][-1] == GAP_DIRECTION
    assert frames[-1].payload == b"2"
    assert inbox.stats.conflated == 4
    assert inbox.stats.overflowed == 2
    n, out = BinanceNormalizer("X", depth=False), Consumed(levels=1)
    n.on_frame(frames[-1], out)
    assert _codes(out) == [StatusCode.GAP]
    assert "2 frame(s)" in str(out.status[0][4])


def test_quotes_conflate_only_once_the_backlog_is_reached():
    stamper = Stamper(iter(range(1, 10_000)).__next__)
    inbox = Inbox(10, conflatable=lambda s: s.endswith("@bookTicker"), backlog=3)
    for _ in range(3):  # a burst the pipeline absorbs: every quote kept
        inbox.put(stamper.stamp(1, Direction.IN, "x@bookTicker", b"q"))
    assert inbox.stats.conflated == 0
    for _ in range(2):  # behind: each newer quote replaces the latest waiting one
        inbox.put(stamper.stamp(1, Direction.IN, "x@bookTicker", b"q"))
    assert [f.seq for f in inbox.drain(0.0)] == [0, 1, 4]
    assert inbox.stats.conflated == 2


def test_stamps_are_strictly_increasing_even_when_the_wall_clock_is_not():
    times = iter([100, 100, 90, 200])
    stamper = Stamper(times.__next__)
    stamps = [stamper.stamp(1, Direction.IN, "s", b"").ts_recv for _ in range(4)]
    assert stamps == [100, 101, 102, 200]
