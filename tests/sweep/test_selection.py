"""SESSION patterns: part-by-part globbing over the data directory, close matches on a miss."""

from __future__ import annotations

import pytest

from simulator.errors import DataError
from simulator.selection import expand_sessions, matches
from tests import factories

NAMES = ("nasdaq/AAPL/2012-06-20", "nasdaq/AAPL/2012-06-21", "nasdaq/GOOG/2012-06-21",
         "binance/BTCUSDT/2024-08-08", "binance/ETHUSDT/2024-08-08")  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    for name in NAMES:
        (root / name).mkdir(parents=True)
        factories.write(factories.quotes(5), root / name / "quotes.parquet")
    (root / "nasdaq" / "AAPL" / "not-a-date").mkdir()  # not a session directory
    return root


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["nasdaq/GOOG/*"], ["nasdaq/GOOG/2012-06-21"]),
        (["binance/*/2024-08-08"], ["binance/BTCUSDT/2024-08-08", "binance/ETHUSDT/2024-08-08"]),
        (["nasdaq/AAPL/2012-06-2[01]"], ["nasdaq/AAPL/2012-06-20", "nasdaq/AAPL/2012-06-21"]),
        (["nasdaq/*/2012-06-21", "nasdaq/AAPL/*"],  # several arguments, each session once
         ["nasdaq/AAPL/2012-06-21", "nasdaq/GOOG/2012-06-21", "nasdaq/AAPL/2012-06-20"]),
        (["nasdaq/GOOG/2012-06-21", "binance/ETH*/*"],
         ["nasdaq/GOOG/2012-06-21", "binance/ETHUSDT/2024-08-08"]),
    ],
)  # fmt: skip
def test_patterns_select_the_sessions_they_match(data, patterns, expected):
    assert expand_sessions(patterns, data) == expected


def test_a_star_stays_inside_its_part():
    assert not matches("nasdaq/*", "nasdaq/AAPL/2012-06-21")
    assert matches("*/*/*", "nasdaq/AAPL/2012-06-21")
    assert not matches("nasdaq/aapl/*", "nasdaq/AAPL/2012-06-21")  # case-sensitive


def test_a_pattern_matching_nothing_lists_close_matches(data):
    with pytest.raises(DataError) as error:
        expand_sessions(["nasdaq/goog/*"], data)
    assert str(error.value).startswith(
        "pattern 'nasdaq/goog/*' matches none of the 5 session(s) under "
    )
    assert "close matches: nasdaq/GOOG/2012-06-21" in str(error.value)


def test_a_pattern_in_an_empty_data_directory_says_there_is_nothing(tmp_path):
    with pytest.raises(DataError, match="holds none yet"):
        expand_sessions(["nasdaq/*/*"], tmp_path)


def test_a_path_pattern_globs_the_filesystem(data):
    found = expand_sessions([f"{data}/nasdaq/AAPL/2012-06-2*"], data)
    assert found == [str(data / "nasdaq/AAPL/2012-06-20"), str(data / "nasdaq/AAPL/2012-06-21")]
    with pytest.raises(DataError, match="matches no file or directory"):
        expand_sessions([f"{data}/nasdaq/MSFT/*"], data)
