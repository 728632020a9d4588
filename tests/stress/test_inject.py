"""Stream transforms: each does exactly what it says on hand-checkable tables, the same
whatever the batch size, the same for the same seed in any process, and what they break is
caught, counted and dropped by a ParquetSource with the drop repair."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from simulator.session import SessionRef, resolve_session
from simulator.sources.recorded import ParquetSource
from simulator.sources.schema import check_table
from simulator.stress import (
    AmplifySpec,
    BurstSpec,
    CorruptSpec,
    DuplicateSpec,
    GapSpec,
    OutOfOrderSpec,
    PriceShockSpec,
    Scenario,
    apply_scenario,
    compose,
    injection_summary,
    load_scenario,
    make_transform,
    session_origin,
)
from tests.factories import T0, book, quotes, trades, write

REPO = Path(__file__).resolve().parents[2]
US = 1e-6  # a microsecond in seconds: the factory tables step 1 µs per row
BUILDERS: dict[str, Callable[[int], pa.Table]] = {"quotes": quotes, "trades": trades, "book": book}


def run(table, spec, *, kind="quotes", seed=0, batch_rows=1000, origin=T0):
    """The transform's output as one table, and its counts."""
    transform, counts = make_transform(spec, kind=kind, seed=seed, index=0, origin_ns=origin)
    out = list(transform(iter(table.to_batches(max_chunksize=batch_rows))))
    return pa.Table.from_batches(out, schema=out[0].schema if out else None), counts


def col(table, name):
    return table.column(name).to_pylist()


def offsets(table):
    return [t - T0 for t in col(table, "ts_recv")]


def through_source(tmp_path, table, transform, kind="quotes", batch_rows=7):
    """Rows out of a drop-repair ParquetSource reading `table` through `transform`."""
    path = write(table, tmp_path / f"{kind}.parquet")
    source = ParquetSource(
        path, kind=kind, batch_rows=batch_rows, repair=("drop",), transform=transform
    )
    rows = pa.Table.from_batches([b.record for b in source.batches()])
    return rows, source.report


# --- what each transform does -----------------------------------------------------------------


def test_burst_compresses_its_window_and_moves_later_events_up():
    # rows every 1000 ns; window [2000, 6000) squeezed by 2 -> 2000 ns saved afterwards
    out, counts = run(quotes(10), BurstSpec(start_s=2000e-9, duration_s=4000e-9, factor=2.0))
    assert offsets(out) == [0, 1000, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 7000]
    assert col(out, "ts_event") == col(out, "ts_recv")  # each event keeps its feed latency
    assert counts.changed == 7  # the row at the window start stays where it is
    assert col(out, "bid_px") == col(quotes(10), "bid_px")


def test_burst_keeps_ts_recv_non_decreasing_on_irregular_times():
    rng = np.random.default_rng(1)
    ts = T0 + np.cumsum(rng.integers(0, 5_000, 2_000))  # ties included
    table = quotes(2_000).set_column(1, "ts_recv", pa.array(ts))
    out, _ = run(table, BurstSpec(start_s=1e-3, duration_s=2e-3, factor=7.3), batch_rows=97)
    assert np.all(np.diff(col(out, "ts_recv")) >= 0)
    assert out.num_rows == 2_000


def test_gap_drops_exactly_its_window():
    spec = GapSpec(start_s=2000e-9, duration_s=3000e-9)
    out, counts = run(trades(10, step=1000), spec, kind="trades")
    assert offsets(out) == [0, 1000, 5000, 6000, 7000, 8000, 9000]
    assert (counts.removed, counts.rows_in) == (3, 10)


def test_price_shock_moves_bid_and_ask_together_and_recovers_linearly():
    spec = PriceShockSpec(start_s=2000e-9, pct=-10.0, recovery_s=4000e-9)
    out, counts = run(quotes(8), spec)
    factor = np.array(col(out, "bid_px")) / np.array(col(quotes(8), "bid_px"))
    assert factor == pytest.approx([1, 1, 0.9, 0.925, 0.95, 0.975, 1, 1])
    ask = np.array(col(out, "ask_px")) / np.array(col(quotes(8), "ask_px"))
    assert ask == pytest.approx(factor)
    assert col(out, "bid_sz") == col(quotes(8), "bid_sz")
    assert counts.changed == 4


