"""Coinbase importer: the real recording checked against an independent scan, plus bad inputs.

The reference figures are computed here from the raw JSON with plain `json`, string slicing
and `calendar.timegm`, not with the importer's helpers, so the two must agree independently.
"""

from __future__ import annotations

import calendar
import heapq
import io
import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from simulator.errors import DataError
from simulator.importers.coinbase import import_coinbase, parse_rfc3339_ns, seconds_to_ns
from simulator.importers.common import ImportResult
from tests.conftest import ORIGINALS

RECORDING = ORIGINALS / "coinbase" / "COINBASE.jsonl.zst"
PRODUCTS = ("BTC-USD", "ETH-USD")
BBO_KEYS = ("best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity")


def _ns_from_seconds_text(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**9 + int(frac.ljust(9, "0"))


def _ns_from_rfc3339(text: str) -> int:
    """UTC 'YYYY-MM-DDTHH:MM:SS[.f]Z' only: enough for this recording."""
    assert text.endswith("Z")
    head, _, frac = text[:-1].partition(".")
    whole = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return whole * 10**9 + int(frac.ljust(9, "0"))


@dataclass
class Scan:
    """What the raw file says, per product, keyed by seq (0-based line index)."""

    records: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    sequence: list[int] = field(default_factory=list)
    quotes: dict[str, list[tuple[int, int, int, tuple[float, ...]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    trades: dict[str, dict[int, tuple[str, float, float, int, int, int]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    snapshot_trades: Counter[str] = field(default_factory=Counter)
    l2: dict[str, list[tuple[int, list[dict[str, str]], str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    heartbeats: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def scan() -> Scan:
    with RECORDING.open("rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        lines = io.TextIOWrapper(reader, encoding="utf-8").read().splitlines()
    found = Scan()
    for seq, line in enumerate(lines):
        record = json.loads(line)
        found.records[record["t"]] += 1
        if record["t"] != "recv":
            continue
        ts_match = re.search(r'"ts":\s*([0-9.]+)', line)
        assert ts_match is not None
        _scan_message(found, seq, _ns_from_seconds_text(ts_match.group(1)), record["data"])
    return found


def _scan_message(found: Scan, seq: int, ts_recv: int, data: str) -> None:
    message = json.loads(data)
    channel = message["channel"]
    found.channels[channel] += 1
    found.sequence.append(message["sequence_num"])
    ts_event = _ns_from_rfc3339(message["timestamp"])
    for event in message["events"]:
        if channel == "ticker":
            for t in event["tickers"]:
                bbo = tuple(float(t[key]) for key in BBO_KEYS)
                found.quotes[t["product_id"]].append((seq, ts_recv, ts_event, bbo))
        elif channel == "market_trades":
            for t in event["trades"]:
                if event["type"] == "snapshot":
                    found.snapshot_trades[t["product_id"]] += 1
                    continue
                time_ns = _ns_from_rfc3339(t["time"])
                row = (t["side"], float(t["price"]), float(t["size"]), time_ns, ts_recv, seq)
                found.trades[t["product_id"]][int(t["trade_id"])] = row
        elif channel == "l2_data":
            found.l2[event["product_id"]].append((seq, event["updates"], event["type"]))
        elif channel == "heartbeats":
            found.heartbeats.append(event["heartbeat_counter"])


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportResult]:
    """The real file imported once per module (like `data_dir`, a fresh temporary directory)."""
    data_dir = tmp_path_factory.mktemp("data")
    calls: list[tuple[int, int]] = []
    results = import_coinbase([RECORDING], data_dir, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == RECORDING.stat().st_size
    return {result.key.symbol: result for result in results}


def _read(result: ImportResult, kind: str) -> dict[str, list[Any]]:
    table: dict[str, list[Any]] = pq.read_table(result.path / f"{kind}.parquet").to_pydict()
    return table


def test_real_recording_gives_one_session_per_product(imported, scan: Scan) -> None:
    assert sorted(imported) == list(PRODUCTS)
    assert scan.records == {"header": 1, "http": 1, "connect": 1, "send": 5, "recv": 1030}
    assert scan.sequence == list(range(1030))
    for product in PRODUCTS:
        result = imported[product]
        assert str(result.key) == f"coinbase/{product}/2026-08-09"
        assert result.rows == {
            "quotes": len(scan.quotes[product]),
            "trades": len(scan.trades[product]),
            "book": len(scan.l2[product]),
        }
        assert result.facts["records"] == dict(scan.records)
        assert result.facts["messages"] == dict(scan.channels)
        assert result.facts["trades_in_snapshot_excluded"] == scan.snapshot_trades[product]
        updates = sum(len(u) for _, u, kind in scan.l2[product] if kind == "update")
        assert result.facts["l2_updates_applied"] == updates
        assert result.facts["heartbeats"] == len(scan.heartbeats) == 25
        assert result.facts["heartbeat_gaps"] == 0
    # pinned figures of this file (the scan above found them too)
    assert {p: r.rows for p, r in imported.items()} == {
        "BTC-USD": {"quotes": 73, "trades": 47, "book": 400},
        "ETH-USD": {"quotes": 87, "trades": 32, "book": 375},
    }
    assert np.diff(scan.heartbeats).tolist() == [1] * 24


def test_quotes_keep_exact_receive_and_event_times(imported, scan: Scan) -> None:
    for product in PRODUCTS:
        quotes = _read(imported[product], "quotes")
        expected = scan.quotes[product]
        assert quotes["seq"] == [seq for seq, *_ in expected]
        assert quotes["ts_recv"] == [ts_recv for _, ts_recv, _, _ in expected]
        assert quotes["ts_event"] == [ts_event for _, _, ts_event, _ in expected]
        columns = ("bid_px", "bid_sz", "ask_px", "ask_sz")
        assert list(zip(*(quotes[c] for c in columns), strict=True)) == [e[3] for e in expected]
    # the first recv record: "ts":1786309548.6290078 must not pass through a float
    assert imported["BTC-USD"].facts["recording_first_ts_recv"] == 1_786_309_548_629_007_800


def test_receive_times_never_decrease_and_books_never_cross(imported) -> None:
    for result in imported.values():
        for kind in ("quotes", "trades", "book"):
            assert np.all(np.diff(_read(result, kind)["ts_recv"]) >= 0), (result.key, kind)
        book = _read(result, "book")
        assert np.all(np.array(book["bid_px_0"]) < np.array(book["ask_px_0"]))


def test_trade_side_is_the_inverse_of_coinbase_maker_side(imported, scan: Scan) -> None:
    for product in PRODUCTS:
        trades = _read(imported[product], "trades")
        expected = scan.trades[product]
        assert trades["trade_id"] == sorted(expected)  # oldest first, snapshot left out
        for i, trade_id in enumerate(trades["trade_id"]):
            maker, px, sz, time_ns, ts_recv, seq = expected[trade_id]
            assert trades["side"][i] == {"BUY": -1, "SELL": 1}[maker]
            assert (trades["px"][i], trades["sz"][i]) == (px, sz)
            assert (trades["ts_event"][i], trades["ts_recv"][i], trades["seq"][i]) == (
                time_ns,
                ts_recv,
                seq,
            )
    btc = _read(imported["BTC-USD"], "trades")
    assert Counter(btc["side"]) == {1: 36, -1: 11}  # 36 maker SELL, 11 maker BUY


def test_trades_at_the_touch_agree_with_the_aggressor_convention(imported) -> None:
    """A trade at the prevailing best ask lifted it (+1); one at the best bid hit it (-1)."""
    checked = 0
    for result in imported.values():
        book, trades = _read(result, "book"), _read(result, "trades")
        for px, side, seq in zip(trades["px"], trades["side"], trades["seq"], strict=True):
            row = int(np.searchsorted(book["seq"], seq)) - 1
            if row < 0:
                continue
            if px == book["ask_px_0"][row]:
                assert side == 1
                checked += 1
            elif px == book["bid_px_0"][row]:
                assert side == -1
                checked += 1
    assert checked >= 60


def test_book_equals_a_plain_dict_replay(imported, scan: Scan) -> None:
    for product in PRODUCTS:
        book = _read(imported[product], "book")
        sides: dict[str, dict[float, float]] = {"bid": {}, "offer": {}}
        for row, (seq, updates, kind) in enumerate(scan.l2[product]):
            if kind == "snapshot":
                sides = {"bid": {}, "offer": {}}
            for update in updates:
                level = sides[update["side"]]
                px, sz = float(update["price_level"]), float(update["new_quantity"])
                if sz == 0:
                    level.pop(px, None)
                else:
                    level[px] = sz
            assert book["seq"][row] == seq
            assert book["bid_px_0"][row] == max(sides["bid"])
            assert book["ask_px_0"][row] == min(sides["offer"])
            if row % 25 == 0 or row == len(scan.l2[product]) - 1:
                bids = heapq.nlargest(20, sides["bid"])
                asks = heapq.nsmallest(20, sides["offer"])
                assert [book[f"bid_px_{i}"][row] for i in range(20)] == bids
                assert [book[f"ask_sz_{i}"][row] for i in range(20)] == [
                    sides["offer"][a] for a in asks
                ]


def test_ticker_agreement_with_the_book_is_reported(imported) -> None:
    facts = {p: imported[p].facts for p in PRODUCTS}
    for f in facts.values():
        total = (
            f["ticker_before_book"]
            + f["ticker_bbo_equals_book"]
            + f["ticker_bbo_differs_from_book"]
        )
        assert total == f["ticker_events"]
    assert facts["BTC-USD"]["ticker_bbo_equals_book"] == 70
    assert facts["ETH-USD"]["ticker_bbo_equals_book"] == 62


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-09T21:05:48.228568804Z", 1_786_309_548_228_568_804),
        ("2026-08-09T21:05:48.35161Z", 1_786_309_548_351_610_000),
        ("2026-08-09T21:05:48Z", 1_786_309_548_000_000_000),
        ("2026-08-09T23:05:48.000000001+02:00", 1_786_309_548_000_000_001),
        ("1970-01-01T00:00:00.000001Z", 1_000),
    ],
)
def test_rfc3339_times_parse_exactly(text: str, expected: int) -> None:
    assert parse_rfc3339_ns(text) == expected


@pytest.mark.parametrize("text", ["2026-08-09 21:05", "2026-13-09T21:05:48Z", "yesterday"])
def test_rfc3339_rejects_non_times(text: str) -> None:
    with pytest.raises(DataError, match="time"):
        parse_rfc3339_ns(text)


def test_seconds_convert_exactly_from_their_decimal_text() -> None:
    value = json.loads('{"ts": 1786309548.6290078}', parse_float=Decimal)
    assert seconds_to_ns(value["ts"]) == 1_786_309_548_629_007_800
    assert int(1786309548.6290078 * 1e9) == 1_786_309_548_629_007_872  # why floats won't do


# --- small recordings built in the test ----------------------------------------------------

HEADER = {"t": "header", "format": 2, "exchange": "COINBASE", "config": {}}
CONNECT = {"t": "connect", "conn": "c1", "ts": 1.0, "addr": "wss://x"}


def _recv(
    seq: int, channel: str, events: list[dict[str, object]], ts: float = 2.5
) -> dict[str, object]:
    message = {"channel": channel, "timestamp": "2026-08-09T21:05:48.5Z", "sequence_num": seq}
    return {"t": "recv", "conn": "c1", "ts": ts, "data": json.dumps({**message, "events": events})}


def _l2(kind: str, *levels: tuple[str, str, str]) -> dict[str, object]:
    updates = [{"side": s, "price_level": p, "new_quantity": q} for s, p, q in levels]
    return {"type": kind, "product_id": "BTC-USD", "updates": updates}


def _trade(trade_id: int, side: str, price: str = "100.5") -> dict[str, str]:
    time_text = f"2026-08-09T21:05:4{trade_id % 10}.1Z"
    return {"product_id": "BTC-USD", "trade_id": str(trade_id), "price": price, "size": "0.1",
            "side": side, "time": time_text}  # fmt: skip


SNAPSHOT = _l2("snapshot", ("bid", "100", "1"), ("offer", "101", "2"))


def _write(tmp_path: Path, *records: dict[str, object] | str, name: str = "rec.jsonl") -> Path:
    path = tmp_path / name
    text = (r if isinstance(r, str) else json.dumps(r) for r in records)
    path.write_text("".join(f"{line}\n" for line in text))
    return path


def test_a_small_recording_imports_with_the_documented_choices(tmp_path: Path, data_dir) -> None:
    heartbeat: list[dict[str, object]] = [
        {"current_time": "x", "heartbeat_counter": n} for n in (7, 8, 11)
    ]
    batch = [_trade(3, "BUY"), _trade(2, "SELL")]  # newest first, as Coinbase sends them
    path = _write(
        tmp_path,
        HEADER,
        CONNECT,
        _recv(0, "l2_data", [SNAPSHOT]),
        _recv(1, "market_trades", [{"type": "snapshot", "trades": [_trade(1, "BUY")]}]),
        _recv(2, "market_trades", [{"type": "update", "trades": batch}]),
        _recv(3, "l2_data", [_l2("update", ("bid", "100", "0"), ("bid", "99.5", "3"))]),
        *(_recv(4 + i, "heartbeats", [hb]) for i, hb in enumerate(heartbeat)),
    )  # fmt: skip
    (result,) = import_coinbase([path], data_dir, levels=2)
    trades = _read(result, "trades")
    assert trades["trade_id"] == [2, 3]  # snapshot trade 1 left out, oldest first
    assert trades["side"] == [1, -1]  # maker SELL -> buyer-initiated
    assert trades["ts_recv"] == [2_500_000_000, 2_500_000_000]
    book = _read(result, "book")
    assert book["bid_px_0"] == [100.0, 99.5]
    assert book["bid_px_1"] == [None, None]
    assert result.facts["trades_in_snapshot_excluded"] == 1
    assert (result.facts["heartbeat_gaps"], result.facts["heartbeats_missed"]) == (1, 2)
    assert "quotes" not in result.rows


_LOCKING_UPDATE = _l2("update", ("offer", "101", "0"), ("offer", "100", "2"))
BAD_INPUTS: dict[str, tuple[list[dict[str, object] | str], str]] = {
    "sequence-gap": (
        [HEADER, CONNECT, _recv(0, "l2_data", [SNAPSHOT]), _recv(2, "heartbeats", [])],
        r"line 4: sequence_num gap on connection c1: expected 1, found 2",
    ),
    "update-before-snapshot": (
        [HEADER, CONNECT, _recv(0, "l2_data", [_l2("update", ("bid", "100", "1"))])],
        r"line 3: l2_data update for BTC-USD before its snapshot",
    ),
    "locked-book": (
        [HEADER, CONNECT, _recv(0, "l2_data", [SNAPSHOT]), _recv(1, "l2_data", [_LOCKING_UPDATE])],
        r"line 4: the BTC-USD book .* crossed or locked \(best bid 100.0 >= best ask 100.0\)",
    ),
    "bad-json": ([HEADER, "{not json"], r"line 2: not JSON"),
    "unknown-record": ([HEADER, {"t": "replay"}], r"line 2: unknown record type 'replay'"),
    "missing-field": (
        [HEADER, {"t": "recv", "conn": "c1", "ts": 1.0}],
        r"line 2: field 'data' should be str, found nothing",
    ),
    "time-backwards": (
        [HEADER, _recv(0, "heartbeats", [], ts=3.0), _recv(1, "heartbeats", [], ts=2.0)],
        r"line 3: receive time went backwards",
    ),
    "other-exchange": ([{**HEADER, "exchange": "BINANCE"}], r"line 1: header of a 'BINANCE'"),
    "binance-line": (
        ['1723161254000000000 {"stream":"btcusdt@trade","data":{"e":"trade"}}'],
        r"line 1: not JSON",
    ),
    "no-market-data": ([HEADER, CONNECT], r"no ticker, market_trades or l2_data rows"),
}


@pytest.mark.parametrize(("records", "problem"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_file_line_and_problem(tmp_path: Path, data_dir, records, problem) -> None:
    path = _write(tmp_path, *records, name="bad.jsonl")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}.*{problem}"):
        import_coinbase([path], data_dir)
    assert list(data_dir.iterdir()) == []


def test_empty_file_is_refused(tmp_path: Path, data_dir) -> None:
    path = tmp_path / "empty.jsonl.zst"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: empty file"):
        import_coinbase([path], data_dir)
