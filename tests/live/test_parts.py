"""Live recording parts: rotation, atomic parts, SIGKILL survival and consolidation into a session.

Real files and a real subprocess throughout; no mocks.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import main
from simulator.catalog import Catalog, session_files
from simulator.errors import ConfigError, DataError, RecorderOverflow
from simulator.live.parts import (
    PARTS_DIR,
    PartWriter,
    SessionParts,
    consolidate,
    part_files,
    read_table,
)
from simulator.session import resolve_session
from simulator.store import file_sha256, session_dir, write_session
from simulator.types import SessionKey
from tests.conftest import REPO
from tests.factories import book, quotes, trades

SCHEMA = pa.schema([("seq", pa.int64()), ("ts_recv", pa.int64())])
STATUS = pa.schema(
    [("ts_event", pa.int64()), ("ts_recv", pa.int64()), ("seq", pa.int64()),
     ("code", pa.int8()), ("reason", pa.string())]
)  # fmt: skip
KEY = SessionKey("testvenue", "ABC", "2026-11-21T153005")


def _rows(start: int, stop: int) -> pa.RecordBatch:
    ids = pa.array(range(start, stop), pa.int64())
    return pa.record_batch([ids, ids], schema=SCHEMA)


def _eventually(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _table(session, name) -> pa.Table:
    table = read_table(session, name)
    assert table is not None, f"{name} has no parts"
    return table


def _part_rows(directory):
    return [pq.ParquetFile(path).metadata.num_rows for path in part_files(directory)]


def _meta(directory):
    return json.loads((directory / "meta.json").read_text())


def _market_session(data_dir, n=10):
    """A closed live session under the data directory with quotes, trades and timer rows."""
    directory = session_dir(data_dir, KEY)
    schemas = {"quotes": quotes(1).schema, "trades": trades(1).schema, "timer": SCHEMA,
               "book": book(1, levels=2).schema, "status": STATUS}  # fmt: skip
    parts = SessionParts(directory, {"venue": KEY.venue}, schemas, roll_rows=4)
    for i in range(0, n, 5):
        parts.append("quotes", quotes(n).slice(i, 5))
        parts.append("trades", trades(n).slice(i, 5))
        parts.append("timer", _rows(i, i + 5))
    parts.close()
    return directory


# --- PartWriter ------------------------------------------------------------------------------


def test_part_is_cut_when_roll_rows_are_buffered(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=10, roll_seconds=60.0)
    writer.append(_rows(0, 10))
    _eventually(lambda: writer.stats().parts_written == 1)
    writer.append(_rows(10, 14))
    time.sleep(0.1)
    assert writer.stats().parts_written == 1  # 4 rows: no part before roll_rows or close
    assert writer.stats().rows_pending == 4
    stats = writer.close()
    assert _part_rows(directory) == [10, 4]
    assert (stats.rows_written, stats.parts_written, stats.rows_pending) == (14, 2, 0)
    assert stats.bytes_written == sum(p.stat().st_size for p in part_files(directory))
    assert _table(tmp_path, "timer").column("seq").to_pylist() == list(range(14))


def test_part_is_cut_when_roll_bytes_are_buffered_so_wide_rows_stay_bounded(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    # 16 bytes a row: 100 bytes are reached at the 7th row, long before roll_rows
    writer = PartWriter(directory, SCHEMA, roll_rows=1_000, roll_seconds=60.0, roll_bytes=100)
    for i in range(7):
        writer.append(_rows(i, i + 1))
    _eventually(lambda: writer.stats().parts_written == 1)
    writer.append(_rows(7, 10))
    time.sleep(0.1)
    assert writer.stats().rows_pending == 3  # 48 bytes: no part before close
    writer.close()
    assert _part_rows(directory) == [7, 3]
    with pytest.raises(ConfigError, match="roll_bytes >= 1; found 0"):
        PartWriter(tmp_path / "x", SCHEMA, roll_bytes=0)


def test_part_is_cut_roll_seconds_after_its_first_row(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=1_000, roll_seconds=0.2)
    for first, last in ((0, 5), (5, 8)):
        start = time.monotonic()
        writer.append(_rows(first, last))
        before = len(_part_rows(directory))
        _eventually(lambda before=before: len(_part_rows(directory)) == before + 1)
        assert time.monotonic() - start >= 0.2
    writer.close()
    assert _part_rows(directory) == [5, 3]


def test_a_written_part_lets_go_of_its_rows_while_the_writer_waits_for_the_next(tmp_path):
    """A part's rows are freed once it is written, not when the next part is due (for a table
    that rolls every 30 s, they lived that long again)."""
    pool = pa.default_memory_pool()
    writer = PartWriter(tmp_path / PARTS_DIR / "timer", SCHEMA, roll_seconds=60.0)
    before = pool.bytes_allocated()
    writer.append(_rows(0, 500_000))  # 8 MB of Arrow buffers, referenced by the writer alone
    writer.flush()
    assert writer.stats().parts_written == 1
    assert pool.bytes_allocated() - before < 1 << 20
    writer.close()


def test_a_requested_flush_does_not_wait_and_tells_when_its_rows_are_written(tmp_path):
    """The checkpoint asks for the rows appended so far and goes on appending: rows that
    come after the request are not waited for."""
    directory = session_dir(tmp_path, KEY)
    parts = SessionParts(directory, {"venue": KEY.venue}, {"timer": SCHEMA}, roll_rows=1_000)
    parts.append("timer", _rows(0, 10))
    appended = parts.request_flush()
    assert appended == {"timer": 10}
    parts.append("timer", _rows(10, 15))  # buffered after the request
    _eventually(lambda: parts.flushed(appended))
    assert _part_rows(directory / PARTS_DIR / "timer")[0] >= 10
    assert not parts.flushed({"timer": 16})  # more than were appended: never
    parts.close()
    assert _table(directory, "timer").column("seq").to_pylist() == list(range(15))


def test_close_leaves_only_finished_parts_and_readers_ignore_tmp_files(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=3, roll_seconds=60.0)
    for i in range(0, 10, 2):
        writer.append(_rows(i, i + 2))
    writer.close()
    assert list(directory.glob("*.tmp")) == []
    (directory / "part-000099.parquet.tmp").write_bytes(b"half a part")  # a crash mid-write
    assert _table(tmp_path, "timer").column("seq").to_pylist() == list(range(10))
    assert read_table(tmp_path, "status") is None


def test_corrupt_part_raises_data_error_naming_it(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=2, roll_seconds=60.0)
    writer.append(_rows(0, 2))
    writer.flush()
    writer.append(_rows(2, 4))
    writer.close()
    (directory / "part-000002.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"timer/part-000002\.parquet: unreadable Parquet part"):
        read_table(tmp_path, "timer")


def test_rows_are_cast_to_the_schema_or_refused(tmp_path):
    writer = PartWriter(tmp_path / "t", SCHEMA, roll_rows=10, roll_seconds=60.0)
    narrow = pa.table({"seq": pa.array([1], pa.int32()), "ts_recv": pa.array([2], pa.int32())})
    writer.append(narrow)
    with pytest.raises(DataError, match=r"rows do not fit the table's schema"):
        writer.append(pa.table({"seq": ["x"], "ts_recv": [1]}))
    writer.close()
    assert pq.read_table(part_files(tmp_path / "t")[0]).schema.equals(SCHEMA)


def test_writer_that_falls_behind_raises_recorder_overflow_and_keeps_the_prefix(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=10, roll_seconds=60.0, max_pending=20)
    writer.append(_rows(0, 10))
    writer.flush()
    with pytest.raises(RecorderOverflow, match=r"fell behind \(0 rows waiting, 25 more refused"):
        writer.append(_rows(10, 35))
    with pytest.raises(RecorderOverflow, match=r"overflowed earlier .* \(26 rows lost so far\)"):
        writer.append(_rows(10, 11))  # no silent restart after a hole
    stats = writer.close()
    assert (stats.rows_written, stats.rows_dropped) == (10, 26)
    assert _table(tmp_path, "timer").column("seq").to_pylist() == list(range(10))


def test_write_error_in_the_thread_surfaces_on_the_next_call(tmp_path):
    directory = tmp_path / PARTS_DIR / "timer"
    writer = PartWriter(directory, SCHEMA, roll_rows=5, roll_seconds=60.0)
    shutil.rmtree(directory)
    directory.write_bytes(b"a file where the part directory was")
    writer.append(_rows(0, 5))
    with pytest.raises(DataError, match=r"timer: writing part 1 failed"):
        writer.flush()
    with pytest.raises(DataError, match=r"timer: writing part 1 failed"):
        writer.append(_rows(5, 6))
    with pytest.raises(DataError, match=r"timer: writing part 1 failed"):
        writer.close()


# --- SessionParts ----------------------------------------------------------------------------


def test_meta_is_written_first_closed_false_then_closed_true_with_counts(tmp_path):
    directory = tmp_path / "session"
    parts = SessionParts(directory, {"venue": "testvenue"}, {"timer": SCHEMA, "status": STATUS})
    meta = _meta(directory)
    assert (meta["closed"], meta["venue"]) == (False, "testvenue")
    assert meta["schemas"]["timer"] == ["seq: int64", "ts_recv: int64"]
    assert not (directory / PARTS_DIR).exists()  # meta.json first, parts later
    parts.update_meta(clock_offset_ns=-4_700_000)
    assert _meta(directory)["clock_offset_ns"] == -4_700_000
    parts.append("timer", _rows(0, 7))
    parts.close({"stopped": "signal"})
    meta = _meta(directory)
    assert (meta["closed"], meta["stopped"], meta["clock_offset_ns"]) == (
        True,
        "signal",
        -4_700_000,
    )
    timer = meta["tables"]["timer"]
    assert (timer["rows"], timer["parts"], timer["dropped"]) == (7, 1, 0)
    assert (
        timer["bytes"] == (directory / PARTS_DIR / "timer" / "part-000001.parquet").stat().st_size
    )
    assert meta["tables"]["status"]["rows"] == 0  # an empty part keeps the schema
    assert _table(directory, "status").schema.equals(STATUS)
    with pytest.raises(DataError, match=r"already holds a session"):
        SessionParts(directory, {}, {"timer": SCHEMA})


def test_unknown_table_is_refused_with_a_suggestion(tmp_path):
    parts = SessionParts(tmp_path / "s", {}, {"decisions": SCHEMA})
    with pytest.raises(DataError, match=r"no table 'desicions' .* did you mean 'decisions'\?"):
        parts.append("desicions", _rows(0, 1))
    parts.close()


CHILD = """
import sys, time
from pathlib import Path
import pyarrow as pa
from simulator.live.frames import RAW_SCHEMA
from simulator.live.parts import SessionParts