def test_price_shock_on_a_book_moves_every_level_and_keeps_it_valid():
    table = book(6, levels=3)
    out, counts = run(table, PriceShockSpec(pct=25.0, recovery_s=math.inf), kind="book")
    for name in ("bid_px_0", "ask_px_2", "bid_px_1"):
        assert np.array(col(out, name)) == pytest.approx(1.25 * np.array(col(table, name)))
    assert counts.changed == 6
    assert check_table(out, "book", "t")[1].ok


def test_duplicate_sends_picked_rows_twice_in_a_row():
    out, counts = run(quotes(5), DuplicateSpec(probability=1.0, start_s=1000e-9, duration_s=2e-6))
    assert offsets(out) == [0, 1000, 1000, 2000, 2000, 3000, 4000]
    assert counts.added == 2


def test_out_of_order_swaps_a_row_with_the_next_later_one():
    out, counts = run(quotes(7), OutOfOrderSpec(probability=1.0))
    assert offsets(out) == [1000, 0, 3000, 2000, 5000, 4000, 6000]
    assert counts.changed == 3


def test_out_of_order_never_swaps_rows_with_the_same_time():
    table = quotes(4, step=0).set_column(1, "ts_recv", pa.array([T0, T0, T0 + 5, T0 + 9]))
    out, counts = run(table, OutOfOrderSpec(probability=1.0))
    assert [t - T0 for t in col(out, "ts_recv")] == [0, 5, 0, 9]  # only rows 1 and 2 swap
    assert counts.changed == 1


def test_amplify_spreads_copies_up_to_the_next_event_with_distinct_sizes():
    out, counts = run(quotes(3), AmplifySpec(copies=3))
    assert offsets(out) == [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2001, 2002, 2003]
    assert counts.added == 9
    sizes = col(out, "bid_sz")
    assert sizes[0] == 1.0
    assert sizes[4] == 2.0
    assert len(set(sizes[:4])) == 4  # no copy equals its original or a sibling
    assert all(0.9 <= s <= 1.1 for s in sizes[:4])
    assert col(out, "bid_px")[:4] == [100.0] * 4
    assert check_table(out, "quotes", "t")[1].ok


def test_amplify_only_in_its_window_and_on_every_book_size():
    table = book(4, levels=2)
    out, counts = run(table, AmplifySpec(copies=1, duration_s=1500e-9), kind="book")
    assert offsets(out) == [0, 500, 1000, 1500, 2000, 3000]
    assert counts.added == 2
    assert col(out, "bid_sz_1")[1] != col(out, "bid_sz_1")[0]
    assert col(out, "ask_sz_0")[1] != col(out, "ask_sz_0")[0]
    assert check_table(out, "book", "t")[1].ok


# --- what breaks is caught: counted by problem code, absent from the output -------------------

CORRUPT_CODES = {"nan": "bad_price", "zero": "bad_price", "negative": "bad_price"}


@pytest.mark.parametrize("kind", ["quotes", "trades", "book"])
@pytest.mark.parametrize("mode", ["nan", "zero", "negative", "crossed"])
def test_each_corruption_is_caught_under_exactly_one_code(tmp_path, kind, mode):
    table = BUILDERS[kind](40)
    spec = CorruptSpec(probability=0.25, modes=(mode,))
    transform, counts = make_transform(spec, kind=kind, seed=3, index=0)
    rows, report = through_source(tmp_path, table, transform, kind)
    if kind == "trades" and mode == "crossed":  # a trade has no book to cross
        assert counts.changed == 0
        assert report.ok
        return
    assert counts.changed == counts.detail[mode] > 0
    assert dict(report.counts) == {CORRUPT_CODES.get(mode, "crossed"): counts.changed}
    assert rows.num_rows == 40 - counts.changed
    assert check_table(rows, kind, "t")[1].ok


@pytest.mark.parametrize(
    ("spec", "code", "field"),
    [
        (DuplicateSpec(probability=0.1), "duplicate", "added"),
        (OutOfOrderSpec(probability=0.1), "unsorted", "changed"),
    ],
    ids=["duplicate", "out_of_order"],
)
def test_duplicates_and_late_events_are_dropped_and_counted(tmp_path, spec, code, field):
    transform, counts = make_transform(spec, kind="quotes", seed=1, index=0)
    rows, report = through_source(tmp_path, quotes(300), transform)
    injected = getattr(counts, field)
    assert injected > 0
    assert dict(report.counts) == {code: injected}
    assert report.repaired["dropped"] == injected
    assert check_table(rows, "quotes", "t")[1].ok
    # a duplicate's copy is dropped, the original kept; a late event is dropped (it is lost)
    lost = injected if code == "unsorted" else 0
    assert len(set(col(rows, "ts_recv"))) == rows.num_rows == 300 - lost


