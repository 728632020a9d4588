"""Importers in bounded memory: the bundled originals import to the same bytes as before the
importers streamed, and a streamed import in tiny blocks (batch edges mid-file, many row
groups) writes exactly the files of a whole-file import."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from simulator import store
from simulator.importers import binance, binance_session, coinbase
from simulator.importers.binance import import_binance
from simulator.importers.binance_tables import bbo_agreement
from simulator.importers.coinbase import import_coinbase
from simulator.importers.lobster import import_lobster
from tests.conftest import ORIGINALS
from tests.importers.generate import write_binance_recording, write_lobster_pair

LOBSTER = ORIGINALS / "lobster"


def _digests(data_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }


# sha256 of each file the importers wrote for the bundled originals before they streamed
# (whole files in memory; orders.parquet and meta.json re-pinned from a whole-file import
# when the `orders` kind was added). A pyarrow upgrade may change Parquet bytes: then re-pin from a
# whole-file import (block sizes larger than the input), never from the streamed one.
AAPL_BEFORE = {
    "nasdaq/AAPL/2012-06-21/book.parquet": (
        "8546acaba3ba0ba03f81d958c5c5aa9435abae5b88fe90313de1189217af9cd0"
    ),
    "nasdaq/AAPL/2012-06-21/meta.json": (
        "b19b30d81c4af7523200bb5ffae2d9121e1509faae2f03e91bcb1dc318fdd267"
    ),
    "nasdaq/AAPL/2012-06-21/orders.parquet": (
        "70b79d865d70c1b81fe0045be256eb7dd384a346e04a00c4e78c320991a3aa21"
    ),
    "nasdaq/AAPL/2012-06-21/quotes.parquet": (
        "3d315d85ba41fca4f4491ecb1d599e094a1b1de5dc52b79bbedad52f16b2c51a"
    ),
    "nasdaq/AAPL/2012-06-21/trades.parquet": (
        "1beb7515bf8a11e1f61647745c58073d1aa30839428b7dbac6fe58fa6d501416"
    ),
}
GOOG_BEFORE = {
    "nasdaq/GOOG/2012-06-21/book.parquet": (
        "11c04898ec93e5e90f100441bc045df4fa40939c384621518ee148ce0510433f"
    ),
    "nasdaq/GOOG/2012-06-21/meta.json": (
        "1e8d2cede39ec4c440b44d43f2b1b2050970c04d0432be975d37809a5f5e09dc"
    ),
    "nasdaq/GOOG/2012-06-21/orders.parquet": (
        "5912a28aefb8e69b3e5e756c199cf0ec00410bdb178f107cd34d5278403e7b23"
    ),
    "nasdaq/GOOG/2012-06-21/quotes.parquet": (
        "5774b0a754f01c4662becbe612d41fba3e61b21e19f5a0d33f78191410944c10"
    ),
    "nasdaq/GOOG/2012-06-21/trades.parquet": (
        "7e55851c3133815e8ff04b21a9a852e755983e4a6d2fee7a58c5719ea0f5fb3e"
    ),
}


def test_lobster_aapl_sample_imports_to_the_same_bytes_as_before(tmp_path):
    import_lobster([LOBSTER / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"], tmp_path)
    assert _digests(tmp_path) == AAPL_BEFORE


@pytest.mark.slow
def test_lobster_goog_sample_imports_to_the_same_bytes_as_before(tmp_path):
    import_lobster([LOBSTER / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"], tmp_path)
    assert _digests(tmp_path) == GOOG_BEFORE


def test_lobster_in_tiny_blocks_writes_the_files_of_a_whole_file_import(tmp_path, monkeypatch):
    message, _ = write_lobster_pair(tmp_path / "in", 2_500, levels=3, seed=7)
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 300)  # many row groups, cut mid-block
    whole = import_lobster([message], tmp_path / "whole", block_bytes=1 << 24)
    # ~2 KB blocks: the message and orderbook blocks end on different rows
    streamed = import_lobster([message], tmp_path / "streamed", block_bytes=2_048)
    assert streamed[0].rows == whole[0].rows
    assert streamed[0].facts == whole[0].facts
    assert whole[0].rows["quotes"] > 300
    assert _digests(tmp_path / "streamed") == _digests(tmp_path / "whole")


# The whole-file importer's files for a generated two-symbol recording in one file (each
# snapshot assigned by its depth chain), levels=3, raw_level=3.
MIXED_BEFORE = {
    "binance/AAAUSDT/2024-08-08/book.parquet": (
        "638454a161f306a699b6a157856f698a3a5d2c4db500cb5790e6ec68c7592a88"
    ),
    "binance/AAAUSDT/2024-08-08/meta.json": (
        "80c3b84a0f217b10bf531a49a99f060865e916b34aca8bde870c152f0c90fac1"
    ),
    "binance/AAAUSDT/2024-08-08/quotes.parquet": (
        "6616a38c409c69b049cc3fbae63cde86da358f49a8a8b07c76c1e62d045fd860"
    ),
    "binance/AAAUSDT/2024-08-08/raw.txt.zst": (
        "10baae9b3e844b4f21cbb4ff34427a66754c13eb7f6d37a7b8ec91dc410a283d"
    ),
    "binance/AAAUSDT/2024-08-08/trades.parquet": (
        "c306b8442a77e9188c58a5eddb0ad84a180114434633551dd133e783b102c6ed"
    ),
    "binance/BBBUSDT/2024-08-08/book.parquet": (
        "0a94211a837faa84441e3e489169f6119565767687a113b55400714e336b024c"
    ),
    "binance/BBBUSDT/2024-08-08/meta.json": (
        "65734729124211d74f1cbafc5b840a6a38b7ca3f0cea4f5301ae0036d3b2cae5"
    ),
    "binance/BBBUSDT/2024-08-08/quotes.parquet": (
        "32dff513d25e95d49802803ffacf1bd599ff07c1ffb93c181335f7bfcb6abc5d"
    ),
    "binance/BBBUSDT/2024-08-08/raw.txt.zst": (
        "67a3c142b74833a329dd22e97c26710a77f594cc587747649cd951b6dbf483f4"
    ),
    "binance/BBBUSDT/2024-08-08/trades.parquet": (
        "355d15cd0e3c4703f4901d0c15348314277c1c559202f6be87e6178429ee9f06"
    ),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A generated spot recording of two symbols in one file (~9,000 lines)."""
    directory = tmp_path_factory.mktemp("binance")
    return write_binance_recording(
        directory / "mixed.txt", 1_500, seed=3, symbols=("AAAUSDT", "BBBUSDT")
    )


