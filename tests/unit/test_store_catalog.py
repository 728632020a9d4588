"""Sessions are written atomically and idempotently; the catalog sees exactly what is on disk."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from simulator.catalog import CATALOG_FILE, Catalog
from simulator.errors import DataError
from simulator.sources.recorded import DuckDBSource
from simulator.store import session_dir, write_session
from simulator.types import SessionKey
from tests.factories import book, quotes, trades, with_value

GOOD = SessionKey("testvenue", "ABC", "2023-11-14")
OTHER = SessionKey("testvenue", "XYZ", "2023-11-15")


def _write(data_dir, key=GOOD, n=10):
    return write_session(
        data_dir,
        key,
        {"quotes": quotes(n), "trades": trades(n), "book": book(n, levels=2)},
        meta={"importer": "test", "time_zone": "America/New_York"},
    )


def test_written_session_has_files_and_meta_with_hashes(data_dir):
    path = _write(data_dir)
    assert path == session_dir(data_dir, GOOD)
    assert sorted(p.name for p in path.iterdir()) == [
        "book.parquet", "meta.json", "quotes.parquet", "trades.parquet",
    ]  # fmt: skip
    meta = json.loads((path / "meta.json").read_text())
    assert meta["session"] == str(GOOD)
    assert set(meta["files"]) == {"book.parquet", "quotes.parquet", "trades.parquet"}


def test_reimport_replaces_and_leaves_no_temporary_directories(data_dir):
    _write(data_dir, n=10)
    _write(data_dir, n=20)
    catalog = Catalog(data_dir)
    (info,) = catalog.sessions()
    assert info.rows == {"book": 20, "quotes": 20, "trades": 20}
    assert not [p for p in session_dir(data_dir, GOOD).parent.iterdir() if p.name.startswith(".")]


def test_invalid_table_writes_nothing(data_dir):
    bad = with_value(quotes(), "ask_px", 2, 1.0)
    with pytest.raises(DataError, match=r"testvenue/ABC/2023-11-14 quotes row 2: crossed book"):
        write_session(data_dir, GOOD, {"quotes": bad}, meta={})
    assert not session_dir(data_dir, GOOD).exists()


def test_failure_while_writing_keeps_the_old_session(data_dir, monkeypatch):
    _write(data_dir, n=10)
    import simulator.store as store

    def explode(table, path):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        _write(data_dir, n=20)
    monkeypatch.undo()
    (info,) = Catalog(data_dir).sessions()
    assert info.rows["quotes"] == 10
    leftovers = [p.name for p in session_dir(data_dir, GOOD).parent.iterdir()]
    assert leftovers == [GOOD.date]


def test_catalog_lists_sessions_with_span_kinds_and_levels(data_dir):
    _write(data_dir)
    write_session(data_dir, OTHER, {"quotes": quotes(5)}, meta={})
    catalog = Catalog(data_dir)
    first, second = catalog.sessions()
    assert first.key == GOOD
    assert first.kinds == ("quotes", "trades", "book")
    assert first.levels == 2
    assert first.time_zone == "America/New_York"
    assert (first.ts_start, first.ts_end) == (
        quotes(10).column("ts_recv")[0].as_py(),
        trades(10).column("ts_recv")[-1].as_py(),
    )
    assert second.key == OTHER
    assert second.kinds == ("quotes",)
    assert second.time_zone == "UTC"


def test_catalog_views_answer_sql_per_kind(data_dir):
    _write(data_dir)
    write_session(data_dir, OTHER, {"quotes": quotes(5)}, meta={})
    con = Catalog(data_dir).connection
    rows = con.sql("SELECT symbol, count(*) FROM quotes GROUP BY symbol ORDER BY symbol").fetchall()
    assert rows == [("ABC", 10), ("XYZ", 5)]
    assert con.sql("SELECT max(bid_px_1) FROM book").fetchall() == [(pytest.approx(99.99),)]


def test_catalog_refreshes_when_files_change(data_dir):
    _write(data_dir)
    assert len(Catalog(data_dir).sessions()) == 1
    assert (data_dir / CATALOG_FILE).exists()
    write_session(data_dir, OTHER, {"quotes": quotes(5)}, meta={})
    assert [s.key for s in Catalog(data_dir).sessions()] == [GOOD, OTHER]


def test_duckdb_source_over_catalog_view(data_dir):
    _write(data_dir, n=30)
    catalog = Catalog(data_dir)
    sql = "SELECT * EXCLUDE (venue, symbol, date) FROM quotes WHERE symbol = 'ABC' ORDER BY ts_recv"
    source = DuckDBSource(catalog.connection, sql, batch_rows=8)
    assert sum(len(b) for b in source.batches()) == 30


def test_catalog_of_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(
        DataError, match=r"data directory .*nowhere does not exist; pass --data-dir"
    ):
        Catalog(tmp_path / "nowhere")


def test_unknown_kind_is_refused(data_dir):
    with pytest.raises(DataError, match=r"unknown data kind\(s\) \['ticks'\]"):
        write_session(data_dir, GOOD, {"ticks": pa.table({"a": [1]})}, meta={})
