"""The engine in live mode and in its parity replay: the same `Engine`, two ways to date a
decision.

`LiveEngine` is fed batch by batch from the live inbox and dates each decision with the wall
clock when it is made (and keeps those dates for the recording); `RecordedEngine` replays a
recorded session and dates each decision with the time recorded for that event, so the
venue sees the same order arrival times and the run is identical (`--latency recorded`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

from simulator.engine import TIMER, TRADE, Engine, EngineState
from simulator.errors import InvariantViolation
from simulator.metrics import LatencyHistogram
from simulator.sources.merge import MergedBatch
from simulator.sources.recorded import EventBatch

_ROW0: Final = np.zeros(1, dtype=np.int64).data  # order_part = order_row = [0]
_SAMPLES: Final = 4096


class LiveEngine(Engine):
    """An Engine fed by the live consumer, one event at a time so each is timed on the wall."""

    def __init__(self, *, wall: Callable[[], int], **engine: Any) -> None:  # noqa: ANN401
        super().__init__(sources=(), **engine)
        self._wall = wall
        self.decisions: list[tuple[int, int]] = []  # (event index, ts_decision), taken by caller
        self._recv_to_done = LatencyHistogram("recv_to_done")
        self._samples = np.zeros(_SAMPLES, dtype=np.int64)  # binned when full: no per-event numpy
        self._n_samples = 0

    @property
    def recv_to_done(self) -> LatencyHistogram:
        """Receive time to the end of the pipeline's work on the event (quotes, books)."""
        if self._n_samples:
            self._recv_to_done.add_samples(self._samples[: self._n_samples])
            self._n_samples = 0
        return self._recv_to_done

    def prepare_one(self, batch: EventBatch) -> list[tuple[Any, ...]]:
        """The engine's handles on a one-row batch whose columns the caller rewrites in place
        before each `step_one` (the lean live path: no table, no batch per event)."""
        return [self._prepare(batch)]

    def step_one(self, prepared: list[tuple[Any, ...]]) -> None:
        """Run the one event now in the columns of `prepared` (from `prepare_one`)."""
        self._slot = self._walk(prepared, _ROW0, _ROW0, self._slot)
        kind, ts_col = prepared[0][:2]
        if kind != TRADE and kind < TIMER:
            n = self._n_samples
            self._samples[n] = self._wall() - ts_col[0]
            self._n_samples = n = n + 1
            if n == _SAMPLES:
                self._recv_to_done.add_samples(self._samples)
                self._n_samples = 0

    def _walk_merged(self, parts: list[tuple[Any, ...]], merged: MergedBatch, slot: int) -> int:
        order_part, order_row = merged.order_part, merged.order_row
        wall, walk, samples = self._wall, self._walk, []
        for k in range(len(order_part)):
            kind, ts_col = parts[order_part[k]][:2]
            slot = walk(parts, order_part[k : k + 1], order_row[k : k + 1], slot)
            if kind != TRADE and kind < TIMER:
                samples.append(wall() - ts_col[order_row[k]])
        if samples:
            self._recv_to_done.add_samples(np.asarray(samples, dtype=np.int64))
        return slot

    def _stamp(self, ts: int) -> int:
        ts_decision = max(self._wall(), ts)  # stamps are forced increasing; never before ts
        self.decisions.append((self.state.n_events, ts_decision))
        return ts_decision


class RecordedEngine(Engine):
    """Replays a live recording with its recorded decision times (event index -> ts)."""

    def __init__(self, *, decisions: Mapping[int, int], **engine: Any) -> None:  # noqa: ANN401
        super().__init__(**engine)
        self._decisions = decisions
        self._used: set[int] = set()

    def _stamp(self, ts: int) -> int:
        index = self.state.n_events
        ts_decision = self._decisions.get(index)
        if ts_decision is None:
            raise InvariantViolation(
                f"parity: the replay decided to trade at event {index} (ts_recv {ts}) but the "
                "recording has no decision there: the consumed stream or the pipeline differs"
            )
        self._used.add(index)
        return ts_decision

    def end(self) -> EngineState:
        state = super().end()
        if len(self._used) != len(self._decisions):
            missing = sorted(set(self._decisions) - self._used)[:5]
            raise InvariantViolation(
                f"parity: the recording decided at {len(self._decisions)} events, the replay at "
                f"{len(self._used)} (first recorded ones not replayed: {missing})"
            )
        return state


__all__ = ["LiveEngine", "RecordedEngine"]
