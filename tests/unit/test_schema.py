"""The data contract: every kind of bad row is found, named by row, and counted."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from simulator.errors import DataError
from simulator.sources.schema import check_table, conform, require_valid
from tests.factories import book, quotes, trades, with_value


def test_valid_tables_pass_unchanged_in_content():
    for kind, table in (("quotes", quotes()), ("trades", trades()), ("book", book())):
        checked = require_valid(table, kind, where="t")
        assert checked.num_rows == table.num_rows
        assert checked.column("ts_recv").to_pylist() == table.column("ts_recv").to_pylist()


def test_ts_recv_going_backwards_names_the_row():
    table = with_value(quotes(), "ts_recv", 3, quotes().column("ts_recv")[1].as_py())
    with pytest.raises(DataError, match=r"^q row 3: ts_recv went backwards \(ts_recv=\d+\)"):
        require_valid(table, "quotes", where="q")


def test_every_row_behind_the_running_maximum_counts_as_unsorted():
    ts = quotes().column("ts_recv").to_pylist()
    ts[2], ts[5] = ts[5], ts[2]  # row 3, 4 and 5 are now behind row 2
    table = quotes().set_column(1, "ts_recv", pa.array(ts, pa.int64()))
    _, report = check_table(table, "quotes", where="q")
    assert report.counts == {"unsorted": 3}


def test_duplicate_row_is_reported_but_equal_timestamps_alone_are_fine():
    table = quotes()
    same_time = table.set_column(1, "ts_recv", pa.array([5] * 10, pa.int64()))
    assert check_table(same_time, "quotes", where="q")[1].ok
    doubled = pa.concat_tables([table.slice(0, 4), table.slice(3, 7)])
    with pytest.raises(DataError, match=r"^q row 4: duplicate of the previous row"):
        require_valid(doubled, "quotes", where="q")


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("bid_px", math.nan, "price is NaN, zero or negative"),
        ("ask_px", 0.0, "price is NaN, zero or negative"),
        ("bid_px", -1.0, "price is NaN, zero or negative"),
        ("ask_sz", math.nan, "size is NaN, zero or negative"),
        ("bid_sz", 0.0, "size is NaN, zero or negative"),
        ("ask_sz", -3.0, "size is NaN, zero or negative"),
        ("bid_px", 200.0, "crossed book"),
        ("bid_px", 100.08, "locked book"),
    ],
)
def test_bad_quote_values_name_row_and_problem(column, value, problem):
    table = with_value(quotes(), column, 7, value)
    with pytest.raises(DataError, match=rf"^q row 7: {problem}"):
        require_valid(table, "quotes", where="q")


def test_bad_trade_values_are_found():
    assert check_table(with_value(trades(), "px", 2, -1.0), "trades", "t")[1].counts == {
        "bad_price": 1
    }
    assert check_table(with_value(trades(), "sz", 2, 0.0), "trades", "t")[1].counts == {
        "bad_size": 1
    }
    assert check_table(with_value(trades(), "side", 4, 2), "trades", "t")[1].counts == {
        "bad_side": 1
    }


def test_book_levels_must_be_ordered_but_deep_levels_may_be_empty():
    table = with_value(book(), "bid_px_2", 1, 100.5)
    assert check_table(table, "book", "b")[1].counts == {"level_order": 1}
    empty_level = with_value(with_value(book(), "ask_px_2", 1, None), "ask_sz_2", 1, None)
    assert check_table(empty_level, "book", "b")[1].ok
    half_empty = with_value(book(), "ask_px_2", 1, None)
    assert check_table(half_empty, "book", "b")[1].counts == {"bad_price": 1}


def test_crossed_book_at_level_zero():
    table = with_value(book(), "bid_px_0", 0, 100.02)
    with pytest.raises(DataError, match=r"^b row 0: crossed book"):
        require_valid(table, "book", where="b")


def test_missing_column_is_named():
    with pytest.raises(DataError, match=r"^q: missing column\(s\) \['ask_sz'\] for quotes"):
        conform(quotes().drop_columns(["ask_sz"]), "quotes", "q")


def test_missing_timestamp_names_the_accepted_alternatives():
    with pytest.raises(
        DataError, match=r"missing column 'ts_recv' \(also accepted: a single 'ts_ns'"
    ):
        conform(quotes().drop_columns(["ts_recv", "ts_event"]), "quotes", "q")


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("ts_recv", pa.array([1.5] * 10), "column 'ts_recv' has dtype double; expected int64"),
        ("bid_px", pa.array(["100"] * 10), "column 'bid_px' has dtype string; expected float64"),
    ],
)
def test_wrong_dtype_is_named(column, values, expected):
    table = quotes()
    table = table.set_column(table.column_names.index(column), column, values)
    with pytest.raises(DataError, match=rf"^q: {expected}"):
        conform(table, "quotes", "q")


def test_single_ts_ns_column_serves_as_both_times():
    table = (
        quotes()
        .drop_columns(["ts_event"])
        .rename_columns(["ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz"])
    )
    checked = require_valid(table, "quotes", where="q")
    assert checked.column("ts_event").equals(checked.column("ts_recv"))


def test_timestamp_dtype_is_accepted_as_nanoseconds():
    table = quotes()
    as_ns = table.column("ts_recv").cast(pa.timestamp("ns", "UTC"))
    table = table.set_column(1, "ts_recv", as_ns.cast(pa.timestamp("us", "UTC")))
    checked = require_valid(table, "quotes", where="q")
    assert checked.column("ts_recv").type == pa.int64()
    assert checked.column("ts_recv").to_pylist() == quotes().column("ts_recv").to_pylist()


def test_empty_table_is_an_error():
    with pytest.raises(DataError, match=r"^q: no rows \(empty file\)"):
        require_valid(quotes().slice(0, 0), "quotes", where="q")


def test_report_counts_every_problem_and_keeps_a_few_examples():
    table = quotes(50)
    for row in range(5, 45, 2):
        table = with_value(table, "bid_sz", row, 0.0)
    _, report = check_table(table, "quotes", "q")
    assert report.counts == {"bad_size": 20}
    assert [p.row for p in report.examples] == [5, 7, 9, 11, 13]


def test_duplicate_with_null_exchange_time_is_still_a_duplicate():
    table = quotes().set_column(0, "ts_event", pa.nulls(10, pa.int64()))
    doubled = pa.concat_tables([table.slice(0, 4), table.slice(3, 7)])
    with pytest.raises(DataError, match=r"^q row 4: duplicate of the previous row"):
        require_valid(doubled, "quotes", where="q")


def test_a_late_row_between_two_copies_cannot_hide_the_second_copy():
    table = quotes(6)
    late = with_value(table.slice(1, 1), "ts_recv", 0, 5)  # far in the past
    rows = pa.concat_tables([table.slice(0, 3), late, table.slice(2, 4)])  # row 4 repeats row 2
    _, report = check_table(rows, "quotes", "q")
    assert report.counts == {"unsorted": 1, "duplicate": 1}
    assert [p.row for p in report.examples] == [3, 4]
