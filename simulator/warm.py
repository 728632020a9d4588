"""Warm start: recorded history fed to the feature stage and the model before a run begins.

`warm` does for each event what the engine's steps 3 and 5 do to those two stages (features
updated from the quote, book or trade; on any other event once the features are ready, the
model run on them, which moves a stateful model's hidden state) and nothing else: no market
state, no decision, no order, no recorded row. So the stages end in the state a replay of that
history leaves them in, and a live run warmed from it decides as that replay followed by the
live events would (`ticktape live --warm-from`; its parity replay warms from the same session).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulator.protocols import FeatureStage, ModelRunner
from simulator.sources.merge import merge
from simulator.sources.recorded import BatchSource


def warm(features: FeatureStage, runner: ModelRunner, sources: Sequence[BatchSource]) -> int:
    """Feed every event of `sources`, in the engine's order; return how many were fed."""
    n = 0
    for merged in merge(sources):
        handles = [_handles(features, part.kind, part.columns, part) for part in merged.parts]
        for part_index, row in zip(merged.order_part, merged.order_row, strict=True):
            kind, ts, a, b, c, d, bundle = handles[part_index]
            if kind == "trades":
                features.on_trade(ts[row], a[row], b[row], c[row])
            elif bundle is not None:
                features.on_book(ts[row], bundle, row)
            elif kind == "quotes":
                features.on_quote(ts[row], a[row], b[row], c[row], d[row])
            if kind != "trades" and features.ready:
                runner.predict(features.compute(), n)
            n += 1
    return n


def _handles(
    features: FeatureStage,
    kind: str,
    c: dict[str, memoryview],
    batch: Any,  # noqa: ANN401
) -> tuple[Any, ...]:
    """The columns one event of `kind` reads, bound once per batch."""
    if kind == "trades":
        return (kind, c["ts_recv"], c["px"], c["sz"], c["side"], None, None)
    if kind == "book":
        return (kind, c["ts_recv"], None, None, None, None, features.book_columns(batch))
    if kind != "quotes":  # a timer tick: the model runs, the features do not change
        return (kind, c["ts_recv"], None, None, None, None, None)
    return (kind, c["ts_recv"], c["bid_px"], c["bid_sz"], c["ask_px"], c["ask_sz"], None)


__all__ = ["warm"]
