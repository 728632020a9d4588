"""The engine in live mode and in its parity replay: the same `Engine`, two decision stamps.

`WallClockStamp` dates each decision with the wall clock when it is made (and keeps those
dates for the recording); `RecordedStamp` dates each decision with the time recorded for that
event, so a replay's venue sees the same order arrival times and the run is identical
(`--latency recorded`, with any scheduler). `LiveEngine` is only how the live consumer feeds
an Engine: one event at a time, each timed on the wall; while the feed is idle, `dry_step`
walks the last event again on a scratch twin of the engine (the keep-warm pass).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np

from simulator.engine import TIMER, TRADE, Engine, EngineState, Pipeline
from simulator.errors import InvariantViolation
from simulator.intents import Intent, LimitOrder, MarketOrder
from simulator.market import MAX_TS
from simulator.metrics import LatencyHistogram
from simulator.protocols import FeatureStage, FeatureVector, ModelRunner, Policy
from simulator.sources.merge import MergedBatch
from simulator.sources.recorded import EventBatch

_ROW0: Final = np.zeros(1, dtype=np.int64).data  # order_part = order_row = [0]
_SAMPLES: Final = 4096
_STATE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(EngineState) if f.name != "fills")


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

    def prepare_dry(self, runner: ModelRunner | None, policy: Policy | None) -> None:
        """Build the scratch twin `dry_step` walks (once, after `begin`). With both a runner
        and a policy that may run idle (a stateless model; a shallow copy of a copy-safe
        policy: live/session.py), the twin's walk takes the decision step too."""
        self._dry = _DryTwin(self, runner, policy)

    def dry_step(self, prepared: list[tuple[Any, ...]]) -> bool:
        """`step_one`'s walk over the event in `prepared`'s columns again, on the scratch twin
        (`prepare_dry`): the engine's own code runs, nothing of the engine changes. True if the
        walk took the decision step (the model and the policy on copies, orders `dry_act`)."""
        dry = getattr(self, "_dry", None)
        return dry is not None and dry.walk(prepared)

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


class _IdleVenue:
    """The twin's venue: no order in flight and none resting, so the walk never matches."""

    __slots__ = ()
    due_ts: Final = MAX_TS
    n_resting: Final = 0

    def process_due(self, ts: int, market: object, fills: object) -> None:
        raise InvariantViolation("the dry walk reached the venue (nothing is in flight there)")

    def on_market(self, market: object, fills: object) -> None:
        raise InvariantViolation("the dry walk reached the venue (nothing rests there)")


class _ScratchClock:
    """The twin's clock: takes any event time (the real clock is never advanced)."""

    __slots__ = ("_now",)

    def __init__(self) -> None:
        self._now = 0

    def now(self) -> int:
        return self._now

    def advance_to(self, ts: int) -> None:
        self._now = ts


class _ScratchRecorder:
    """One scratch row per decision column, never a full chunk: the walk writes row 0."""

    __slots__ = ("chunk_rows", "views")

    def __init__(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.chunk_rows = 2
        self.views = {name: np.zeros(1, dtype=a.dtype).data for name, a in arrays.items()}


class _DryFeatures:
    """The twin's feature stage: no event reaches the real stage; `compute` hands on a copy
    of its vector; ready only where the twin may decide."""

    __slots__ = ("_decides", "_features", "_scratch", "names", "vector")

    def __init__(self, features: FeatureStage, decides: bool) -> None:
        self._features, self._decides = features, decides
        self.names = features.names
        self.vector = self._scratch = np.empty_like(features.vector)

    @property
    def ready(self) -> bool:
        return self._decides and self._features.ready

    def on_quote(
        self, ts_recv: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> None:
        pass

    def on_trade(self, ts_recv: int, px: float, sz: float, side: int) -> None:
        pass

    def on_book(self, ts_recv: int, levels: Any, row: int) -> None:  # noqa: ANN401
        pass

    def book_columns(self, batch: Any) -> object:  # noqa: ANN401
        return self._features.book_columns(batch)

    def compute(self) -> FeatureVector:
        scratch = self._scratch
        scratch[...] = self._features.vector
        return scratch

    def reset(self) -> None:
        pass


class _DryTwin:
    """A shallow copy of a LiveEngine whose mutable parts are scratch copies (state, market,
    portfolio, clock, record row) or stand-ins (an idle venue, a feature stage that takes no
    event, an `act` that only runs `dry_act`), so `Engine._walk` runs its own code on it and
    changes nothing of the engine. What stays shared is only read: the event's columns, the
    view (for the policy), the risk checks. The model's output vector is written, as by
    every dry pass (the engine reads it only right after its own predict)."""

    __slots__ = ("_engine", "_features", "_state", "_twin")

    def __init__(
        self, engine: LiveEngine, runner: ModelRunner | None, policy: Policy | None
    ) -> None:
        real = engine._pipeline
        decides = runner is not None and policy is not None
        self._features = features = _DryFeatures(real.features, decides)
        twin: Any = copy.copy(engine)  # Any: its parts are replaced by scratch ones below
        twin.state = self._state = copy.copy(engine.state)
        self._state.fills = []
        twin._market = copy.copy(engine._market)
        twin._portfolio = copy.copy(engine._portfolio)
        twin._venue = _IdleVenue()
        twin._clock = _ScratchClock()
        twin._recorder = _ScratchRecorder(engine._recorder.arrays)
        twin._pipeline = Pipeline(
            features=features,
            runner=real.runner if runner is None else runner,
            policy=real.policy if policy is None else policy,  # neither is called if not decides
            risk=real.risk,
            instrument=real.instrument,
        )
        twin._has_target = hasattr(twin._pipeline.policy, "target")
        twin.act = self._act
        twin._bound = None  # bound at its first walk, as the engine at its first step
        self._twin, self._engine = twin, engine

    def _act(
        self, intents: Sequence[Intent], ts: int, p: float, t0: int, t3: int, slot: int
    ) -> bool:
        self._engine.dry_act(intents)
        return False  # nothing sent

    def walk(self, prepared: list[tuple[Any, ...]]) -> bool:
        state, real = self._state, self._engine.state
        for name in _STATE_FIELDS:  # the twin starts from the engine's state as it is now
            setattr(state, name, getattr(real, name))
        self._twin._portfolio.cash = self._engine._portfolio.cash
        decides = self._features.ready
        self._twin._walk(prepared, _ROW0, _ROW0, 0)
        return decides


__all__ = ["LiveEngine", "RecordedStamp", "WallClockStamp"]
