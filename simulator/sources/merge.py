"""Interleave several sources in the one deterministic order of the project:
(ts_recv, source priority, seq), seq being the row's `seq` column or else its row number."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.sources.recorded import BatchSource, EventBatch


@dataclass(slots=True)
class MergedBatch:
    """Events of several sources in merge order.

    Event k is row `order_row[k]` of `parts[order_part[k]]`; both are memoryviews of int64.
    """

    parts: list[EventBatch]
    order_part: memoryview
    order_row: memoryview

    def __len__(self) -> int:
        return len(self.order_part)


def merge(sources: Sequence[BatchSource]) -> Iterator[MergedBatch]:
    """Interleave sources by (ts_recv, priority, seq) with bounded look-ahead.

    Each round emits every buffered event strictly before the watermark (the smallest
    last-buffered ts_recv among unfinished sources), so an event of a later batch can never
    need to go before one already emitted.
    """
    iterators = [s.batches() for s in sorted(sources, key=lambda s: s.priority)]
    buffers: list[list[EventBatch]] = [[] for _ in iterators]
    done = [False] * len(iterators)
    while True:
        for i, it in enumerate(iterators):
            if not done[i] and not buffers[i]:
                done[i] = not _pull(it, buffers[i])
        open_ends = [int(b[-1].ts_recv[-1]) for b, d in zip(buffers, done, strict=True) if not d]
        if not open_ends and not any(buffers):
            return
        watermark = min(open_ends) if open_ends else None
        cuts = [_cut(b, watermark) for b in buffers]
        if sum(len(c) for c in cuts) == 0:
            for i, it in enumerate(iterators):  # every unfinished source ends at the watermark
                if not done[i] and int(buffers[i][-1].ts_recv[-1]) == watermark:
                    done[i] = not _pull(it, buffers[i])
            continue
        yield interleave(cuts)


def _pull(iterator: Iterator[EventBatch], buffer: list[EventBatch]) -> bool:
    batch = next(iterator, None)
    if batch is None:
        return False
    buffer.append(batch)
    return True


def _cut(buffer: list[EventBatch], watermark: int | None) -> list[EventBatch]:
    """Remove and return the buffered events with ts_recv < watermark (all when None)."""
    taken: list[EventBatch] = []
    while buffer:
        head = buffer[0]
        n = len(head) if watermark is None else int(np.searchsorted(head.ts_recv, watermark))
        if n == len(head):
            taken.append(buffer.pop(0))
            continue
        if n > 0:
            taken.append(_slice(head, 0, n))
            buffer[0] = _slice(head, n, len(head))
        break
    return taken


def _slice(batch: EventBatch, start: int, stop: int) -> EventBatch:
    return EventBatch(
        source=batch.source,
        kind=batch.kind,
        first_row=batch.first_row + start,
        record=batch.record.slice(start, stop - start),
        columns={k: v[start:stop] for k, v in batch.columns.items()},
        ts_recv=batch.ts_recv[start:stop],
        seq=batch.seq[start:stop],
    )


def interleave(cuts: list[list[EventBatch]]) -> MergedBatch:
    parts = [p for cut in cuts for p in cut]
    ts = np.concatenate([p.ts_recv for p in parts])
    priority = np.concatenate([np.full(len(p), p.source, dtype=np.int64) for p in parts])
    seq = np.concatenate([p.seq for p in parts])
    part = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    row = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
    order = np.lexsort((seq, priority, ts))
    return MergedBatch(
        parts=parts,
        order_part=np.ascontiguousarray(part[order]).data,
        order_row=np.ascontiguousarray(row[order]).data,
    )


__all__ = ["MergedBatch", "interleave", "merge"]
