"""Run a scenario's stream transforms over a session: BatchTransforms for a ParquetSource.

`make_transform` turns one transform spec into a BatchTransform plus its counts, `compose`
chains them, and `apply_scenario` opens a session's files with the scenario's chain and the
drop repair, so injected bad ticks are caught, counted in `source.report` and never acted on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import DataError
from simulator.session import SessionRef
from simulator.sources.recorded import (
    DEFAULT_BATCH_ROWS,
    BatchTransform,
    ParquetSource,
    open_parquet,
)
from simulator.sources.schema import conform
from simulator.stress.spec import Scenario, TransformSpec, seed_sequence
from simulator.stress.transforms import STEPS, InjectCounts, StepContext


def _emit(table: pa.Table | None) -> Iterator[pa.RecordBatch]:
    if table is not None and table.num_rows:
        yield from table.combine_chunks().to_batches()


def make_transform(
    spec: TransformSpec,
    *,
    kind: str,
    seed: int,
    index: int,
    origin_ns: int | None = None,
    where: str | None = None,
) -> tuple[BatchTransform, InjectCounts]:
    """One transform of a scenario (at position `index`) for a file of `kind`, and its counts.

    `origin_ns` is the session start that windows are measured from; None takes the stream's
    first ts_recv (give the session's, so that every kind sees the same windows).
    """
    counts = InjectCounts(name=f"{kind}: {spec.kind} #{index + 1}")
    label = where or f"{kind} stream ({counts.name})"

    def transform(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts.reset()
        rng = np.random.Generator(np.random.PCG64(seed_sequence(seed, index, spec.kind, kind)))
        ctx = StepContext(kind=kind, rng=rng, counts=counts, origin_ns=origin_ns)
        step = STEPS[type(spec)](spec, ctx)
        for raw in batches:
            table = conform(pa.Table.from_batches([raw]), kind, label)
            counts.rows_in += table.num_rows
            if ctx.origin_ns is None and table.column("ts_recv").null_count < table.num_rows:
                ctx.origin_ns = int(pc.drop_null(table.column("ts_recv"))[0].as_py())
            yield from _emit(step.apply(table))
        yield from _emit(step.finish())

    return transform, counts


def compose(transforms: Sequence[BatchTransform]) -> BatchTransform:
    """Apply `transforms` in order: the output of each is the input of the next."""
    chain = tuple(transforms)

    def composed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for transform in chain:
            batches = transform(batches)
        return batches

    return composed


def scenario_transform(
    scenario: Scenario, *, kind: str, origin_ns: int | None = None, where: str | None = None
) -> tuple[BatchTransform | None, tuple[InjectCounts, ...]]:
    """Every transform of `scenario` for a file of `kind`, composed (None when there are none)."""
    made = [
        make_transform(
            spec, kind=kind, seed=scenario.seed, index=i, origin_ns=origin_ns, where=where
        )
        for i, spec in enumerate(scenario.transforms)
    ]
    if not made:
        return None, ()
    return compose([t for t, _ in made]), tuple(c for _, c in made)


class StressedSource(ParquetSource):
    """A ParquetSource read through a scenario's transforms, with what they did (`injected`).

    Always with the drop repair: injected bad ticks end up counted in `report`, never acted on.
    """

    def __init__(
        self,
        path: Path,
        *,
        kind: str,
        scenario: Scenario,
        origin_ns: int | None,
        priority: int = 0,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        transform, self.injected = scenario_transform(
            scenario, kind=kind, origin_ns=origin_ns, where=str(path)
        )
        self.scenario = scenario
        super().__init__(
            path,
            kind=kind,
            priority=priority,
            batch_rows=batch_rows,
            repair=("drop",),
            transform=transform,
        )


def session_origin(session: SessionRef) -> int | None:
    """The session start: the earliest first ts_recv over all its files (None when unknown).

    Taken over every file, not only the kinds replayed, so a window hits quotes, trades and book
    at the same instant whichever of them a run opens.
    """
    firsts = [t for t in (_first_ts(path) for path in session.files.values()) if t is not None]
    return min(firsts) if firsts else None


def _first_ts(path: Path) -> int | None:
    file = open_parquet(path)
    names = file.schema_arrow.names
    name = "ts_recv" if "ts_recv" in names else "ts_ns" if "ts_ns" in names else None
    if name is None or file.metadata.num_rows == 0:
        return None  # the source's own checks name what is wrong with this file
    head = next(file.iter_batches(batch_size=1024, columns=[name]))
    column = head.column(0)
    if pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("ns", column.type.tz)), pa.int64())
    present = pc.drop_null(column)
    return int(present[0].as_py()) if len(present) else None


def apply_scenario(
    session: SessionRef,
    kinds: Sequence[str],
    scenario: Scenario,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> list[StressedSource]:
    """Open each kind of `session` (priority = its position in `kinds`) through `scenario`."""
    origin = session_origin(session)
    sources = []
    for priority, kind in enumerate(kinds):
        if kind not in session.files:
            raise DataError(
                f"session {session.name} has no {kind} (it has: {', '.join(sorted(session.files))})"
            )
        sources.append(
            StressedSource(
                session.files[kind],
                kind=kind,
                scenario=scenario,
                origin_ns=origin,
                priority=priority,
                batch_rows=batch_rows,
            )
        )
    return sources


def injection_summary(sources: Sequence[StressedSource]) -> dict[str, int]:
    """Sorted `key: count` pairs for a run summary: what each transform did to each file, what
    the checks found (rows by problem code; a row can have two) and how many rows they dropped.
    Complete once the sources are exhausted."""
    out: dict[str, int] = {}
    for source in sources:
        for counts in source.injected:
            out.update(counts.summary())
        for code, n in source.report.counts.items():
            out[f"{source.kind}: checks.{code}"] = n
        out[f"{source.kind}: checks.dropped"] = source.report.repaired["dropped"]
    return dict(sorted(out.items()))
