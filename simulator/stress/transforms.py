"""The stream transforms of a stress scenario, one step class per kind (`inject.py` runs them).

A transform rewrites a file's raw record batches *before* the data-contract checks, so what it
breaks on purpose (duplicate, late or corrupt ticks) is caught by the source's checks and, with
the drop repair, counted in `source.report` and never acted on. Every transform is

- deterministic: its randomness comes from a numpy Generator seeded from (scenario seed, its
  position in the scenario, its kind, the data kind), never from Python's hash();
- streaming: one batch at a time, state carried across batches (at most one held-back row), and
  independent of the batch size: rows draw their random numbers in file order whatever batch
  they arrive in, and a transform that needs the next row's time holds the last row back;
- restartable: each pass over the data starts from fresh state and resets its counts.

Batches are first brought to the canonical dtypes (`conform`), so a transform sees int64 ns
times, float64 prices and sizes. Windows are [start, start + duration) in ts_recv, measured
from the session start; within one scenario each transform sees the times the one before it
wrote (a burst first moves later windows with it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from simulator.stress.spec import (
    AmplifySpec,
    BurstSpec,
    CorruptSpec,
    DuplicateSpec,
    GapSpec,
    OutOfOrderSpec,
    PriceShockSpec,
)
from simulator.types import NS_PER_SECOND, book_levels

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

NEVER: Final = np.iinfo(np.int64).max  # the end of an open window
BEFORE_ALL: Final = np.iinfo(np.int64).min  # where a null ts_recv sorts: in no window


@dataclass(slots=True)
class InjectCounts:
    """What one transform did to one file in the last pass (complete once it is exhausted)."""

    name: str  # e.g. "quotes: duplicate #2"
    rows_in: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    detail: Counter[str] = field(default_factory=Counter)  # e.g. corrupt rows by mode

    def reset(self) -> None:
        self.rows_in = self.added = self.removed = self.changed = 0
        self.detail.clear()

    def summary(self) -> dict[str, int]:
        """`name.key: count` pairs (rows_in always, the rest when not 0), e.g.
        {"quotes: corrupt #3.rows_in": 45609, "quotes: corrupt #3.changed": 30, ...}."""
        pairs = {"added": self.added, "removed": self.removed, "changed": self.changed}
        pairs.update(sorted(self.detail.items()))
        out = {f"{self.name}.rows_in": self.rows_in}
        out.update({f"{self.name}.{k}": v for k, v in pairs.items() if v})
        return out


@dataclass(slots=True)
class StepContext:
    """What a transform step shares with the runner: data kind, generator, counts, origin."""

    kind: str
    rng: np.random.Generator
    counts: InjectCounts
    origin_ns: int | None

    def window(self, start_s: float, duration_s: float) -> tuple[int, int]:
        """[lo, hi) in ns; empty until the origin (first ts_recv) is known."""
        if self.origin_ns is None:
            return NEVER, NEVER
        lo = min(self.origin_ns + _ns(start_s), NEVER)  # past int64: a window never reached
        return lo, NEVER if duration_s == float("inf") else min(lo + _ns(duration_s), NEVER)


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_SECOND)


class Step(Protocol):
    def apply(self, table: pa.Table) -> pa.Table: ...
    def finish(self) -> pa.Table | None: ...


# --- column helpers ---------------------------------------------------------------------------


def _ts(table: pa.Table) -> Ints:
    """ts_recv as int64, nulls placed before every window."""
    column = table.column("ts_recv")
    if column.null_count:
        column = pc.fill_null(column, BEFORE_ALL)
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _inside(ts: Ints, window: tuple[int, int]) -> Mask:
    return (ts >= window[0]) & (ts < window[1])


def _columns(table: pa.Table, kind: str, what: str) -> list[str]:
    """Every price (`what`="px") or size ("sz") column of a kind, all book levels included."""
    if kind == "trades":
        return [what]
    if kind == "quotes":
        return [f"bid_{what}", f"ask_{what}"]
    levels = book_levels(table.column_names)
    return [f"{side}_{what}_{i}" for i in range(levels) for side in ("bid", "ask")]


def _replace(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _scale(table: pa.Table, names: Sequence[str], factor: Floats) -> pa.Table:
    """Multiply columns row-wise (nulls stay null; a factor of exactly 1 leaves a value as is)."""
    scale = pa.array(factor)
    for name in names:
        table = _replace(table, name, pc.multiply(table.column(name), scale))
    return table


def _shift(table: pa.Table, delta: Ints) -> pa.Table:
    """Move ts_recv and ts_event by the same amount, so each event keeps its feed latency."""
    shift = pa.array(delta)
    for name in ("ts_recv", "ts_event"):
        table = _replace(table, name, pc.add(table.column(name), shift))
    return table


def _concat(head: pa.Table | None, table: pa.Table) -> pa.Table:
    return table if head is None else pa.concat_tables([head, table])


# --- row-wise transforms: each row is handled alone -------------------------------------------


@dataclass(slots=True)
class _Burst:
    spec: BurstSpec
    ctx: StepContext

    def apply(self, table: pa.Table) -> pa.Table:
        lo, hi = self.ctx.window(self.spec.start_s, self.spec.duration_s)
        ts = _ts(table)
        delta = np.zeros(len(ts), dtype=np.int64)
        inside = _inside(ts, (lo, hi))
        since = ts[inside] - lo
        delta[inside] = np.floor(since / self.spec.factor).astype(np.int64) - since
        if hi != NEVER:  # later events move up by the time saved, so order is kept
            span = hi - lo
            delta[ts >= hi] = int(np.floor(span / self.spec.factor)) - span
        changed = int(np.count_nonzero(delta))
        self.ctx.counts.changed += changed
        return _shift(table, delta) if changed else table

    def finish(self) -> pa.Table | None:
        return None


@dataclass(slots=True)
class _Gap:
    spec: GapSpec
    ctx: StepContext

    def apply(self, table: pa.Table) -> pa.Table:
        lost = _inside(_ts(table), self.ctx.window(self.spec.start_s, self.spec.duration_s))
        n = int(np.count_nonzero(lost))
        self.ctx.counts.removed += n
        return table.filter(pa.array(~lost)) if n else table

    def finish(self) -> pa.Table | None:
        return None


@dataclass(slots=True)
class _PriceShock:
    spec: PriceShockSpec
    ctx: StepContext

    def apply(self, table: pa.Table) -> pa.Table:
        lo, _ = self.ctx.window(self.spec.start_s, float("inf"))
        ts = _ts(table)
        factor = np.ones(len(ts))
        after = np.flatnonzero(ts >= lo)
        since = (ts[after] - lo).astype(np.float64)
        recovery = self.spec.recovery_s * NS_PER_SECOND  # inf: the shock never fades
        # bid and ask (every level) move by the same factor: the book stays ordered, uncrossed
        factor[after] = 1.0 + self.spec.pct / 100.0 * np.maximum(1.0 - since / recovery, 0.0)
        changed = int(np.count_nonzero(factor != 1.0))
        self.ctx.counts.changed += changed
        return _scale(table, _columns(table, self.ctx.kind, "px"), factor) if changed else table

    def finish(self) -> pa.Table | None:
        return None


@dataclass(slots=True)
class _Duplicate:
    spec: DuplicateSpec
    ctx: StepContext

    def apply(self, table: pa.Table) -> pa.Table:
        draw = self.ctx.rng.random(table.num_rows)  # one draw per row, window or not
        window = self.ctx.window(self.spec.start_s, self.spec.duration_s)
        twice = _inside(_ts(table), window) & (draw < self.spec.probability)
        n = int(np.count_nonzero(twice))
        self.ctx.counts.added += n
        if not n:
            return table
        return table.take(pa.array(np.repeat(np.arange(table.num_rows), 1 + twice)))

    def finish(self) -> pa.Table | None:
        return None


# The price each corruption hits. On a book it is the best ask: a bad best bid would also break
# the level order, and each injected row should be caught under exactly one problem code.
_TARGET: Final = {"quotes": "ask_px", "trades": "px", "book": "ask_px_0"}
_TOUCH: Final = {"quotes": ("bid_px", "ask_px"), "book": ("bid_px_0", "ask_px_0")}


@dataclass(slots=True)
class _Corrupt:
    spec: CorruptSpec
    ctx: StepContext

    def apply(self, table: pa.Table) -> pa.Table:
        draw = self.ctx.rng.random((table.num_rows, 2))  # (whether, which mode) per row
        modes = [m for m in self.spec.modes if m != "crossed" or self.ctx.kind in _TOUCH]
        if not modes:  # trades have no book to cross
            return table
        window = self.ctx.window(self.spec.start_s, self.spec.duration_s)
        hit = _inside(_ts(table), window) & (draw[:, 0] < self.spec.probability)
        if not hit.any():
            return table
        which = (draw[:, 1] * len(modes)).astype(np.int64)
        for i, mode in enumerate(modes):
            rows = np.flatnonzero(hit & (which == i))
            if rows.size:
                table = self._break(table, mode, rows)
                self.ctx.counts.detail[mode] += int(rows.size)
        self.ctx.counts.changed += int(np.count_nonzero(hit))
        return table

    def _break(self, table: pa.Table, mode: str, rows: npt.NDArray[np.intp]) -> pa.Table:
        if mode == "crossed":  # bid and ask swap places: bid above ask
            bid, ask = _TOUCH[self.ctx.kind]
            bids, asks = _floats(table, bid), _floats(table, ask)
            bids[rows], asks[rows] = asks[rows], bids[rows].copy()
            return _replace(_replace(table, bid, pa.array(bids)), ask, pa.array(asks))
        name = _TARGET[self.ctx.kind]
        values = _floats(table, name)
        if mode == "nan":
            values[rows] = np.nan
        elif mode == "zero":
            values[rows] = 0.0
        else:
            values[rows] = -np.abs(values[rows])
        return _replace(table, name, pa.array(values))

    def finish(self) -> pa.Table | None:
        return None


def _floats(table: pa.Table, name: str) -> Floats:
    """A writable float64 copy of a column (nulls as NaN)."""
    return np.array(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


# --- transforms that look one row ahead -------------------------------------------------------


@dataclass(slots=True)
class _OutOfOrder:
    """A picked event swaps places with the next, later one: it arrives late, once."""

    spec: OutOfOrderSpec
    ctx: StepContext
    held: pa.Table | None = None  # the last row seen: its successor is not known yet
    held_draw: Floats = field(default_factory=lambda: np.empty(0))

    def apply(self, table: pa.Table) -> pa.Table:
        draw = np.concatenate([self.held_draw, self.ctx.rng.random(table.num_rows)])
        rows = _concat(self.held, table)
        ts = _ts(rows)
        m = len(ts)
        if m == 0:
            return rows
        window = self.ctx.window(self.spec.start_s, self.spec.duration_s)
        picked = _inside(ts, window) & (draw < self.spec.probability)
        # only a strictly later successor makes the swap visible as "ts_recv went backwards"
        candidates = np.flatnonzero(picked[:-1] & (ts[1:] > ts[:-1]))
        order = np.arange(m)
        last = -2
        for i in candidates.tolist():  # few: the probability is small
            if i != last + 1:  # row i was just swapped back; it is not picked again
                order[i], order[i + 1] = i + 1, i
                last = i
                self.ctx.counts.changed += 1
        keep = m if last == m - 2 else m - 1  # a last row that was swapped is settled
        self.held = rows.slice(keep) if keep < m else None
        self.held_draw = draw[keep:]
        return rows.take(pa.array(order[:keep]))

    def finish(self) -> pa.Table | None:
        return self.held


@dataclass(slots=True)
class _Amplify:
    """Each event in the window gets `copies` followers spread evenly up to the next event."""

    spec: AmplifySpec
    ctx: StepContext
    held: pa.Table | None = None

    def apply(self, table: pa.Table) -> pa.Table:
        rows = _concat(self.held, table)
        if rows.num_rows == 0:
            return rows
        ts = _ts(rows)
        self.held = rows.slice(rows.num_rows - 1)
        return self._expand(rows.slice(0, rows.num_rows - 1), ts[:-1], ts[1:])

    def finish(self) -> pa.Table | None:
        if self.held is None:
            return None
        ts = _ts(self.held)  # the last event: copies 1 ns apart
        return self._expand(self.held, ts, ts + self.spec.copies + 1)

    def _expand(self, rows: pa.Table, ts: Ints, next_ts: Ints) -> pa.Table:
        c = self.spec.copies
        window = self.ctx.window(self.spec.start_s, self.spec.duration_s)
        extra = np.where(_inside(ts, window), c, 0)
        total = int(extra.sum())
        if total == 0:
            return rows
        group = np.repeat(np.arange(len(ts)), 1 + extra)
        first = np.cumsum(1 + extra) - (1 + extra)
        j = np.arange(len(group)) - first[group]  # 0: the original, 1..c: its copies
        gap = np.where(next_ts >= ts, next_ts - ts, 0)[group]  # 0 before a null ts_recv
        delta = (j * gap) // (c + 1)
        self.ctx.counts.added += total
        return _shift(_scale(rows.take(pa.array(group)), self._sizes(rows), self._jitter(j)), delta)

    def _sizes(self, rows: pa.Table) -> list[str]:
        return _columns(rows, self.ctx.kind, "sz")

    def _jitter(self, j: Ints) -> Floats:
        """Size factors: 1 for originals; copy j of c gets 1 ± jitter * [(j - 1/2)/c, j/c), so no
        copy equals its original or a sibling (the checker would drop it as a duplicate)."""
        copy = j > 0
        draw = self.ctx.rng.random((int(np.count_nonzero(copy)), 2))
        size = (j[copy] - 1 + (1.0 + draw[:, 0]) / 2.0) / self.spec.copies
        sign = np.where(draw[:, 1] < 0.5, 1.0, -1.0)
        factor = np.ones(len(j))
        factor[copy] = 1.0 + sign * self.spec.size_jitter * size
        return factor


STEPS: Final[dict[type[Any], Callable[[Any, StepContext], Step]]] = {
    BurstSpec: _Burst,
    GapSpec: _Gap,
    PriceShockSpec: _PriceShock,
    DuplicateSpec: _Duplicate,
    CorruptSpec: _Corrupt,
    OutOfOrderSpec: _OutOfOrder,
    AmplifySpec: _Amplify,
}