def test_a_duplicate_with_a_null_exchange_time_is_caught(tmp_path):
    table = quotes(50).set_column(0, "ts_event", pa.nulls(50, pa.int64()))
    transform, counts = make_transform(
        DuplicateSpec(probability=0.2), kind="quotes", seed=1, index=0
    )
    _, report = through_source(tmp_path, table, transform)
    assert report.counts["duplicate"] == counts.added > 0


def test_windows_far_past_the_session_end_are_never_reached():
    out, counts = run(quotes(5), GapSpec(start_s=1e12, duration_s=1e12))
    assert out.num_rows == 5
    assert counts.removed == 0


def test_a_second_pass_starts_from_fresh_state():
    transform, counts = make_transform(
        OutOfOrderSpec(probability=0.2), kind="quotes", index=0, seed=4
    )
    first = list(transform(iter(quotes(50).to_batches(max_chunksize=9))))
    changed = counts.changed
    second = list(transform(iter(quotes(50).to_batches(max_chunksize=9))))
    assert pa.Table.from_batches(first).equals(pa.Table.from_batches(second))
    assert counts.changed == changed > 0


# --- streaming and determinism ----------------------------------------------------------------

SPECS = [
    BurstSpec(start_s=30 * US, duration_s=50 * US, factor=3.0),
    AmplifySpec(copies=2, start_s=10 * US, duration_s=100 * US),
    GapSpec(start_s=20 * US, duration_s=20 * US),
    DuplicateSpec(probability=0.2),
    OutOfOrderSpec(probability=0.2),
    CorruptSpec(probability=0.2),
    PriceShockSpec(start_s=40 * US, pct=-5.0, recovery_s=60 * US),
]
RANDOM = [
    s for s in SPECS if isinstance(s, AmplifySpec | DuplicateSpec | OutOfOrderSpec | CorruptSpec)
]


