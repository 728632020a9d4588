"""Binance importer: the PROVENANCE facts on the bundled real sessions, and bad input.

The real sessions are imported from the repository's own `raw.txt.zst` files (the importer
wrote them from the original recordings and accepts them as input), so nothing here needs
data from outside the repository. Bad-input cases are small hand-written recordings.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from simulator.errors import DataError
from simulator.importers.binance import RAW_FILE, import_binance
from simulator.importers.book import OrderBook
from simulator.importers.common import ImportResult
from simulator.types import SessionKey, book_columns
from tests.conftest import BUNDLED_DATA

DATE = "2024-08-08"
MIDNIGHT_NS = 1_723_161_600_000_000_000  # 2024-08-09 00:00 UTC: where the two files meet
# PROVENANCE.md (line counts, BTCUSDT BBO agreement) and figures measured on the same files.
EXPECTED: dict[str, dict[str, Any]] = {
    "BTCUSDT": {
        "lines": 41_249 + 58_325,
        "snapshot_last_update_id": 50_093_239_218,
        "diffs_discarded": 2,
        "diffs_applied": 6_493,
        "bbo_shared_ids": 1_072,
        "bbo_matches": 1_072,
    },
    "ETHUSDT": {
        "lines": 33_618 + 46_126,
        "snapshot_last_update_id": 35_346_513_512,
        "diffs_discarded": 2,
        "diffs_applied": 6_468,
        "bbo_shared_ids": 1_056,
        "bbo_matches": 1_056,
    },
}
KINDS = ("quotes", "trades", "book")


def bundled(symbol: str) -> Path:
    return BUNDLED_DATA / "binance" / symbol / DATE


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def session(request, tmp_path_factory) -> ImportResult:
    """A real session imported from the bundled raw recording into a fresh data directory."""
    raw = bundled(request.param) / RAW_FILE
    assert raw.is_file(), f"{raw} is missing: the repository ships it"
    (result,) = import_binance([raw], tmp_path_factory.mktemp("data"))
    return result


def read(result: ImportResult, kind: str) -> pa.Table:
    return pq.read_table(result.path / f"{kind}.parquet")


@pytest.fixture(scope="module")
def recording(session) -> list[tuple[int, dict[str, Any]]]:
    """(receive time, message) of the session's raw file: depth, trades and snapshot only."""
    text = zstandard.ZstdDecompressor().stream_reader((session.path / RAW_FILE).read_bytes())
    lines = text.readall().decode().splitlines()
    wanted = ("@depth", "@trade", "lastUpdateId")
    return [
        (int(head), orjson.loads(body))
        for head, _, body in (
            line.partition(" ") for line in lines if any(w in line for w in wanted)
        )
    ]


# --- real sessions -------------------------------------------------------------------------


def test_session_facts_match_provenance(session):
    expected = EXPECTED[session.key.symbol]
    assert session.key == SessionKey("binance", session.key.symbol, DATE)
    assert session.rows == {
        kind: read(session, kind).num_rows for kind in KINDS
    }  # every kind present
    facts = session.facts
    assert {k: facts[k] for k in expected} == expected
    assert sum(facts["lines_per_stream"].values()) == expected["lines"]
    assert facts["lines_per_stream"]["snapshot"] == 1
    assert (facts["gaps"], facts["crossed_books"], facts["crossed_quotes"]) == (0, 0, 0)
    assert facts["median_event_minus_recv_ms"] == pytest.approx(1_270, abs=10)


def test_every_line_is_accounted_for_in_receive_order(session):
    facts = session.facts
    seqs = []
    for kind in KINDS:
        table = read(session, kind)
        assert np.all(np.diff(table.column("ts_recv").to_numpy()) >= 0), kind
        assert np.all(np.diff(table.column("seq").to_numpy()) > 0), kind
        seqs.append(table.column("seq").to_numpy())
    unused = 1 + facts["diffs_discarded"] + facts["diffs_stale"]  # the snapshot is no row
    assert np.unique(np.concatenate(seqs)).size == facts["lines"] - unused
    assert facts["first_recv_ns"] < MIDNIGHT_NS < facts["last_recv_ns"]


