"""The live normaliser reads a bookTicker without building the importer's Quote: the same
fields, and the same errors for malformed payloads, as `parse_message`."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
import zstandard

from simulator.importers.binance_messages import parse_message
from simulator.live.venues.binance import _quote_fields
from tests.conftest import REPO

RECORDING = REPO / "data" / "binance" / "BTCUSDT" / "2024-08-08" / "raw.txt.zst"
GOOD = {"u": 7, "s": "BTCUSDT", "b": "61837.63", "B": "3.6", "a": "61837.64", "A": "1.6"}


def _via_quote(data: Any) -> tuple[object, ...]:
    q = parse_message("bookTicker", data)
    assert q is not None
    return q.update_id, q.ts_event, (q.bid_px, q.bid_sz), (q.ask_px, q.ask_sz)  # type: ignore[union-attr]


def test_every_quote_of_the_recording_reads_the_same():
    raw = zstandard.ZstdDecompressor().stream_reader(RECORDING.open("rb"))
    n = 0
    for line in io.TextIOWrapper(raw):
        if '@bookTicker"' in line[:80]:
            data = orjson.loads(line.partition(" ")[2])["data"]
            assert _quote_fields(data) == _via_quote(data)
            n += 1
    assert n > 70_000


@pytest.mark.parametrize(
    "data",
    [
        {**GOOD, "T": 1723161254087, "E": 1723161254088},  # futures: exchange and push times
        {**GOOD, "T": "oops"},
        {**GOOD, "E": "oops"},
        {**GOOD, "T": "x", "E": "y"},  # the first error wins, as there
        {**GOOD, "u": "1.5"},
        {**GOOD, "b": "nan?"},
        {**GOOD, "A": None},
        {k: v for k, v in GOOD.items() if k != "a"},
        {k: v for k, v in GOOD.items() if k != "u"},
        [1, 2],
        "text",
        None,
    ],
    ids=lambda d: str(d)[:40],
)
def test_malformed_and_futures_quotes_read_or_fail_the_same(data):
    try:
        expected: object = _via_quote(data)
    except (KeyError, TypeError, ValueError) as e:
        expected = (type(e), str(e))
    try:
        got: object = _quote_fields(data)
    except (KeyError, TypeError, ValueError) as e:
        got = (type(e), str(e))
    assert got == expected