@pytest.mark.parametrize("kind", ["quotes", "trades", "book"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_output_does_not_depend_on_the_batch_size(kind, spec):
    # every transform is batch-size independent: rows draw in file order and the two that need
    # the next row's time (amplify, out_of_order) hold the last row of a batch back
    table = BUILDERS[kind](150)
    whole, whole_counts = run(table, spec, kind=kind, seed=9, batch_rows=1000)
    for rows in (1, 7):
        part, counts = run(table, spec, kind=kind, seed=9, batch_rows=rows)
        assert digest(part) == digest(whole), rows
        assert counts == whole_counts


def digest(table):
    """sha256 of the table as one Arrow IPC batch (NaNs compare by their bytes, not as floats)."""
    table = table.combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


@pytest.mark.parametrize("spec", RANDOM, ids=lambda s: s.kind)
def test_same_seed_same_bytes_other_seed_other_bytes(spec):
    table = quotes(400)
    a, b, c = (run(table, spec, seed=s)[0] for s in (5, 5, 6))
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_compose_feeds_each_transform_the_output_of_the_one_before():
    gap, _ = make_transform(
        GapSpec(duration_s=2000e-9), kind="quotes", seed=0, index=0, origin_ns=T0
    )
    dup, counts = make_transform(
        DuplicateSpec(probability=1.0, duration_s=3000e-9),
        kind="quotes",
        seed=0,
        index=1,
        origin_ns=T0,
    )
    out = pa.Table.from_batches(list(compose([gap, dup])(iter(quotes(5).to_batches()))))
    assert offsets(out) == [2000, 2000, 3000, 4000]  # rows 0-1 gone before duplication
    assert counts.rows_in == 3


def test_streams_of_different_kinds_draw_differently():
    spec = DuplicateSpec(probability=0.3)
    q, _ = run(quotes(200), spec, kind="quotes")
    t, _ = run(trades(200, step=1000), spec, kind="trades")
    assert offsets(q) != offsets(t)


_CHILD = """
import hashlib, sys
import pyarrow as pa
from simulator.stress import CorruptSpec, DuplicateSpec, OutOfOrderSpec, compose, make_transform
from tests.factories import quotes
p = 0.2
specs = [OutOfOrderSpec(probability=p), DuplicateSpec(probability=p), CorruptSpec(probability=p)]
made = [make_transform(s, kind="quotes", seed=11, index=i) for i, s in enumerate(specs)]
chain = compose([transform for transform, _ in made])
table = pa.Table.from_batches(list(chain(iter(quotes(300).to_batches(max_chunksize=13)))))
sink = pa.BufferOutputStream()
with pa.ipc.new_stream(sink, table.schema) as writer:
    writer.write_table(table)
print(hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest())
"""


def test_output_is_identical_in_another_process_with_another_hash_seed():
    outputs = []
    for hash_seed in ("1", "999"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(done.stdout.strip())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 64


# --- a scenario over a session ----------------------------------------------------------------


def _session(tmp_path):
    directory = tmp_path / "session"
    directory.mkdir()
    files = {
        "quotes": write(quotes(500, start=T0 + 5_000), directory / "quotes.parquet"),
        "trades": write(trades(300, start=T0), directory / "trades.parquet"),
    }
    return SessionRef(name="test/X/2024-01-01", files=files, meta={})


def test_session_origin_is_the_earliest_start_over_every_file(tmp_path):
    assert session_origin(_session(tmp_path)) == T0


def test_apply_scenario_catches_and_counts_every_injected_bad_tick(tmp_path):
    scenario = Scenario(
        name="dirty",
        seed=2,
        transforms=(  # the order of dirty_feed.toml (see there why)
            OutOfOrderSpec(probability=0.05),
            DuplicateSpec(probability=0.05),
            CorruptSpec(probability=0.05),
        ),
    )
    sources = apply_scenario(_session(tmp_path), ["quotes", "trades"], scenario, batch_rows=64)
    assert [(s.kind, s.priority) for s in sources] == [("quotes", 0), ("trades", 1)]
    for source in sources:
        rows = pa.Table.from_batches([b.record for b in source.batches()])
        assert check_table(rows, source.kind, "t")[1].ok
        late, dup, bad = source.injected
        report = source.report
        assert report.rows == late.rows_in + dup.added
        assert report.repaired["dropped"] == report.rows - rows.num_rows
        # combined, one row can be hit twice (a corrupt duplicate), so the exact per-code
        # counts are checked one transform at a time above
        assert report.repaired["dropped"] <= dup.added + late.changed + bad.changed
        codes = {"duplicate", "unsorted", "bad_price"} | (
            {"crossed"} if source.kind == "quotes" else set()
        )
        assert set(report.counts) == codes
    summary = injection_summary(sources)
    assert list(summary) == sorted(summary)
    assert summary["quotes: out_of_order #1.rows_in"] == 500
    assert summary["trades: checks.duplicate"] > 0
    assert summary["trades: checks.dropped"] == sources[1].report.repaired["dropped"]


def test_a_calm_scenario_reads_the_session_unchanged(tmp_path):
    session = _session(tmp_path)
    (source,) = apply_scenario(session, ["quotes"], Scenario(name="calm"))
    rows = pa.Table.from_batches([b.record for b in source.batches()])
    assert rows.equals(
        pa.Table.from_batches([next(ParquetSource(session.files["quotes"]).batches()).record])
    )
    assert source.injected == ()


def test_apply_scenario_names_a_missing_kind(tmp_path):
    with pytest.raises(Exception, match=r"session test/X/2024-01-01 has no book \(it has: "):
        apply_scenario(_session(tmp_path), ["book"], Scenario(name="calm"))


@pytest.mark.parametrize("name", ["dirty_feed", "open_auction_burst", "flash_crash"])
def test_shipped_scenarios_run_on_the_recorded_goog_session(name):
    session = resolve_session("nasdaq/GOOG/2012-06-21", REPO / "data")
    (source,) = apply_scenario(session, ["quotes"], load_scenario(name))  # 45,569 rows
    last, rows = -1, 0
    for batch in source.batches():
        ts = np.asarray(batch.ts_recv)
        assert ts[0] >= last
        assert np.all(np.diff(ts) >= 0)
        last, rows = int(ts[-1]), rows + len(batch)
    injected = {c.name: c for c in source.injected}
    if name == "dirty_feed":
        added = injected["quotes: duplicate #2"].added
        assert rows == 45_569 + added - source.report.repaired["dropped"]
        assert source.report.repaired["dropped"] > added
    else:
        assert source.report.ok
        assert rows >= 45_569