def test_bookticker_never_crosses_and_has_one_tick_min_spread(session):
    quotes = read(session, "quotes")
    spread = quotes.column("ask_px").to_numpy() - quotes.column("bid_px").to_numpy()
    assert spread.min() == pytest.approx(0.01, abs=1e-9)
    assert quotes.column("ts_event").null_count == quotes.num_rows  # spot sends no time


def test_depth_chain_has_no_gap_across_the_file_boundary(session, recording):
    messages = recording
    last_id = next(m["lastUpdateId"] for _, m in messages if "lastUpdateId" in m)
    chain = [
        (ts, m["data"]["U"], m["data"]["u"])
        for ts, m in messages
        if "stream" in m and "@depth" in m["stream"] and m["data"]["u"] > last_id
    ]
    assert chain[0][1] <= last_id + 1 <= chain[0][2]
    assert all(now[1] == before[2] + 1 for before, now in itertools.pairwise(chain))
    assert chain[0][0] < MIDNIGHT_NS < chain[-1][0]
    book_ids = read(session, "book").column("update_id").to_pylist()
    assert book_ids == [u for _, _, u in chain]


def test_trade_sides_follow_the_maker_flag(session, recording):
    trades = [m["data"] for _, m in recording if "@trade" in m.get("stream", "")]
    table = read(session, "trades")
    assert table.column("side").to_pylist() == [-1 if t["m"] else 1 for t in trades]
    assert table.column("ts_event").to_pylist() == [t["T"] * 1_000_000 for t in trades]
    assert table.column("trade_id").to_pylist() == [t["t"] for t in trades]


def apply_reference(side: dict[float, float], changes: list[list[str]]) -> None:
    for price, qty in changes:
        if float(qty) == 0:
            side.pop(float(price), None)
        else:
            side[float(price)] = float(qty)


