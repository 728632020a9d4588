"""LOBSTER importer: the PROVENANCE.md facts on the real sample files, input forms, bad input."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from simulator.errors import DataError
from simulator.importers.common import ImportResult
from simulator.importers.lobster import import_lobster
from simulator.store import read_meta
from simulator.types import SessionKey, book_columns
from tests.conftest import ORIGINALS

LOBSTER = ORIGINALS / "lobster"
GOOG_ZIP = LOBSTER / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
AAPL_ZIP = LOBSTER / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"
AAPL_STEM = "AAPL_2012-06-21_34200000_57600000"
SESSION_OPEN_UTC_NS = 1_340_285_400 * 10**9  # 2012-06-21 13:30:00 UTC = 09:30 EDT


@dataclass(frozen=True)
class Expected:
    """One row of the PROVENANCE.md LOBSTER table."""

    messages: int
    event_mix: dict[str, int]
    mid: tuple[float, float]
    spread: tuple[float, float, float]
    quotes: int
    trades: int
    levels: int


GOOG = Expected(
    messages=147_916,
    event_mix={"1": 71_258, "2": 19, "3": 64_961, "4": 7_765, "5": 3_913},
    mid=(563.73, 579.815),
    spread=(0.01, 0.28, 2.31),
    quotes=45_569,
    trades=11_678,
    levels=10,
)
AAPL = Expected(
    messages=118_497,
    event_mix={"1": 54_818, "2": 252, "3": 28_437, "4": 23_658, "5": 11_332},
    mid=(577.48, 588.185),
    spread=(0.01, 0.15, 0.92),
    quotes=107_165,
    trades=34_990,
    levels=1,
)
CASES = [pytest.param(GOOG_ZIP, GOOG, id="GOOG"), pytest.param(AAPL_ZIP, AAPL, id="AAPL")]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportResult]:
    """Both real zips imported once for the module (about 4 s together)."""
    data_dir = tmp_path_factory.mktemp("data")
    results = import_lobster([GOOG_ZIP, AAPL_ZIP], data_dir)
    return {result.key.symbol: result for result in results}


def _result(imported: dict[str, ImportResult], archive: Path) -> ImportResult:
    return imported[archive.name.split("_")[2]]


@pytest.mark.parametrize(("archive", "expected"), CASES)
def test_real_sample_reproduces_provenance_facts(imported, archive, expected):
    facts = _result(imported, archive).facts
    assert facts["event_mix"] == expected.event_mix
    assert facts["levels"] == expected.levels
    assert facts["rows"] == {
        "messages": expected.messages,
        "book": expected.messages,
        "quotes": expected.quotes,
        "trades": expected.trades,
        "orders": sum(n for kind, n in expected.event_mix.items() if kind in "12345"),
    }
    assert (facts["mid_min"], facts["mid_max"]) == pytest.approx(expected.mid)
    spread = (facts["spread_min"], facts["spread_median"], facts["spread_max"])
    assert spread == pytest.approx(expected.spread)
    assert facts["crossed_or_locked"] == 0
    assert facts["empty_l1_rows"] == 0


@pytest.mark.parametrize(("archive", "expected"), CASES)
def test_real_sample_writes_tables_matching_facts(imported, archive, expected):
    result = _result(imported, archive)
    assert result.key == SessionKey("nasdaq", archive.name.split("_")[2], "2012-06-21")
    book = pq.read_table(result.path / "book.parquet")
    quotes = pq.read_table(result.path / "quotes.parquet")
    trades = pq.read_table(result.path / "trades.parquet")
    assert (book.num_rows, quotes.num_rows, trades.num_rows) == (
        expected.messages,
        expected.quotes,
        expected.trades,
    )
    assert book.column_names == [
        "ts_event",
        "ts_recv",
        *book_columns(expected.levels),
        "seq",
        "event_type",
    ]
    ts = book.column("ts_event").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    assert book.column("ts_recv").to_numpy().tolist() == ts.tolist()
    assert book.column("seq").to_numpy().tolist() == list(range(expected.messages))
    assert SESSION_OPEN_UTC_NS <= ts[0] < SESSION_OPEN_UTC_NS + 10**9
    assert ts[-1] < SESSION_OPEN_UTC_NS + 390 * 60 * 10**9  # before 20:00 UTC close


@pytest.mark.parametrize(("archive", "expected"), CASES)
def test_real_sample_meta_records_source_and_mix(imported, archive, expected):
    meta = read_meta(_result(imported, archive).path)
    assert meta["importer"] == "lobster"
    assert meta["time_zone"] == "America/New_York"
    assert meta["levels"] == expected.levels
    assert meta["event_mix"] == expected.event_mix
    assert meta["session"] == f"nasdaq/{archive.name.split('_')[2]}/2012-06-21"
    assert isinstance(meta["source_files"], list)
    assert all(name.startswith(archive.name + "/") for name in meta["source_files"])
    files = meta["files"]
    assert isinstance(files, dict)
    assert set(files) == {"book.parquet", "quotes.parquet", "trades.parquet", "orders.parquet"}


def test_first_aapl_message_time_is_parsed_to_the_exact_nanosecond(imported):
    # Message line 1 reads 34200.004241176 (seconds after midnight, EDT = UTC-4).
    book = pq.read_table(_result(imported, AAPL_ZIP).path / "book.parquet")
    assert book.column("ts_event")[0].as_py() == SESSION_OPEN_UTC_NS + 4_241_176


def test_trade_side_is_opposite_of_resting_order_direction(imported):
    # AAPL line 8 executes a resting sell order (direction -1): a buyer-initiated trade.
    trades = pq.read_table(_result(imported, AAPL_ZIP).path / "trades.parquet")
    first = trades.slice(0, 1).to_pylist()[0]
    assert first | {"ts_event": 0, "ts_recv": 0} == {
        "ts_event": 0,
        "ts_recv": 0,
        "px": 585.74,
        "sz": 40.0,
        "side": 1,
        "seq": 7,
        "order_id": 5740544,
        "event_type": 4,
    }
    assert set(trades.column("side").to_pylist()) == {-1, 1}


def _extract(archive: Path, directory: Path, stem: str) -> tuple[Path, Path]:
    names = (f"{stem}_message_1.csv", f"{stem}_orderbook_1.csv")
    with zipfile.ZipFile(archive) as opened:
        for name in names:
            (directory / name).write_bytes(opened.read(name))
    return directory / names[0], directory / names[1]


def test_csv_pair_imports_the_same_session_as_the_zip(imported, data_dir, tmp_path):
    message, orderbook = _extract(AAPL_ZIP, tmp_path, AAPL_STEM)
    (from_pair,) = import_lobster([message, orderbook], data_dir)
    assert from_pair.facts == _result(imported, AAPL_ZIP).facts
    assert (
        read_meta(from_pair.path)["files"] == read_meta(_result(imported, AAPL_ZIP).path)["files"]
    )
    assert read_meta(from_pair.path)["source_files"] == [message.name, orderbook.name]


def test_csv_given_alone_finds_its_partner_beside_it(tmp_path, data_dir):
    message, orderbook = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    for given in (message, orderbook):
        (result,) = import_lobster([given], data_dir)
        assert result.rows == {"book": 3, "quotes": 3, "trades": 1, "orders": 3}


def test_reimport_replaces_the_session_without_duplicates(tmp_path, data_dir):
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    (first,) = import_lobster([message], data_dir)
    hashes = read_meta(first.path)["files"]
    (second,) = import_lobster([message], data_dir)
    assert second.path == first.path
    assert read_meta(second.path)["files"] == hashes
    assert pq.read_table(second.path / "book.parquet").num_rows == 3
    assert [p.name for p in first.path.parent.iterdir()] == ["2012-06-21"]


def test_progress_is_reported_up_to_the_total(tmp_path, data_dir):
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    calls: list[tuple[int, int]] = []
    import_lobster([message], data_dir, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] > 0
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# --- small hand-made files and bad input ---------------------------------------------------

_STEM = "TEST_2012-06-21_34200000_57600000"
_SMALL_MESSAGES = (
    "34200.004241176,1,16113575,18,5853300,1\n"
    "34200.5,1,16120456,18,5859100,-1\n"
    "34201,4,16120456,10,5859100,-1\n"
)
_SMALL_BOOK = "5859400,200,5853300,18\n5859100,18,5853300,18\n5859100,8,5853300,18\n"


def _write_pair(directory: Path, messages: str, book: str, levels: int = 1) -> tuple[Path, Path]:
    message = directory / f"{_STEM}_message_{levels}.csv"
    orderbook = directory / f"{_STEM}_orderbook_{levels}.csv"
    message.write_text(messages)
    orderbook.write_text(book)
    return message, orderbook


def test_small_pair_has_exact_times_prices_and_an_empty_deeper_level(tmp_path, data_dir):
    book_l2 = "".join(line + ",9999999999,0,-9999999999,0\n" for line in _SMALL_BOOK.splitlines())
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES, book_l2, levels=2)
    (result,) = import_lobster([message], data_dir)
    book = pq.read_table(result.path / "book.parquet").to_pylist()
    assert [row["ts_event"] - SESSION_OPEN_UTC_NS for row in book] == [
        4_241_176,
        500_000_000,
        1_000_000_000,
    ]
    assert book[0]["bid_px_0"] == 585.33
    assert book[0]["ask_px_0"] == 585.94
    assert (book[0]["bid_px_1"], book[0]["bid_sz_1"]) == (None, None)
    assert (book[0]["ask_px_1"], book[0]["ask_sz_1"]) == (None, None)
    trades = pq.read_table(result.path / "trades.parquet").to_pylist()
    assert [(t["px"], t["sz"], t["side"], t["seq"]) for t in trades] == [(585.91, 10.0, 1, 2)]


@pytest.mark.parametrize(
    ("messages", "book", "error"),
    [
        pytest.param(
            _SMALL_MESSAGES.replace("34200.5,1", "34200.5,x"),
            _SMALL_BOOK,
            r"message_1\.csv line 2: type is 'x'; expected an integer",
            id="non-integer-field",
        ),
        pytest.param(
            _SMALL_MESSAGES.replace(",5859100,-1\n34201", ",5859100\n34201"),
            _SMALL_BOOK,
            r"message_1\.csv line 2: expected 6 comma-separated fields, found 5",
            id="missing-field",
        ),
        pytest.param(
            _SMALL_MESSAGES.replace("34200.5", "34200,5"),
            _SMALL_BOOK,
            r"message_1\.csv line 2: expected 6 comma-separated fields, found 7",
            id="extra-field",
        ),
        pytest.param(
            _SMALL_MESSAGES.replace("34200.5", "34200.5e3"),
            _SMALL_BOOK,
            r"message_1\.csv line 2: time is '34200\.5e3'; expected seconds after midnight",
            id="bad-time",
        ),
        pytest.param(
            _SMALL_MESSAGES.replace("34201,", "34199,"),
            _SMALL_BOOK,
            r"message_1\.csv line 3: time is '34199'; expected non-decreasing time",
            id="time-backwards",
        ),
        pytest.param(
            _SMALL_MESSAGES.replace("34201,4", "34201,9"),
            _SMALL_BOOK,
            r"message_1\.csv line 3: type is 9; expected 1 to 7",
            id="unknown-type",
        ),
        pytest.param(
            _SMALL_MESSAGES,
            _SMALL_BOOK.replace("5859100,8", "-5,8"),
            r"orderbook_1\.csv line 3: ask_px_1 is -5; expected a positive price",
            id="negative-book-price",
        ),
        pytest.param(
            _SMALL_MESSAGES,
            _SMALL_BOOK + "\n5859100,8,5853300,18\n",
            r"orderbook_1\.csv line 4: expected 4 comma-separated fields, found 1",
            id="blank-line",
        ),
    ],
)
def test_bad_line_raises_data_error_naming_file_and_line(tmp_path, data_dir, messages, book, error):
    message, _ = _write_pair(tmp_path, messages, book)
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}/{_STEM}_{error}"):
        import_lobster([message], data_dir)
    assert not any(data_dir.iterdir())  # nothing half-written


# Float print artefacts as real LOBSTER files carry them, in non-decreasing order, and the
# nanoseconds after 34200 s each must become (rounded half-even on the decimal text).
_LONG_TIMES = [
    ("34200.0000000005", 0),  # tie, 0 is even: stays
    ("34200.0000000015", 2),  # tie, 1 is odd: up to even
    ("34200.000000002499999", 2),  # below half: down
    ("34200.0000000025", 2),  # tie, 2 is even: stays
    ("34200.00000000250000000000000000001", 3),  # just above half: up
    ("34200.0000000035000", 4),  # trailing zeros do not make it more than a tie
    ("34200.632812672004", 632_812_672),  # as in a real file
    ("34200.9999999994", 999_999_999),
    ("34200.9999999995", 1_000_000_000),  # tie on 9 (odd): carries into the next second
    ("34201.000000000", 1_000_000_000),
]


def test_times_past_nine_decimals_round_half_even_to_the_nanosecond(tmp_path, data_dir):
    messages = "".join(f"{text},1,{n},1,5853300,1\n" for n, (text, _) in enumerate(_LONG_TIMES))
    message, _ = _write_pair(tmp_path, messages, "5859400,200,5853300,18\n" * len(_LONG_TIMES))
    (result,) = import_lobster([message], data_dir)
    book = pq.read_table(result.path / "book.parquet").column("ts_event").to_pylist()
    assert [ts - SESSION_OPEN_UTC_NS for ts in book] == [ns for _, ns in _LONG_TIMES]


@pytest.mark.parametrize("text", ["34200.5.1", "34200.", ".5", "3e4", "34200.5x", "\u0663\u0664"])
def test_time_that_is_not_a_decimal_number_is_refused(tmp_path, data_dir, text):
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES.replace("34200.5", text), _SMALL_BOOK)
    with pytest.raises(
        DataError, match=rf"message_1\.csv line 2: time is {re.escape(repr(text))}; expected sec"
    ):
        import_lobster([message], data_dir)


def test_unequal_row_counts_raise_data_error_naming_both_files(tmp_path, data_dir):
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(
        DataError, match=r"message_1\.csv has 3 rows but .*orderbook_1\.csv has 2; expected one"
    ):
        import_lobster([message], data_dir)


def test_unknown_file_name_raises_data_error(tmp_path, data_dir):
    path = tmp_path / "GOOG_messages.csv"
    path.write_text(_SMALL_MESSAGES)
    with pytest.raises(DataError, match=r"GOOG_messages\.csv: unknown file name pattern"):
        import_lobster([path], data_dir)


@pytest.mark.parametrize("empty", ["message", "orderbook"])
def test_empty_file_raises_data_error_naming_it(tmp_path, data_dir, empty):
    message, orderbook = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    (message if empty == "message" else orderbook).write_text("")
    with pytest.raises(DataError, match=rf"{empty}_1\.csv: empty file"):
        import_lobster([message], data_dir)


def test_csv_without_its_partner_raises_data_error(tmp_path, data_dir):
    message, orderbook = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    orderbook.unlink()
    with pytest.raises(DataError, match=r"message_1\.csv: its partner .*orderbook_1\.csv is not"):
        import_lobster([message], data_dir)


def test_zip_missing_the_orderbook_raises_data_error(tmp_path, data_dir):
    archive = tmp_path / "sample.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr(f"{_STEM}_message_1.csv", _SMALL_MESSAGES)
    with pytest.raises(DataError, match=r"sample\.zip: holds .*message_1\.csv but not its partner"):
        import_lobster([archive], data_dir)


def test_zip_without_lobster_files_raises_data_error(tmp_path, data_dir):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"other\.zip: no LOBSTER message/orderbook CSV inside"):
        import_lobster([archive], data_dir)


def test_bad_line_inside_a_zip_names_archive_member_and_line(tmp_path, data_dir):
    archive = tmp_path / "sample.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr(f"{_STEM}_message_1.csv", _SMALL_MESSAGES.replace("16120456,18", "?,18"))
        opened.writestr(f"{_STEM}_orderbook_1.csv", _SMALL_BOOK)
    with pytest.raises(
        DataError, match=r"sample\.zip/TEST_.*_message_1\.csv line 2: order_id is '\?'"
    ):
        import_lobster([archive], data_dir)


def test_truncated_real_zip_raises_data_error_naming_it(tmp_path, data_dir):
    archive = tmp_path / AAPL_ZIP.name
    data = AAPL_ZIP.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(archive))}: truncated or corrupt zip \("
    ):
        import_lobster([archive], data_dir)
    assert not any(data_dir.iterdir())


def test_truncated_zip_is_recognised_by_content_without_the_zip_suffix(tmp_path, data_dir):
    archive = tmp_path / "download.bin"
    archive.write_bytes(AAPL_ZIP.read_bytes()[:4096])
    with pytest.raises(DataError, match=r"download\.bin: truncated or corrupt zip"):
        import_lobster([archive], data_dir)


def test_zip_with_a_damaged_member_raises_data_error_naming_the_member(tmp_path, data_dir):
    archive = tmp_path / AAPL_ZIP.name
    data = bytearray(AAPL_ZIP.read_bytes())
    middle = len(data) // 4  # inside the first member's compressed bytes
    data[middle : middle + 64] = bytes(64)
    archive.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=rf"{re.escape(archive.name)}/{AAPL_STEM}_\w+_1\.csv: truncated or corrupt"
    ):
        import_lobster([archive], data_dir)
    assert not any(data_dir.iterdir())


def test_zip_holding_two_pairs_imports_two_sessions(tmp_path, data_dir):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for ticker in ("AAA", "BBB"):
            stem = _STEM.replace("TEST", ticker)
            opened.writestr(f"{stem}_message_1.csv", _SMALL_MESSAGES)
            opened.writestr(f"{stem}_orderbook_1.csv", _SMALL_BOOK)
    results = import_lobster([archive], data_dir)
    assert [str(r.key) for r in results] == ["nasdaq/AAA/2012-06-21", "nasdaq/BBB/2012-06-21"]


def test_two_inputs_for_one_session_raise_data_error(tmp_path, data_dir):
    message, _ = _write_pair(tmp_path, _SMALL_MESSAGES, _SMALL_BOOK)
    archive = tmp_path / "copy.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr(f"{_STEM}_message_1.csv", _SMALL_MESSAGES)
        opened.writestr(f"{_STEM}_orderbook_1.csv", _SMALL_BOOK)
    with pytest.raises(DataError, match=r"are both session nasdaq/TEST/2012-06-21"):
        import_lobster([message, archive], data_dir)
