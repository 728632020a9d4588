"""The engine in live mode and in its parity replay: the same `Engine`, two decision stamps.

`WallClockStamp` dates each decision with the wall clock when it is made (and keeps those
dates for the recording); `RecordedStamp` dates each decision with the time recorded for that
event, so a replay's venue sees the same order arrival times and the run is identical
(`--latency recorded`, with any scheduler). `LiveEngine` is only how the live consumer feeds
an Engine: one event at a time, each timed on the wall.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np

from simulator.engine import TIMER, TRADE, Engine
from simulator.errors import InvariantViolation
from simulator.intents import Intent, LimitOrder, MarketOrder
from simulator.metrics import LatencyHistogram
from simulator.sources.merge import MergedBatch
from simulator.sources.recorded import EventBatch

_ROW0: Final = np.zeros(1, dtype=np.int64).data  # order_part = order_row = [0]
_SAMPLES: Final = 4096


class WallClockStamp:
    """Live: a decision is dated by the wall clock when it is made (never before its event's
    receive time, so stamps only increase); (event index, ts_decision) kept for recording."""

    __slots__ = ("_wall", "decisions")

    def __init__(self, wall: Callable[[], int]) -> None:
        self._wall = wall
        self.decisions: list[tuple[int, int]] = []  # taken (and replaced) by the live stepper

    def stamp(self, ts: int, event_index: int) -> int:
        ts_decision = max(self._wall(), ts)
        self.decisions.append((event_index, ts_decision))
        return ts_decision

    def finish(self) -> None:
        """Nothing to check: the decisions are the recording's."""


class RecordedStamp:
    """Parity replay: a decision is dated by the time live recorded for its event index; a
    decision live did not take, or one live took that the replay does not, is an error."""

    __slots__ = ("_decisions", "_used")

    def __init__(self, decisions: Mapping[int, int]) -> None:
        self._decisions = decisions
        self._used: set[int] = set()

    def stamp(self, ts: int, event_index: int) -> int:
        ts_decision = self._decisions.get(event_index)
        if ts_decision is None:
            raise InvariantViolation(
                f"parity: the replay decided to trade at event {event_index} (ts_recv {ts}) but "
                "the recording has no decision there: the consumed stream or the pipeline differs"
            )
        self._used.add(event_index)
        return ts_decision

    def finish(self) -> None:
        if len(self._used) != len(self._decisions):
            missing = sorted(set(self._decisions) - self._used)[:5]
            raise InvariantViolation(
                f"parity: the recording decided at {len(self._decisions)} events, the replay at "
                f"{len(self._used)} (first recorded ones not replayed: {missing})"
            )


class LiveEngine(Engine):
    """An Engine fed by the live consumer, one event at a time so each is timed on the wall;
    each is served at once (no scheduler part: live time is the wall's) and its decisions
    are dated by a WallClockStamp."""

    def __init__(self, *, wall: Callable[[], int], **engine: Any) -> None:  # noqa: ANN401
        self._wall_stamp = WallClockStamp(wall)
        super().__init__(sources=(), stamp=self._wall_stamp, scheduler=None, **engine)
        self._wall = wall
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

    def dry_act(self, intents: Sequence[Intent]) -> None:
        """What `act` does for a decision before anything is dated, counted or sent, again,
        answers unused: the request each new-order intent becomes and the risk checks that
        declare themselves pure (`RiskChain.dry_check`; a gate without it runs none). The
        live keep-warm pass (live/session.py `SymbolRun.dry_pass`); nothing changes."""
        state = self.state
        dry_check = getattr(self._pipeline.risk, "dry_check", None)
        for intent in intents:
            if isinstance(intent, MarketOrder | LimitOrder):
                order, price = self._order_request(intent, state.now)
                if dry_check is not None:
                    dry_check(order, price, state)

    @property
    def decisions(self) -> list[tuple[int, int]]:
        """(event index, ts_decision) of the decisions since the caller last took them."""
        return self._wall_stamp.decisions

    @decisions.setter
    def decisions(self, value: list[tuple[int, int]]) -> None:
        self._wall_stamp.decisions = value


__all__ = ["LiveEngine", "RecordedStamp", "WallClockStamp"]