def test_book_equals_a_slow_reference_rebuild(session, recording):
    """Rebuild with plain dicts and a full sort; compare all 20 levels at checkpoints."""
    book = read(session, "book").to_pydict()
    messages = recording
    snapshot = next(m for _, m in messages if "lastUpdateId" in m)
    sides = [{float(p): float(q) for p, q in snapshot[key]} for key in ("bids", "asks")]
    diffs = [m["data"] for _, m in messages if "@depth" in m.get("stream", "")]
    row = 0
    for diff in (d for d in diffs if d["u"] > snapshot["lastUpdateId"]):
        for side, changes in zip(sides, (diff["b"], diff["a"]), strict=True):
            apply_reference(side, changes)
        if row % 500 == 0 or row == len(book["seq"]) - 1:
            bids = sorted(sides[0].items(), reverse=True)[:20]
            asks = sorted(sides[1].items())[:20]
            for level, ((bp, bq), (ap, aq)) in enumerate(zip(bids, asks, strict=True)):
                got = [book[f"{n}_{level}"][row] for n in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
                assert got == [bp, bq, ap, aq], (row, level)
        row += 1
    assert row == len(book["seq"])


def test_import_reproduces_the_bundled_parquet_and_raw_files(session):
    """The bundled session was imported from the original recordings; importing its raw file
    gives the same Parquet content and the same raw file back."""
    for kind in KINDS:
        assert read(session, kind).equals(
            pq.read_table(bundled(session.key.symbol) / f"{kind}.parquet")
        )
    original = (bundled(session.key.symbol) / RAW_FILE).read_bytes()
    assert (session.path / RAW_FILE).read_bytes() == original


def test_reimport_is_idempotent(session):
    before = json.loads((session.path / "meta.json").read_text())
    (again,) = import_binance([bundled(session.key.symbol) / RAW_FILE], session.path.parents[2])
    assert again.path == session.path
    assert json.loads((again.path / "meta.json").read_text()) == before
    assert [p.name for p in session.path.parent.iterdir()] == [DATE]  # no leftovers


def test_order_book_matches_a_sorted_dict_reference():
    """Random diffs on a small price grid hit inserts, replaces, removes and misses."""
    rng = np.random.default_rng(7)
    book = OrderBook()
    book.reset([(100.0 - i, 1.0) for i in range(5)], [(101.0 + i, 1.0) for i in range(5)])
    reference = [{100.0 - i: 1.0 for i in range(5)}, {101.0 + i: 1.0 for i in range(5)}]
    for _ in range(2_000):
        changes = []
        for offset, sign in ((100.0, -1), (101.0, 1)):
            price = offset + sign * float(rng.integers(0, 12))
            qty = float(rng.integers(0, 3))
            changes.append([(price, qty)])
        book.apply(changes[0], changes[1])
        for side, change in zip(reference, changes, strict=True):
            apply_reference(side, [[str(p), str(q)] for p, q in change])
        bids = sorted(reference[0].items(), reverse=True)[:4]
        asks = sorted(reference[1].items())[:4]
        expected = (
            [p for p, _ in bids],
            [q for _, q in bids],
            [p for p, _ in asks],
            [q for _, q in asks],
        )
        assert book.top(4) == expected
    assert book.depth() == (len(reference[0]), len(reference[1]))


# --- hand-written recordings -----------------------------------------------------------------

T0 = MIDNIGHT_NS + 5_000_000  # receive times; exchange times are 1.2 s later (E = recv + lag)
LAG_MS = 1_200


def line(step: int, message: dict[str, Any]) -> str:
    return f"{T0 + step * 1_000_000} {json.dumps(message, separators=(',', ':'))}"


def exchange_ms(step: int) -> int:
    return (T0 + step * 1_000_000) // 1_000_000 + LAG_MS


def depth(step: int, first: int, last: int, bids, asks, pu: int | None = None, sym="btcusdt"):
    data = {"e": "depthUpdate", "E": exchange_ms(step), "s": sym.upper(), "U": first, "u": last}
    if pu is not None:
        data["pu"] = pu
    data.update(b=bids, a=asks)
    return line(step, {"stream": f"{sym}@depth@100ms", "data": data})


def snapshot(step: int, last_id: int, bids, asks) -> str:
    return line(step, {"lastUpdateId": last_id, "bids": bids, "asks": asks})


def ticker(step: int, update_id: int, bid, ask, sym="btcusdt", futures=False) -> str:
    data = {"u": update_id, "s": sym.upper(), "b": bid[0], "B": bid[1], "a": ask[0], "A": ask[1]}
    if futures:
        data.update(e="bookTicker", E=exchange_ms(step), T=exchange_ms(step) - 1)
    return line(step, {"stream": f"{sym}@bookTicker", "data": data})


def trade(step: int, trade_id: int, px: str, maker: bool, sym="btcusdt") -> str:
    data = {"e": "trade", "E": exchange_ms(step), "s": sym.upper(), "t": trade_id, "p": px,
            "q": "0.5", "T": exchange_ms(step) - 1, "m": maker, "M": True}  # fmt: skip
    return line(step, {"stream": f"{sym}@trade", "data": data})


def spot_lines(sym: str = "btcusdt", base: int = 0) -> list[str]:
    """A valid spot session: one diff already in the snapshot, one buffered and applied when
    the snapshot arrives, one live; bookTicker agrees with the book at u=103. Update ids are
    offset by `base` (symbols have their own id spaces)."""
    return [
        depth(0, base + 95, base + 100, [["99.00", "5"]], [], sym=sym),
        depth(1, base + 101, base + 103, [["99.50", "4"]], [["101.00", "0"]], sym=sym),
        snapshot(
            2, base + 102, [["99.00", "1"], ["98.00", "2"]], [["101.00", "1"], ["102.00", "3"]]
        ),
        ticker(3, base + 103, ("99.50", "4"), ("102.00", "3"), sym=sym),
        trade(4, 1, "99.50", maker=True, sym=sym),
        depth(
            5,
            base + 104,
            base + 105,
            [["99.50", "0"]],
            [["101.50", "2"], ["90000.00", "0"]],
            sym=sym,
        ),
        trade(6, 2, "101.50", maker=False, sym=sym),
    ]


def write(path: Path, lines: list[str], compress: Callable[[bytes], bytes] | None = None) -> Path:
    data = "".join(f"{text}\n" for text in lines).encode()
    path.write_bytes(data if compress is None else compress(data))
    return path


def test_tiny_spot_session(tmp_path, data_dir):
    path = write(tmp_path / "btc.txt", spot_lines())
    (result,) = import_binance([path], data_dir, levels=3)
    assert result.key == SessionKey("binance", "BTCUSDT", "2024-08-09")
    assert result.rows == {"quotes": 1, "trades": 2, "book": 2}
    facts = result.facts
    assert (facts["diffs_discarded"], facts["diffs_applied"]) == (1, 2)
    assert (facts["bbo_shared_ids"], facts["bbo_matches"]) == (1, 1)
    assert facts["median_event_minus_recv_ms"] == LAG_MS
    book = read(result, "book").to_pydict()
    assert book["seq"] == [1, 5]
    assert book["ts_recv"] == [T0 + 2_000_000, T0 + 5_000_000]  # buffered: known at snapshot
    assert book["ts_event"] == [exchange_ms(1) * 1_000_000, exchange_ms(5) * 1_000_000]
    levels = {name: book[name] for name in book_columns(3)}
    assert (levels["bid_px_0"], levels["bid_sz_2"]) == ([99.5, 99.0], [2.0, None])
    assert (levels["ask_px_0"], levels["ask_px_1"]) == ([102.0, 101.5], [None, 102.0])
    trades = read(result, "trades").to_pydict()
    assert (trades["side"], trades["trade_id"], trades["seq"]) == ([-1, 1], [1, 2], [4, 6])
    assert read(result, "quotes").column("ts_event").to_pylist() == [None]


def test_gzip_split_and_raw_inputs_give_the_same_session(tmp_path, data_dir):
    lines = spot_lines()
    first = write(tmp_path / "a.gz", lines[:3], gzip.compress)
    second = write(tmp_path / "b.zst", lines[3:], zstandard.ZstdCompressor().compress)
    (split,) = import_binance([second, first], data_dir)  # joined by first receive time
    (whole,) = import_binance([write(tmp_path / "whole.txt", lines)], tmp_path / "other")
    (again,) = import_binance([split.path / RAW_FILE], tmp_path / "again")
    for kind in KINDS:
        expected = read(whole, kind)
        assert read(split, kind).equals(expected), kind
        assert read(again, kind).equals(expected), kind
    assert split.facts == whole.facts == again.facts


def test_mixed_symbol_file_assigns_each_snapshot_by_its_depth_chain(tmp_path, data_dir):
    lines = [*spot_lines("btcusdt"), *spot_lines("ethusdt", base=1_000)]
    lines.sort(key=lambda text: int(text.split()[0]))  # stable: btc first at equal times
    results = import_binance([write(tmp_path / "mixed.txt", lines)], data_dir)
    assert [(r.key.symbol, r.facts["snapshot_last_update_id"]) for r in results] == [
        ("BTCUSDT", 102),
        ("ETHUSDT", 1_102),
    ]
    assert [r.facts["bbo_matches"] for r in results] == [1, 1]


def test_a_bad_symbol_stops_the_import_before_any_session_is_written(tmp_path, data_dir):
    eth = spot_lines("ethusdt", base=1_000)
    eth[5] = depth(5, 1_105, 1_106, [], [], sym="ethusdt")
    btc = write(tmp_path / "btc.txt", spot_lines())
    bad = write(tmp_path / "eth.txt", eth)
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))} line 6: update-id gap"):
        import_binance([btc, bad], data_dir)
    assert not any(data_dir.iterdir())