def test_binance_recording_imports_to_the_same_bytes_as_before(mixed, tmp_path):
    import_binance([mixed], tmp_path, levels=3, raw_level=3)
    assert _digests(tmp_path) == MIXED_BEFORE


def test_binance_in_tiny_batches_writes_the_files_of_a_whole_file_import(
    mixed, tmp_path, monkeypatch
):
    # split in two files (gzip, zstd), given in the wrong order: joined by receive time
    lines = mixed.read_text().splitlines(keepends=True)
    first = tmp_path / "a.gz"
    first.write_bytes(gzip.compress("".join(lines[:2_000]).encode()))
    second = tmp_path / "b.zst"
    second.write_bytes(zstandard.ZstdCompressor().compress("".join(lines[2_000:]).encode()))
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 300)  # many row groups
    monkeypatch.setattr(binance_session, "BATCH_ROWS", 100_000)  # one batch: whole tables
    whole = import_binance([mixed], tmp_path / "whole", levels=3, raw_level=3)
    monkeypatch.setattr(binance_session, "BATCH_ROWS", 37)  # batch edges everywhere
    streamed = import_binance([second, first], tmp_path / "streamed", levels=3, raw_level=3)
    assert [r.rows for r in streamed] == [r.rows for r in whole]
    assert [r.facts for r in streamed] == [r.facts for r in whole]
    assert min(r.rows["quotes"] for r in whole) > 300
    files = {
        name: digest
        for name, digest in _digests(tmp_path / "whole").items()
        if not name.endswith("meta.json")  # names the input files
    }
    assert files == {
        name: digest
        for name, digest in _digests(tmp_path / "streamed").items()
        if not name.endswith("meta.json")
    }


def test_binance_reimport_of_its_raw_file_keeps_its_bytes(mixed, tmp_path):
    (first, _) = import_binance([mixed], tmp_path / "a", levels=3, raw_level=3)
    raw = first.path / "raw.txt.zst"
    (again,) = import_binance([raw], tmp_path / "b", levels=3, raw_level=19)
    assert (again.path / "raw.txt.zst").read_bytes() == raw.read_bytes()
    assert again.facts == first.facts