schema = pa.schema([("seq", pa.int64()), ("ts_recv", pa.int64())])
parts = SessionParts(Path(sys.argv[1]), {"venue": "testvenue"},
                     {"timer": schema, "raw": RAW_SCHEMA}, roll_rows=200, roll_seconds=60.0)
seq, reported = 0, -1
while True:
    ids = pa.array(range(seq, seq + 10), pa.int64())
    parts.append("timer", pa.record_batch([ids, ids], schema=schema))
    text = pa.array(["in"] * 10)
    payload = pa.array([b"x" * 200] * 10, pa.binary())
    parts.append("raw", pa.record_batch([ids, ids, ids, text, text, payload], schema=RAW_SCHEMA))
    seq += 10
    done = parts.stats()["timer"].parts_written
    if done != reported:
        print(done, flush=True)
        reported = done
    time.sleep(0.0005)
"""


def _assert_gap_free_prefix(table):
    seq = table.column("seq").to_pylist()
    assert seq == list(range(len(seq)))
    return len(seq)


def test_sigkill_mid_session_leaves_readable_parts_holding_a_gap_free_prefix(tmp_path):
    directory = tmp_path / "session"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(15.0, child.kill)  # a stuck child fails the test, not the run
    watchdog.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line) >= 5:
                break
        else:
            pytest.fail(f"recorder exited early: {child.stderr.read() if child.stderr else ''}")
        child.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert _meta(directory)["closed"] is False
    for name in ("timer", "raw"):
        for path in part_files(directory / PARTS_DIR / name):
            pq.read_table(path)  # every finished part is complete
    timer_rows = _assert_gap_free_prefix(_table(directory, "timer"))
    raw_rows = _assert_gap_free_prefix(_table(directory, "raw"))
    assert timer_rows >= 5 * 200

    assert consolidate(directory) == {"raw": raw_rows, "timer": timer_rows}
    meta = _meta(directory)
    assert (meta["closed"], meta["recovered"], meta["consolidated"]) == (False, True, True)
    assert meta["rows"] == {"raw": raw_rows, "timer": timer_rows}
    assert _assert_gap_free_prefix(pq.read_table(directory / "timer.parquet")) == timer_rows
    assert not (directory / PARTS_DIR).exists()


# --- consolidation and session resolution ----------------------------------------------------


def test_consolidated_live_session_resolves_and_is_catalogued_like_an_import(data_dir):
    directory = _market_session(data_dir)
    with pytest.raises(
        DataError,
        match=r"live session was not consolidated \(closed: true\); "
        r"run `ticktape data recover testvenue/ABC/2026-11-21T153005`",
    ):
        resolve_session(str(KEY), data_dir)
    rows = consolidate(directory)
    assert rows == {"book": 0, "quotes": 10, "status": 0, "timer": 10, "trades": 10}
    assert sorted(p.name for p in directory.iterdir()) == [
        "meta.json",
        "quotes.parquet",
        "status.parquet",
        "timer.parquet",
        "trades.parquet",
    ]  # fmt: skip  (no book file: a kind without rows)
    meta = _meta(directory)
    assert meta["session"] == str(KEY)
    assert "recovered" not in meta
    assert meta["files"]["quotes.parquet"] == file_sha256(directory / "quotes.parquet")
    ref = resolve_session(str(KEY), data_dir)
    assert set(ref.files) == {"quotes", "trades"}
    assert sum(len(batch) for batch in ref.source("quotes").batches()) == 10  # passes checks
    (info,) = Catalog(data_dir).sessions()
    assert (info.key, info.rows) == (KEY, {"quotes": 10, "trades": 10})


def test_consolidation_is_idempotent_and_finishes_an_interrupted_run(data_dir):
    directory = _market_session(data_dir)
    saved = data_dir.parent / "saved-parts"
    shutil.copytree(directory / PARTS_DIR, saved)
    # a run that died after writing part of the files: a short quotes file and a stray tmp
    pq.write_table(quotes(3), directory / "quotes.parquet")
    (directory / "trades.parquet.tmp").write_bytes(b"half a file")
    first = consolidate(directory)
    hashes = _meta(directory)["files"]
    assert pq.read_table(directory / "quotes.parquet").num_rows == 10
    assert not list(directory.glob("*.tmp"))
    # a run that died after meta.json but before parts/ was removed
    shutil.copytree(saved, directory / PARTS_DIR)
    assert consolidate(directory) == first
    assert not (directory / PARTS_DIR).exists()
    assert consolidate(directory) == first
    assert {name: file_sha256(directory / name) for name in hashes} == hashes


def test_consolidating_a_closed_session_with_a_missing_part_fails(data_dir):
    directory = _market_session(data_dir)
    first = part_files(directory / PARTS_DIR / "timer")[0]
    left = 10 - pq.ParquetFile(first).metadata.num_rows
    first.unlink()
    with pytest.raises(DataError, match=rf"timer: meta.json says 10 rows .* parts hold {left}"):
        consolidate(directory)


def test_a_table_that_fails_to_merge_fails_consolidation_and_keeps_the_parts(data_dir):
    """The tables merge side by side: the others finish, the error names the bad part, and
    the session stays unconsolidated with its parts, so a rerun after the repair works."""
    directory = _market_session(data_dir)
    bad = part_files(directory / PARTS_DIR / "trades")[1]
    saved = bad.read_bytes()
    rows = pq.ParquetFile(bad).metadata.num_rows
    other = pa.Table.from_batches([_rows(0, rows)])  # the rows meta.json expects, but timer's
    pq.write_table(other, bad)
    with pytest.raises(DataError, match=rf"{bad.name}: schema differs from"):
        consolidate(directory)
    assert "consolidated" not in _meta(directory)
    assert pq.read_table(directory / "quotes.parquet").num_rows == 10  # merged beside it
    assert not (directory / "trades.parquet").exists()
    bad.write_bytes(saved)
    assert consolidate(directory)["trades"] == 10
    assert not list(directory.glob("*.tmp"))


def test_data_recover_command_consolidates_and_prints_rows_per_table(data_dir):
    directory = _market_session(data_dir)
    meta = _meta(directory)
    meta["closed"] = False  # as a killed recorder leaves it
    del meta["tables"]
    (directory / "meta.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(main, ["data", "recover", str(KEY), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("recovered ")
    assert "(the recorder did not close it): no checkpoint was recorded" in lines[0]
    rows = {"book": 0, "quotes": 10, "status": 0, "timer": 10, "trades": 10}
    assert lines[1:] == [f"  {name} {n} rows" for name, n in rows.items()]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("binance/BTCUSDT/2026-11-21T153005", True),
        ("binance/BTCUSDT/2026-11-21", True),
        ("binance/BTCUSDT/2026-11-21T1530", False),
        ("binance/BTCUSDT/2026-11-21T153005Z", False),
    ],
)
def test_session_key_accepts_a_live_time_suffix(text, ok):
    if ok:
        assert str(SessionKey.parse(text)) == text
    else:
        with pytest.raises(DataError, match="is not a session name"):
            SessionKey.parse(text)


def test_catalog_lists_dated_and_time_suffixed_sessions(data_dir):
    plain = SessionKey("testvenue", "ABC", "2026-11-21")
    for key in (plain, KEY):
        write_session(data_dir, key, {"quotes": quotes(5)}, meta={})
    assert sorted(session_files(data_dir)) == [plain, KEY]
    assert KEY.date == "2026-11-21T153005"