def test_futures_pu_chain_gives_a_futures_session(tmp_path, data_dir):
    (result,) = import_binance([write(tmp_path / "f.txt", futures_lines())], data_dir)
    assert result.key.venue == "binance-futures"
    assert result.facts["diffs_applied"] == 2
    quote_times = read(result, "quotes").column("ts_event").to_pylist()
    assert quote_times == [(exchange_ms(3) - 1) * 1_000_000]  # futures bookTicker T


def futures_lines(broken: bool = False) -> list[str]:
    """Futures ids jump between messages; only pu links them."""
    return [
        depth(0, 90, 99, [["99.00", "5"]], [], pu=89),
        snapshot(1, 100, [["99.00", "1"]], [["101.00", "1"]]),
        depth(2, 100, 110, [["99.50", "4"]], [], pu=99),
        ticker(3, 110, ("99.50", "4"), ("101.00", "1"), futures=True),
        depth(4, 115, 120, [], [["100.50", "2"]], pu=111 if broken else 110),
    ]


def replace(index: int, text: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [*lines[:index], text, *lines[index + 1 :]]


BAD_INPUT = [
    pytest.param(
        replace(5, depth(5, 105, 106, [], [])),
        r"line 6: update-id gap: expected U=104 \(the previous u \+ 1\), found U=105 \(u=106\)$",
        id="gap",
    ),
    pytest.param(
        replace(1, f"{T0 + 1_000_000} {{not json"), r"line 2: message is not valid JSON", id="json"
    ),
    pytest.param(
        replace(0, "t0 " + spot_lines()[0].split(" ", 1)[1]),
        r"line 1: expected '<receive time ns> <json message>', found 't0 \{",
        id="prefix",
    ),
    pytest.param(
        lambda lines: lines[:2] + lines[3:],
        r"line 1: no depth snapshot for BTCUSDT: 3 depth message\(s\)",
        id="no-snapshot",
    ),
    pytest.param(
        replace(4, line(4, {"stream": "btcusdt@kline_1m", "data": {}})),
        r"line 5: unknown stream type 'kline_1m' in 'btcusdt@kline_1m'",
        id="unknown-stream",
    ),
    pytest.param(
        replace(2, snapshot(2, 90, [["99.00", "1"]], [["101.00", "1"]])),
        r"line 3: the depth snapshot \(lastUpdateId=90\) is older than the first buffered diff "
        r"\(U=95 at .* line 1\)",
        id="old-snapshot",
    ),
    pytest.param(
        lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]],
        r"line 5: receive time went backwards \(\d+ < \d+ on line 4\)",
        id="time-backwards",
    ),
    pytest.param(
        replace(3, line(3, {"stream": "btcusdt@bookTicker", "data": {"u": 103, "b": "1"}})),
        r"line 4: malformed bookTicker message \(KeyError: 'B'\)",
        id="missing-field",
    ),
    pytest.param(
        replace(6, snapshot(6, 105, [["99.00", "1"]], [["101.00", "1"]])),
        r"line 7: a second depth snapshot for BTCUSDT \(the first is at .* line 3\)",
        id="second-snapshot",
    ),
    pytest.param(
        replace(5, depth(5, 104, 105, [], [], pu=103)),
        r"line 6: depth message with pu in a spot session",
        id="spot-and-futures",
    ),
    pytest.param(
        lambda _: futures_lines(broken=True),
        r"line 5: update-id gap: expected pu=110 \(the previous u\), found pu=111",
        id="futures-pu-gap",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BAD_INPUT)
def test_bad_input_names_file_line_and_problem(tmp_path, data_dir, edit, message):
    path = write(tmp_path / "bad.txt", edit(spot_lines()))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))} {message}"):
        import_binance([path], data_dir)
    assert not any(data_dir.iterdir())  # nothing written


@pytest.mark.parametrize("compress", [None, gzip.compress], ids=["plain", "gzip"])
def test_empty_file_is_rejected(tmp_path, data_dir, compress):
    path = write(tmp_path / "empty", [], compress)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: empty file"):
        import_binance([path], data_dir)


def test_overlapping_files_are_rejected(tmp_path, data_dir):
    lines = spot_lines()
    first = write(tmp_path / "a.txt", lines[:4])
    second = write(tmp_path / "b.txt", lines[2:])
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(second))} line 1: .*went backwards across files"
    ):
        import_binance([first, second], data_dir)


def test_progress_reaches_its_total(tmp_path, data_dir):
    calls: list[tuple[int, int]] = []
    import_binance(
        [write(tmp_path / "btc.txt", spot_lines())],
        data_dir,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (14, 14)  # 7 lines, parsed then written
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
