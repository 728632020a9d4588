"""Importers in bounded memory: the bundled originals import to the same bytes as before the
importers streamed, and a streamed import in tiny blocks (batch edges mid-file, many row
groups) writes exactly the files of a whole-file import."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from simulator import store
from simulator.importers.lobster import import_lobster
from tests.conftest import ORIGINALS
from tests.importers.generate import write_lobster_pair

LOBSTER = ORIGINALS / "lobster"


def _digests(data_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }


# sha256 of each file the importers wrote for the bundled originals before they streamed
# (whole files in memory). A pyarrow upgrade may change Parquet bytes: then re-pin from a
# whole-file import (block sizes larger than the input), never from the streamed one.
AAPL_BEFORE = {
    "nasdaq/AAPL/2012-06-21/book.parquet": (
        "8546acaba3ba0ba03f81d958c5c5aa9435abae5b88fe90313de1189217af9cd0"
    ),
    "nasdaq/AAPL/2012-06-21/meta.json": (
        "a1e1288348990afee43e6994d288d800433e8ae16e957551340f07f1d500d3f3"
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
        "45d7bd42b09540391e2867fa465e0fd138b21828ad6992063a4adaaddb92d5a3"
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