COINBASE = ORIGINALS / "coinbase" / "COINBASE.jsonl.zst"
COINBASE_BEFORE = {
    "coinbase/BTC-USD/2026-08-09/book.parquet": (
        "a3f0ea9cf72b35f6228df860e166d05e0b20c61ff64ac0301513681db601ed5b"
    ),
    "coinbase/BTC-USD/2026-08-09/meta.json": (
        "9a9d4c137c33b60bc6b8e6d687f2784aadf153c1423e92893733035c3ef988e0"
    ),
    "coinbase/BTC-USD/2026-08-09/quotes.parquet": (
        "c916f5174cddd220211cb199b12add6ba6d914aa7ccaae893a6f1e42c6812d10"
    ),
    "coinbase/BTC-USD/2026-08-09/trades.parquet": (
        "e92f388235b37fbed0dfbc17a242f8e92540027e7db0928901e6080af8a28dad"
    ),
    "coinbase/ETH-USD/2026-08-09/book.parquet": (
        "31bdbad0322746b174207c56bb377dc4cb7992467cfbd12cd294f146c76b96fa"
    ),
    "coinbase/ETH-USD/2026-08-09/meta.json": (
        "7692a4ecf24f7546b2a2e5a54a539c6a7851ca7511c01ed07e56129f9a21aa33"
    ),
    "coinbase/ETH-USD/2026-08-09/quotes.parquet": (
        "d4349deb7cf9d03e587bbce5f20cddc32b75ddc7bb7504992ef310ce2bf1f15c"
    ),
    "coinbase/ETH-USD/2026-08-09/trades.parquet": (
        "8150a968ceebad30d02c9c5c759525a9cac2abe32d7baf6c25e810d91e9a0147"
    ),
}


def test_coinbase_recording_imports_to_the_same_bytes_as_before(tmp_path):
    import_coinbase([COINBASE], tmp_path)
    assert _digests(tmp_path) == COINBASE_BEFORE


def test_coinbase_in_tiny_batches_writes_the_files_of_a_whole_file_import(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 20)  # many row groups
    whole = import_coinbase([COINBASE], tmp_path / "whole", levels=5)
    monkeypatch.setattr(coinbase, "BATCH_ROWS", 7)  # batch edges everywhere
    streamed = import_coinbase([COINBASE], tmp_path / "streamed", levels=5)
    assert [(r.key, r.rows, r.facts) for r in streamed] == [(r.key, r.rows, r.facts) for r in whole]
    assert min(n for r in whole for n in r.rows.values()) > 20
    assert _digests(tmp_path / "streamed") == _digests(tmp_path / "whole")


@pytest.mark.parametrize("unsorted", [False, True], ids=["sorted-ids", "an-id-going-down"])
def test_binance_bbo_facts_equal_the_join_of_the_written_tables(tmp_path, unsorted):
    path = write_binance_recording(tmp_path / "one.txt", 400, seed=11)
    if unsorted:  # one bookTicker id far below the rest: the join falls back to whole tables
        lines = path.read_text().splitlines(keepends=True)
        quotes = [i for i, line in enumerate(lines) if "@bookTicker" in line]
        lines[quotes[200]] = re.sub(r'"u":\d+', '"u":1001', lines[quotes[200]])
        path.write_text("".join(lines))
    (result,) = import_binance([path], tmp_path / "data", levels=3, raw_level=1)
    quotes = pq.read_table(result.path / "quotes.parquet")
    book = pq.read_table(result.path / "book.parquet")
    expected = bbo_agreement(quotes, book)
    assert (result.facts["bbo_shared_ids"], result.facts["bbo_matches"]) == expected
    assert expected[0] > 300  # most bookTicker ids are also applied diff ids


def test_binance_many_symbols_read_in_several_passes_equal_one_pass(tmp_path, monkeypatch):
    symbols = tuple(f"S{k}USDT" for k in range(6))
    path = write_binance_recording(tmp_path / "six.txt", 120, seed=2, symbols=symbols)
    monkeypatch.setattr(binance, "SYMBOLS_PER_PASS", 100)  # one pass
    one = import_binance([path], tmp_path / "one", levels=2, raw_level=1)
    monkeypatch.setattr(binance, "SYMBOLS_PER_PASS", 4)  # 2 passes, other symbols skipped
    two = import_binance([path], tmp_path / "two", levels=2, raw_level=1)
    monkeypatch.setattr(binance, "SYMBOLS_PER_PASS", 1)  # 6 passes
    six = import_binance([path], tmp_path / "six", levels=2, raw_level=1)
    assert [r.key.symbol for r in one] == list(symbols)
    assert [r.facts for r in two] == [r.facts for r in six] == [r.facts for r in one]
    assert _digests(tmp_path / "two") == _digests(tmp_path / "six") == _digests(tmp_path / "one")
