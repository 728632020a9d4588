"""The lean live path's per-event contract checks agree with the replay sources' batch checks
row for row, and the recorder's off-path cross-check catches a row they would disagree on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import InvariantViolation
from simulator.live.consumed import schemas
from simulator.live.parts import SessionParts
from simulator.live.session import SymbolRun
from simulator.live.stepper import RowSpool, book_ok, top_ok, trade_ok
from simulator.live.venues import adapter
from simulator.sources.schema import RowChecker
from simulator.types import SessionKey

LEVELS = 3
NAN = math.nan


def _with_fault(values: list[float], fault: int, j: int, flip: int) -> None:
    """Break a valid book row in one of the ways `schema` checks for (fault >= 8: none)."""
    changes: dict[int, tuple[tuple[int, float], ...]] = {
        0: ((j, NAN),),
        1: ((j, -values[j]),),
        2: ((j, math.inf),),
        3: ((j, 0.0),),
        4: ((2, values[0] - flip),),  # crossed or locked top
        5: ((4, NAN), (5, NAN if flip else 1.0)),  # an empty deeper bid is fine, half is not
        6: ((4, values[0] + flip),),  # a deeper bid not below the one above
        7: ((10, values[6] - flip),),  # a deeper ask not above the one above
    }
    for index, value in changes.get(fault, ()):
        values[index] = value


def _book_rows(rng: np.random.Generator, n: int) -> list[tuple[Any, ...]]:
    """Mostly valid 3-level books, with every kind of fault sprinkled in."""
    rows = []
    for i in range(n):
        values = []
        for level in range(LEVELS):
            values += [100.0 - level, 1.0 + level, 101.0 + level, 2.0 + level]
        fault, j, flip = rng.integers(0, 12), rng.integers(0, len(values)), rng.integers(0, 2)
        _with_fault(values, int(fault), int(j), int(flip))
        rows.append((None, 1_000 + i, *values, i, i))
    return rows


def _table(kind: str, rows: list[tuple[Any, ...]], levels: int) -> pa.Table:
    schema = schemas(levels)[kind]
    columns = zip(*rows, strict=True)
    return pa.table(
        [pa.array(c, t) for c, t in zip(columns, schema.types, strict=True)], schema=schema
    )


def test_per_event_book_checks_match_the_batch_checks_row_for_row():
    rows = _book_rows(np.random.default_rng(7), 3_000)
    batch_bad = RowChecker("book", "test", LEVELS).check(_table("book", rows, LEVELS))
    per_event_bad = np.array([not book_ok(r[2 : 2 + 4 * LEVELS], LEVELS) for r in rows])
    assert 300 < per_event_bad.sum() < 2_700  # the faults are there, and so are good rows
    assert (per_event_bad == batch_bad).all()


def test_a_thin_book_row_is_checked_like_the_batch_checks_check_its_nulls(tmp_path):
    """top_row leaves None past a side's last level: recorded as null, an empty level."""
    full = [100.0, 1.0, 101.0, 2.0, 99.0, 1.0, 102.0, 1.0]
    rows = [
        (None, 1_000, *full, None, None, None, None, 1, 1),
        (None, 1_001, *full[:4], None, None, 102.0, 1.0, None, None, None, None, 2, 2),
        (None, 1_002, *full[:4], 99.0, None, 102.0, 1.0, None, None, None, None, 3, 3),
    ]
    batch_bad = RowChecker("book", "test", LEVELS).check(_table("book", rows, LEVELS))
    assert batch_bad.tolist() == [False, False, True]
    config = apply_overrides(load_strategy("obi_mlp"), sets=("policy.lot=0.01",))
    run = SymbolRun(
        key=SessionKey("binance", "BTCUSDT", "thin"),
        prefix="btcusdt@",
        normalizer=adapter("binance", ["book"]).normalizer("btcusdt"),
        config=config,
        levels=LEVELS,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        meta={},
    )
    for row in rows:
        run.stepper.book(row)
    assert run.contract_drops["book"] == 1
    assert run.engine.state.n_events == 2
    run.engine.end()
    run.spool.flush()
    run.parts.close()
    run.spool.raise_if_failed()
    run.recorder.close()  # its writer thread ends (left running, tests/cli's thread checks fail)


def test_per_event_quote_and_trade_checks_match_the_batch_checks():
    rng = np.random.default_rng(3)
    specials = [NAN, -1.0, 0.0, math.inf, 99.0, 100.0, 100.5, 101.0, 1e-9]
    quotes = [
        (None, 1_000 + i, *(float(rng.choice(specials)) for _ in range(4)), i, i)
        for i in range(2_000)
    ]
    trades = [
        (None, 1_000 + i, float(rng.choice(specials)), float(rng.choice(specials)),
         int(rng.integers(-2, 3)), i, i)
        for i in range(2_000)
    ]  # fmt: skip
    for kind, rows, ok in (
        ("quotes", quotes, lambda r: top_ok(r[2], r[3], r[4], r[5])),
        ("trades", trades, lambda r: trade_ok(r[2], r[3], r[4])),
    ):
        batch_bad = RowChecker(kind, "test").check(_table(kind, rows, 0))
        per_event_bad = np.array([not ok(r) for r in rows])
        assert 0 < per_event_bad.sum() < len(rows)
        assert (per_event_bad == batch_bad).all(), kind


def test_the_recorders_cross_check_fails_the_session_on_a_row_the_batch_checks_reject(tmp_path):
    parts = SessionParts(tmp_path / "session", {}, schemas(LEVELS))
    spool = RowSpool(parts, LEVELS, "live test")
    spool.queues["trades"].append((None, 1_000, 10.0, 1.0, 1, 1, 0))
    spool.flush()
    spool.raise_if_failed()
    spool.queues["trades"].append((None, 1_001, -10.0, 1.0, 1, 2, 1))  # passed no check
    spool.flush()
    parts.close()
    with pytest.raises(InvariantViolation, match=r"live trades: a row passed the per-event"):
        spool.raise_if_failed()


def test_the_quick_book_check_agrees_with_the_level_by_level_rules():
    """book_ok's C-level shortcut passes only rows the level-by-level rules pass, and leaves
    every other row to them: the same verdict on full, thin, broken and extreme books."""
    from simulator.live.stepper import _book_ok_by_level

    rng = np.random.default_rng(11)
    extremes = [NAN, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e308, 5e-324]
    for _ in range(20_000):
        levels = int(rng.choice([1, 2, 3, 5]))
        values = []
        for level in range(levels):
            values += [100.0 - level, 1.0 + level, 101.0 + level, 2.0 + level]
        for _ in range(int(rng.integers(0, 4))):
            j = int(rng.integers(0, len(values)))
            shift = float(rng.choice([-1.5, -1.0, 0.5, 1.0, 100.0]))
            values[j] = float(rng.choice(extremes)) if rng.random() < 0.5 else values[j] + shift
        if levels > 1 and rng.random() < 0.2:  # sides thinner than `levels`
            for level in range(int(rng.integers(1, levels)), levels):
                side = 4 * level + int(rng.choice([0, 2]))
                values[side], values[side + 1] = NAN, NAN if rng.random() < 0.8 else 1.0
        row = tuple(values)
        assert book_ok(row, levels) == _book_ok_by_level(row, levels), row
