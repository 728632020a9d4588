"""The run recorder: what it writes, hashes and bins equals the chunks the engine filled.

The digest is pinned to the value the recorder gave before its chunk buffers were reused and
hashed in one call (same data, same chunk size: the same bytes in the same order), for a chunk
size whose digest columns lie back to back (64) and one where they do not (7).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.metrics import LatencyHistogram
from simulator.recording import (
    DECISION_COLUMNS,
    EQUITY_COLUMNS,
    POOL,
    ROLL_CHUNKS,
    SPILL_DIR,
    STAGES,
    TIMING_COLUMNS,
    Rejection,
    RunRecorder,
    rejections_table,
)

PINNED = {
    64: "b3db5e0e37592998400428addffd904b4d473a7f5e25ef3c221aca3abd3352d1",
    7: "853c1ebb73fdf281d145eaef5da3a334f07845b78bf331c3653191ee51826f39",
}


def _rows(total: int) -> dict[str, np.ndarray]:
    """Deterministic columns (arithmetic, no random generator whose stream could change)."""
    i = np.arange(total, dtype=np.int64)
    columns: dict[str, np.ndarray] = {
        "event_index": i,
        "ts_recv": 1_700_000_000_000_000_000 + i * 997,
        "kind": (i % 3).astype(np.int8),
        "p": np.where(i % 5 == 0, np.nan, (i % 101) / 100.0),
        "target": (i % 11) - 5.0,
        "position": (i % 7) * 0.25,
        "equity": 1e4 + (i % 1013) * 0.01,
        "order_id": np.where(i % 37 == 0, i // 37 + 1, -1),
        "reject": np.where(i % 53 == 0, 2, 0).astype(np.int8),
        "skip": np.where(i % 41 == 0, 1, 0).astype(np.int8),
    }
    for k, name in enumerate(TIMING_COLUMNS):
        value = (i * (k + 3) * 7919) % (10 ** (k % 4 + 2)) + (i % 17 == 0) * 2**40
        columns[name] = np.where(i % (k + 1) == 0, value, -1)  # -1: the stage did not run
    columns["features_ns"][5] = 0
    columns["inference_ns"][6] = 2**62 + 12345  # beyond float64's exact integers
    return columns


def _record(
    out: Path, chunk_rows: int, total: int, roll_chunks: int = ROLL_CHUNKS, *, close: bool = True
) -> tuple[RunRecorder, str]:
    """Fill and flush the recorder chunk by chunk as the engine does (the columns it
    writes on every row; the sparse ones only where something happened)."""
    recorder = RunRecorder(out, chunk_rows=chunk_rows, roll_chunks=roll_chunks)
    data = _rows(total)
    for start in range(0, total, chunk_rows):
        n = min(chunk_rows, total - start)
        for name, _ in (*DECISION_COLUMNS, *((t, None) for t in TIMING_COLUMNS)):
            if name == "event_index":
                continue  # the recorder numbers the rows
            values = data[name][start : start + n]
            written = values != (0 if name in ("reject", "skip") else -1)
            if name in ("order_id", "reject", "skip", *TIMING_COLUMNS):
                recorder.arrays[name][:n][written] = values[written]
            else:
                recorder.arrays[name][:n] = values
        recorder.flush(n)
    return recorder, recorder.close() if close else ""


@pytest.mark.parametrize("chunk_rows", [64, 7])
def test_the_recorder_writes_hashes_and_bins_every_chunk_as_filled(tmp_path, chunk_rows):
    total = chunk_rows * (2 * POOL + 1) + chunk_rows // 2  # buffers reused, a last part chunk
    recorder, digest = _record(tmp_path / "run", chunk_rows, total)
    data = _rows(total)
    decisions = pq.read_table(tmp_path / "run" / "decisions.parquet")
    assert decisions.schema.equals(pa.table({n: v[:0] for n, v in data.items()}).schema)
    for name in decisions.column_names:
        np.testing.assert_array_equal(decisions.column(name).to_numpy(), data[name], err_msg=name)
    equity = pq.read_table(tmp_path / "run" / "equity.parquet")
    i = data["event_index"]
    last = (i % chunk_rows == chunk_rows - 1) | (i == total - 1)
    keep = (i % 100 == 0) | (data["order_id"] >= 0) | last
    assert equity.schema.equals(pa.table({n: data[n][:0] for n in EQUITY_COLUMNS}).schema)
    for name in EQUITY_COLUMNS:
        np.testing.assert_array_equal(equity.column(name).to_numpy(), data[name][keep])
    for stage in STAGES:
        expected = LatencyHistogram(stage)
        expected.add_samples(data[f"{stage}_ns"])
        got = recorder.histograms[stage]
        assert (got.count, got.total_ns, got.max_ns) == (
            expected.count,
            expected.total_ns,
            expected.max_ns,
        )
        np.testing.assert_array_equal(got.counts, expected.counts, err_msg=stage)
    assert digest == PINNED[chunk_rows]


def test_a_write_error_reaches_the_engine_thread_and_no_flush_waits_forever(tmp_path):
    out = tmp_path / "run"
    recorder = RunRecorder(out, chunk_rows=8)
    out.rmdir()  # the writer thread cannot create decisions.parquet

    def flush_then_close() -> None:
        for _ in range(3 * POOL):  # more chunks than buffers: each comes back all the same
            recorder.flush(8)
        recorder.close()

    with pytest.raises(OSError, match=SPILL_DIR):  # where the decisions' first part goes
        flush_then_close()
    recorder.abort()  # as a failed run does: its writer thread ends (no thread outlives it)
    assert not recorder._writer._thread.is_alive()


@pytest.mark.parametrize("roll_chunks", [1, 3])
def test_decisions_and_equity_rolled_into_parts_are_the_files_one_writer_wrote(
    tmp_path, roll_chunks
):
    """The parts (a new one every `roll_chunks` chunks, so no writer keeps a long run's row
    group metadata) make the same files, byte for byte, and the same digest."""
    total = 64 * 10 + 17  # 11 chunks, the last a part chunk
    _, one = _record(tmp_path / "one", 64, total, roll_chunks=100)
    _, rolled = _record(tmp_path / "rolled", 64, total, roll_chunks=roll_chunks)
    assert rolled == one
    for name in ("decisions", "equity"):
        written = (tmp_path / "one" / f"{name}.parquet").read_bytes()
        assert (tmp_path / "rolled" / f"{name}.parquet").read_bytes() == written, name
        assert pq.ParquetFile(tmp_path / "rolled" / f"{name}.parquet").num_row_groups == 11
    assert not (tmp_path / "rolled" / SPILL_DIR).exists()


def test_parts_are_finished_as_the_run_goes_and_an_aborted_run_keeps_its_decisions(tmp_path):
    out = tmp_path / "run"
    recorder, _ = _record(out, 64, 64 * 5, roll_chunks=2, close=False)
    deadline = time.monotonic() + 30
    while not (out / SPILL_DIR / "decisions-000003.parquet").exists():  # the 5th chunk's part
        assert time.monotonic() < deadline
        time.sleep(0.01)
    finished = sorted(p.name for p in (out / SPILL_DIR).glob("decisions-*.parquet"))
    assert finished == [f"decisions-00000{k}.parquet" for k in (1, 2, 3)]
    for path in sorted((out / SPILL_DIR).glob("*-00000[12].parquet")):
        assert pq.ParquetFile(path).num_row_groups == 2  # closed: readable, footer and all
    recorder.abort()
    decisions = pq.read_table(out / "decisions.parquet")
    np.testing.assert_array_equal(decisions.column("event_index").to_numpy(), np.arange(320))
    assert not (out / SPILL_DIR).exists()


@pytest.mark.parametrize("n", [0, 1, 5])
def test_the_rejections_table_equals_one_built_row_by_row(n):
    rows = [
        Rejection(
            event_index=i,
            ts=10**18 + i,
            side=(-1) ** i,
            qty=[0.5, 2.25, 1e-9][i % 3],
            reason=["MAX_POSITION", "mine_ünïcode", "BAD_PRICE"][i % 3],
            reason_code=i % 3 + 1,
        )
        for i in range(n)
    ]
    reference = pa.Table.from_pylist([asdict(r) for r in rows], schema=rejections_table([]).schema)
    assert rejections_table(rows).equals(reference)
