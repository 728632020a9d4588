"""Streaming sources: checked batch by batch, unreadable files named, repairs counted,
and several sources merged in the one deterministic order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.errors import DataError
from simulator.sources.merge import merge
from simulator.sources.recorded import (
    DuckDBSource,
    ParquetSource,
    check_file,
    write_repaired,
)
from tests.factories import T0, quotes, trades, with_value, write


def _walk(source):
    """Every event as (ts_recv, bid_px) through the memoryview columns."""
    out: list[tuple[int, float]] = []
    for batch in source.batches():
        out.extend(zip(batch.columns["ts_recv"], batch.columns["bid_px"], strict=True))
    return out


def test_parquet_source_streams_every_row_in_small_batches(tmp_path):
    table = quotes(100)
    path = write(table, tmp_path / "q.parquet", row_group_size=16)
    source = ParquetSource(path, batch_rows=7)
    rows = _walk(source)
    assert rows == list(
        zip(table.column("ts_recv").to_pylist(), table.column("bid_px").to_pylist(), strict=True)
    )
    assert source.kind == "quotes"
    assert source.report.rows == 100
    assert source.report.ok


def test_missing_exchange_time_falls_back_to_receive_time_in_batches(tmp_path):
    table = quotes(5)
    table = table.set_column(0, "ts_event", pa.nulls(5, pa.int64()))
    path = write(table, tmp_path / "q.parquet")
    batch = next(ParquetSource(path).batches())
    assert list(batch.columns["ts_event"]) == table.column("ts_recv").to_pylist()


def test_unsorted_row_in_a_later_batch_is_named_by_its_file_row(tmp_path):
    table = with_value(quotes(40), "ts_recv", 33, T0)
    path = write(table, tmp_path / "q.parquet")
    with pytest.raises(DataError, match=r"q\.parquet row 33: ts_recv went backwards"):
        _walk(ParquetSource(path, batch_rows=10))


def test_drop_repair_removes_and_counts_bad_rows(tmp_path):
    table = with_value(with_value(quotes(40), "ts_recv", 33, T0), "ask_px", 12, float("nan"))
    path = write(table, tmp_path / "q.parquet")
    source = ParquetSource(path, batch_rows=10, repair=("drop",))
    rows = _walk(source)
    assert len(rows) == 38
    assert source.report.repaired == {"dropped": 2}
    assert source.report.counts == {"unsorted": 1, "bad_price": 1}


def test_sort_repair_sorts_stably_and_counts_late_rows(tmp_path):
    table = quotes(10)
    order = [0, 1, 5, 2, 3, 4, 6, 7, 8, 9]
    path = write(table.take(order), tmp_path / "q.parquet")
    source = ParquetSource(path, repair=("sort",))
    assert [ts for ts, _ in _walk(source)] == table.column("ts_recv").to_pylist()
    assert source.report.repaired == {"sorted": 3}
    assert source.report.ok


def test_repaired_file_is_written_and_passes_the_check(tmp_path):
    table = with_value(quotes(20), "bid_px", 4, 500.0)
    path = write(table, tmp_path / "q.parquet")
    out = tmp_path / "fixed.parquet"
    report = write_repaired(ParquetSource(path, repair=("drop",)), out)
    assert report.repaired == {"dropped": 1}
    assert check_file(out).ok
    assert check_file(out).rows == 19


def test_check_file_reports_all_problems_without_raising(tmp_path):
    table = with_value(with_value(quotes(30), "bid_sz", 3, 0.0), "bid_px", 20, 200.0)
    report = check_file(write(table, tmp_path / "q.parquet"))
    assert report.counts == {"bad_size": 1, "crossed": 1}
    assert [p.row for p in report.examples] == [3, 20]


def test_truncated_parquet_file_is_named(tmp_path):
    path = write(quotes(1000), tmp_path / "q.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"q\.parquet: not a readable Parquet file .* truncated"):
        ParquetSource(path)


def test_corrupt_page_is_named_when_read(tmp_path):
    path = write(quotes(5000), tmp_path / "q.parquet", compression="zstd")
    offset = pq.ParquetFile(path).metadata.row_group(0).column(2).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64  # a page header garbled, footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"q\.parquet: cannot read .* truncated or corrupt"):
        _walk(ParquetSource(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"ts_recv,bid_px\n1,2\n", r"not a readable Parquet file"),
    ],
)
def test_empty_or_foreign_file_is_named(tmp_path, content, message):
    path = tmp_path / "q.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        ParquetSource(path)


def test_parquet_file_without_rows_is_an_error(tmp_path):
    path = write(quotes(3).slice(0, 0), tmp_path / "q.parquet")
    with pytest.raises(DataError, match=r"q\.parquet: no rows \(empty file\)"):
        ParquetSource(path)


def test_unknown_columns_cannot_be_given_a_kind(tmp_path):
    path = write(pa.table({"ts_recv": [1], "price": [1.0]}), tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"cannot tell the data kind from columns"):
        ParquetSource(path)


def _merged_keys(batches):
    keys = []
    for merged in batches:
        for part, row in zip(merged.order_part, merged.order_row, strict=True):
            batch = merged.parts[part]
            keys.append((int(batch.ts_recv[row]), batch.source, int(batch.seq[row])))
    return keys


def test_merge_orders_by_time_then_priority_then_seq(tmp_path):
    q = write(quotes(50, step=2), tmp_path / "q.parquet")
    t = write(trades(40, step=3), tmp_path / "t.parquet")
    sources = [
        ParquetSource(t, priority=1, batch_rows=7),
        ParquetSource(q, priority=0, batch_rows=5),
    ]
    keys = _merged_keys(merge(sources))
    assert len(keys) == 90
    assert keys == sorted(keys)
    first_tie = keys.index((T0, 1, 0))
    assert keys[first_tie - 1] == (T0, 0, 0)  # same time: the quote (priority 0) goes first


def test_merge_handles_long_runs_of_one_timestamp_across_batches(tmp_path):
    same = quotes(30).set_column(1, "ts_recv", pa.array([T0] * 30, pa.int64()))
    q = write(same, tmp_path / "q.parquet")
    t = write(trades(5, start=T0 - 1, step=1), tmp_path / "t.parquet")
    keys = _merged_keys(merge([ParquetSource(q, batch_rows=4), ParquetSource(t, priority=1)]))
    assert keys == sorted(keys)
    assert len(keys) == 35


def test_merge_is_identical_across_batch_sizes(tmp_path):
    rng = np.random.default_rng(7)
    ts = np.sort(rng.integers(T0, T0 + 40, 200))
    q = quotes(200).set_column(1, "ts_recv", pa.array(ts, pa.int64()))
    q = q.set_column(0, "ts_event", pa.array(ts, pa.int64()))
    path = write(q, tmp_path / "q.parquet")
    tpath = write(trades(60, step=1), tmp_path / "t.parquet")
    runs = [
        _merged_keys(
            merge(
                [ParquetSource(path, batch_rows=a), ParquetSource(tpath, priority=1, batch_rows=b)]
            )
        )
        for a, b in ((1, 1), (3, 17), (1000, 1000))
    ]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0] == sorted(runs[0])


def test_duckdb_source_streams_sql_results(tmp_path):
    import duckdb

    path = write(quotes(100), tmp_path / "q.parquet")
    con = duckdb.connect()
    sql = f"SELECT * FROM read_parquet('{path}') WHERE bid_sz > 50 ORDER BY ts_recv"
    source = DuckDBSource(con, sql, batch_rows=8)
    assert source.kind == "quotes"
    batches = list(source.batches())
    assert sum(len(b) for b in batches) == 50
    assert max(len(b) for b in batches) <= 8


def test_duckdb_source_names_a_failing_query():
    import duckdb

    with pytest.raises(DataError, match=r"SQL query failed: .*no_such_table"):
        DuckDBSource(duckdb.connect(), "SELECT * FROM no_such_table")


def test_duckdb_source_checks_rows_like_a_file(tmp_path):
    import duckdb

    path = write(with_value(quotes(10), "bid_px", 6, -1.0), tmp_path / "q.parquet")
    source = DuckDBSource(duckdb.connect(), f"SELECT * FROM read_parquet('{path}')")
    with pytest.raises(DataError, match=r"^sql: .* row 6: price is NaN, zero or negative"):
        list(source.batches())
