"""The one event loop. It knows the stage order and the protocols, nothing concrete.

Per event, in this fixed order (the same in replay and live):
  1. clock.advance_to(ts_recv)
  2. venue: orders that reached the venue before this event are matched against the market
     as it was (so an order latency visibly changes fills)
  3. market state + features update (a timer tick changes neither; a feed status event
     from live mode sets the feed health that risk reads and reaches the features that
     define `on_status`; an order-level event is only handed to the venue's market)
                                                                            [stage: features]
  4. venue: resting limit orders are checked against the new market state; the fills of 2
     and 4 settle now (portfolio, the view's position, cash and equity, the fills table), so
     the decision sees the position they leave
  5. on quote, book, timer and status events (not trades, not order-level events), once
     the features are ready — with `strategy.decide = "timestamp"` only on the last event
     of each timestamp, after every row sharing it (hftbacktest decides so):
       inference -> policy (outputs + view -> intents) -> (per intent) risk -> order
                                      [stages: inference, decision, risk, order, tick_to_trade]
  6. venue: orders due now (zero latency) are matched against the current market
  7. the fills of 6 settle; equity is marked to mid; the event's row is recorded
Ties between sources are broken by the merge order (ts_recv, source priority, seq).

The order is written once, in `Engine._walk`; modes differ only by parts. A *scheduler* part
(engine_timed.SimulatedTime: one server, or pipelined stages) is asked only what simulated
time changes: the event arrives at ts_recv + the feed delay (that is its `ts` in 1-7); in 3 the
venue's market is updated at arrival but the features run only if the pipeline serves the
event (a skipped one, conflated or dropped by the queue bound, is counted and recorded in
`skip`); in 5 the stages take service time from the pipeline's start, so a decision is dated
later than its event; its waiting is recorded in `queue_ns`. Without a scheduler each event
is served at once. A *decision stamp* part dates each decision for the venue: the
scheduler's time, the wall clock live, or recorded decision times for parity (with either).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from time import perf_counter_ns
from typing import Any, Final, Protocol

import numpy as np

from simulator.clock import next_day_start
from simulator.errors import InvariantViolation
from simulator.instruments import WHOLE_UNITS, Instrument
from simulator.intents import Cancel, CancelReplace, Intent, LimitOrder, MarketOrder, OpenOrder
from simulator.market import MAX_TS, MarketState
from simulator.protocols import (
    Clock,
    FeatureStage,
    ModelRunner,
    Policy,
    PortfolioLike,
    RiskGate,
    Venue,
)
from simulator.recording import Rejection, RunRecorder
from simulator.sources.merge import MergedBatch, merge
from simulator.sources.recorded import BatchSource, EventBatch
from simulator.types import (
    CancelRequest,
    Fill,
    OrderRequest,
    OrderType,
    RejectReason,
    StatusCode,
)

QUOTE: Final = 0
TRADE: Final = 1
BOOK: Final = 2
TIMER: Final = 3
STATUS: Final = 4
ORDERS: Final = 5  # order-level events (the l3_fifo queue at the venue reads them)
KIND_CODES: Final = {
    "quotes": QUOTE,
    "trades": TRADE,
    "book": BOOK,
    "timer": TIMER,
    "status": STATUS,
    "orders": ORDERS,
}
SERVED: Final = 0  # a scheduler's answers (Scheduler.admit), as recorded in decisions.skip
CONFLATED: Final = 1  # a newer quote of the same source had arrived by its start
DROPPED: Final = 2  # the queue bound was reached
FEED_DOWN_CODES: Final = frozenset({StatusCode.DISCONNECTED, StatusCode.BOOK_RESET})
FEED_UP_CODES: Final = frozenset({StatusCode.CONNECTED, StatusCode.BOOK_SYNCED})
# tuples, not `A | B`: a union in isinstance() is built anew on every call (~30 ns per intent)
_NEW_ORDERS: Final = (MarketOrder, LimitOrder)
_CANCELS: Final = (Cancel, CancelReplace)


@dataclass(slots=True)
class Pipeline:
    """The strategy's stages, in the order the engine calls them; `instrument` puts the
    policy's limit prices on its tick (Instrument.limit_price)."""

    features: FeatureStage
    runner: ModelRunner
    policy: Policy
    risk: RiskGate
    instrument: Instrument = WHOLE_UNITS


@dataclass(slots=True)
class EngineState:
    """Mutable run state shared with risk checks (they read it, never write it)."""

    now: int = 0
    position: float = 0.0
    mid: float = math.nan
    equity: float = 0.0
    peak_equity: float = 0.0
    day_start_equity: float = 0.0  # equity when the venue's current day began
    day_end: int = 0  # first ns of the next venue day (0: not known before the first event)
    last_market_ts: int = 0
    max_drawdown: float = 0.0
    n_skipped: int = 0  # conflated away (a newer quote was waiting)
    n_dropped: int = 0  # refused by the queue bound
    n_under_minimum: int = 0  # orders the policy did not send, under the minimum notional
    model_healthy: bool = True
    feed_ok: bool = True  # live feed status: False while disconnected or the book is resetting
    n_status: int = 0
    n_events: int = 0
    next_order_id: int = 1
    fills: list[Fill] = field(default_factory=list)


class EngineView:
    """The StrategyView a policy reads (protocols.StrategyView).

    `position` and `cash` are plain fields the engine rewrites when fills settle (a policy
    reads them on every decision); the rest reads the engine's live objects on access.
    """

    __slots__ = ("_clock", "_market", "_state", "_venue", "cash", "instrument", "position")

    def __init__(
        self,
        clock: Clock,
        market: MarketState,
        state: EngineState,
        venue: Venue,
        instrument: Instrument = WHOLE_UNITS,
    ) -> None:
        self._clock, self._market, self._state, self._venue = clock, market, state, venue
        self.instrument = instrument  # the pipeline's: a policy sizes in its lots
        self.position = 0.0
        self.cash = 0.0

    @property
    def now(self) -> int:
        return self._clock.now()

    @property
    def equity(self) -> float:
        return self._state.equity

    @property
    def bid_px(self) -> float:
        return self._market.bid_px

    @property
    def bid_sz(self) -> float:
        return self._market.bid_sz

    @property
    def ask_px(self) -> float:
        return self._market.ask_px

    @property
    def ask_sz(self) -> float:
        return self._market.ask_sz

    @property
    def mid(self) -> float:
        return self._state.mid

    @property
    def market(self) -> MarketState:
        return self._market

    @property
    def order_in_flight(self) -> bool:
        return self._venue.due_ts != MAX_TS

    @property
    def open_orders(self) -> list[OpenOrder]:
        return self._venue.open_order_list()


class DecisionStamp(Protocol):
    """The part that dates a decision: `stamp(ts, event_index)` turns the time the engine's
    scheduler decided at (the event's receive time, or simulated time) into the decision
    time the venue sees; `finish()` checks what the run used of it (at the end)."""

    def stamp(self, ts: int, event_index: int) -> int: ...
    def finish(self) -> None: ...


class EventTime:
    """Decisions are dated by the scheduler's own time (replay, stress, simulated time)."""

    __slots__ = ()

    def stamp(self, ts: int, event_index: int) -> int:
        return ts

    def finish(self) -> None:
        """Nothing to check."""


class Scheduler(Protocol):
    """The part that places the pipeline's work in time. The engine's one step loop asks it
    only what differs from running each event at once (engine_timed.SimulatedTime: a single
    server or pipelined stages); without one the engine asks nothing (`Immediate`).

    Per merged batch `batch`; per event `admit` at arrival (feed delay included in `ts`;
    SERVED, CONFLATED or DROPPED, as recorded in decisions.skip); for a served event
    `order_time` (the decision's date) and `ordered` around sending a decision's intents, and
    `done` at its end (returns its queueing delay). Both get the measured stage times
    (features, inference, decision; -1 for stages that did not run)."""

    @property
    def feed_ns(self) -> int:
        """Added to every event's receive time: its arrival."""

    def batch(self, merged: MergedBatch) -> None: ...
    def admit(self, ts: int, kind: int, k: int) -> int: ...
    def order_time(self, features_ns: int, inference_ns: int, decision_ns: int) -> int: ...
    def ordered(self, sent: bool, order_ns: int) -> None: ...
    def done(self, features_ns: int, inference_ns: int, decision_ns: int) -> int: ...


class Immediate:
    """No scheduler: every event arrives at its receive time and is served at once, each
    decision dated at its event. The engine knows this one and does not call it per event."""

    __slots__ = ("_ts",)
    feed_ns = 0

    def __init__(self) -> None:
        self._ts = 0

    def batch(self, merged: MergedBatch) -> None:
        """Nothing to look ahead at."""

    def admit(self, ts: int, kind: int, k: int) -> int:
        self._ts = ts
        return SERVED

    def order_time(self, features_ns: int, inference_ns: int, decision_ns: int) -> int:
        return self._ts

    def ordered(self, sent: bool, order_ns: int) -> None:
        """No simulated time passes."""

    def done(self, features_ns: int, inference_ns: int, decision_ns: int) -> int:
        return 0


class Engine:
    """Replays sources through a pipeline into a recorder. Build one with runtime.py.

    Modes differ by the parts passed in, never by subclasses of the step order: a `scheduler`
    (None: immediate; SimulatedTime: one server or pipelined stages) and a decision `stamp`
    (event time, the wall clock live, recorded decision times for parity).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        sources: Sequence[BatchSource],
        market: MarketState,
        pipeline: Pipeline,
        venue: Venue,
        portfolio: PortfolioLike,
        recorder: RunRecorder,
        model_healthy: Callable[[], bool] = lambda: True,
        progress: Callable[[int], None] | None = None,
        time_zone: str = "UTC",
        scheduler: Scheduler | None = None,
        stamp: DecisionStamp | None = None,
        decide_per_timestamp: bool = False,
        warm: Callable[[], None] | None = None,  # begin() runs it: see simulator/warm.py
    ) -> None:
        self._warm = warm
        self._clock = clock
        self._sources = sources
        self._market = market
        self._pipeline = pipeline
        self._venue = venue
        self._portfolio = portfolio
        self._recorder = recorder
        self._model_healthy = model_healthy
        self._progress = progress
        self._time_zone = time_zone  # the venue's: its midnight resets the day's loss
        self._timed = scheduler is not None  # the step loop asks the scheduler only if so
        self._scheduler: Scheduler = Immediate() if scheduler is None else scheduler
        self._stamp: DecisionStamp = EventTime() if stamp is None else stamp
        self._per_timestamp = decide_per_timestamp  # strategy.decide = "timestamp"
        self._next_ts = MAX_TS  # receive time of the event after the current batch
        self._slot = 0  # next free row of the recorder's chunk
        self._bound: tuple[Any, ...] | None = None  # _walk's run-constant names (_bind)
        self.state = EngineState()
        self.view = EngineView(clock, market, self.state, venue, pipeline.instrument)
        self.view.cash = portfolio.cash
        # a policy may expose the position it aims at; recorded per decision when it does
        self._has_target = hasattr(pipeline.policy, "target")
        # looked up once: a stage without it costs status events nothing more
        self._feature_status: Callable[[int, int], None] | None = getattr(
            pipeline.features, "on_status", None
        )

    def run(self) -> EngineState:
        """Replay every event of the sources (see the module docstring for the step order)."""
        self.begin()
        for merged, next_ts in _with_next_ts(merge(self._sources)):
            self._next_ts = next_ts
            self.step(merged)
            if self._progress is not None:
                self._progress(self.state.n_events)
        return self.end()

    def begin(self) -> None:
        """A new session: stages reset, the model warmed (live mode calls this, then step())."""
        self._pipeline.runner.reset()
        self._pipeline.features.reset()
        self._pipeline.policy.reset()
        self._pipeline.runner.warm_up()
        if self._warm is not None:  # recorded history into the features and the model
            self._warm()
        self._slot = 0
        self._bound = None  # bound again at the first step

    def step(self, merged: MergedBatch) -> None:
        """Run the events of one merged batch."""
        parts = [self._prepare(part) for part in merged.parts]
        if self._per_timestamp:
            parts, merged = _quiet_ties(parts, merged, self._next_ts)
        if self._timed:
            self._scheduler.batch(merged)
        self._slot = self._walk_merged(parts, merged, self._slot)

    @property
    def filled_rows(self) -> int:
        """Rows of the recorder's current chunk written so far."""
        return self._slot

    def end(self) -> EngineState:
        """Flush the last rows, mark the portfolio to the last mid, let the stamp check."""
        self._recorder.flush(self._slot)
        self._slot = 0
        self._portfolio.mark(self.state.mid)
        # a policy may count orders it did not send, being under the venue's minimum notional
        self.state.n_under_minimum = getattr(self._pipeline.policy, "n_under_minimum", 0)
        self._stamp.finish()
        return self.state

    @property
    def recorder(self) -> RunRecorder:
        return self._recorder

    def _walk_merged(self, parts: list[tuple[Any, ...]], merged: MergedBatch, slot: int) -> int:
        """Run one merged batch (live times each event on the wall: engine_live)."""
        return self._walk(parts, merged.order_part, merged.order_row, slot)

    def _prepare(self, batch: EventBatch) -> tuple[Any, ...]:
        """Per-batch column handles, so the per-event path does no lookups by name."""
        kind = KIND_CODES[batch.kind]
        c = batch.columns
        if kind == TRADE:
            return (kind, c["ts_recv"], c["px"], c["sz"], c["side"], None, None, None, False)
        if kind == TIMER:
            return (kind, c["ts_recv"], None, None, None, None, None, None, True)
        if kind == STATUS:
            return (kind, c["ts_recv"], c["code"], None, None, None, None, None, True)
        if kind == ORDERS:  # the size column rides in the `levels` slot
            order = (c["event_type"], c["order_id"], c["side"], c["px"], c["sz"])
            return (kind, c["ts_recv"], *order, None, False)
        if kind == QUOTE:
            top = (c["bid_px"], c["bid_sz"], c["ask_px"], c["ask_sz"])
            return (kind, c["ts_recv"], *top, (), None, True)
        levels = tuple(
            (c[f"bid_px_{i}"], c[f"bid_sz_{i}"], c[f"ask_px_{i}"], c[f"ask_sz_{i}"])
            for i in range(self._market.levels)
            if f"bid_px_{i}" in c
        )
        bundle = self._pipeline.features.book_columns(batch)
        top = (c["bid_px_0"], c["bid_sz_0"], c["ask_px_0"], c["ask_sz_0"])
        return (kind, c["ts_recv"], *top, levels, bundle, True)

    def _bind(self) -> tuple[Any, ...]:
        """The names `_walk` uses that do not change within a run (parts, the recorder's
        column views, which the recorder reuses chunk after chunk, bound methods), in its
        unpacking order. Live walks one event per call: binding these anew each call cost
        ~0.35 us of the ~1.1 us a call's setup took; begin() drops the tuple."""
        state, venue, pipeline, recorder = self.state, self._venue, self._pipeline, self._recorder
        views, features, policy = recorder.views, pipeline.features, pipeline.policy
        scheduler = self._scheduler
        columns = ("ts_recv", "kind", "p", "target", "position", "equity", "features_ns",
                   "inference_ns", "decision_ns", "order_ns", "queue_ns", "skip")  # fmt: skip
        return (
            state, self._market, venue, recorder, recorder.chunk_rows,
            *(views[name] for name in columns),
            self._clock.advance_to, features, features.on_quote, features.on_trade,
            features.on_book, features.compute, pipeline.runner.predict, policy, self.view,
            self._has_target, policy.decide, self.act, venue.process_due, venue.on_market,
            self._portfolio, state.fills, self._timed, scheduler, scheduler.feed_ns,
            scheduler.admit, scheduler.done,
        )  # fmt: skip

    def _walk(  # noqa: C901 - the hot loop: one frame on purpose (STYLE B0)
        self, parts: list[tuple[Any, ...]], order_part: memoryview, order_row: memoryview, slot: int
    ) -> int:
        """Run steps 1-7 for each event of one merged batch; return the next record slot.

        Every name used per event is bound to a local first: attribute and dict lookups
        are what a CPython hot loop spends its time on. The run-constant ones come from one
        tuple bound once per run (`_bind`), the state scalars are read here. The scheduler
        part is asked only where simulated time differs (behind `timed`, a local: the
        immediate path pays a few local tests per event, no calls): when the event arrives,
        whether the pipeline serves it, and when its stages and its decision happen.
        """
        bound = self._bound  # the run-constant names, bound once per run (live: one call an event)
        if bound is None:
            bound = self._bound = self._bind()
        (state, market, venue, recorder, chunk, v_ts, v_kind, v_p, v_target, v_position,
         v_equity, v_features, v_inference, v_decision, v_order, v_queue, v_skip, advance_to,
         features, on_quote, on_trade, on_book, compute, predict, policy, view, has_target,
         decide, act, process_due, on_market, portfolio, fills, timed, scheduler, feed, admit,
         done) = bound  # fmt: skip
        nan, clock = math.nan, perf_counter_ns
        last_out, out_view = None, memoryview(b"")  # p = output 0, read through a memoryview
        p: float
        position, equity, i = state.position, state.equity, state.n_events
        ready = features.ready  # once ready, a buffer stays ready until reset
        cash, peak, max_drawdown = portfolio.cash, state.peak_equity, state.max_drawdown
        day_end, mid = state.day_end, state.mid  # mid: state.mid, read once
        first, skip = i, 0  # skip: 0 served, else why not (decisions.skip); always 0 immediate
        for part_index, row in zip(order_part, order_row, strict=True):
            kind, ts_col, a, b, c, d, levels, bundle, decides = parts[part_index]
            ts = ts_col[row]
            if timed:  # the event arrives after the feed delay; the pipeline may skip it
                ts += feed
                skip = admit(ts, kind, i - first)
                if skip:
                    decides = False
                    v_skip[slot] = skip
                    if skip == CONFLATED:
                        state.n_skipped += 1
                    else:
                        state.n_dropped += 1
            advance_to(ts)  # 1.
            if ts >= day_end:
                day_end = self.new_day(ts)
            due = venue.due_ts
            if due < ts:  # 2. in-flight orders meet the market they arrive at
                process_due(ts - 1, market, fills)
                due = venue.due_ts
            t0 = clock()
            if kind == TRADE:  # 3. the venue's market, then (if served) the features
                market.last_trade_px = px = a[row]
                market.last_trade_ts = ts
                market.last_trade_sz = sz = b[row]
                market.last_trade_side = side = c[row]
                market.n_trades += 1  # resting orders' queues advance on each new trade
                if not skip:
                    on_trade(ts, px, sz, side)
            elif kind < TIMER:
                market.bid_px = bid_px = a[row]
                market.bid_sz = bid_sz = b[row]
                market.ask_px = ask_px = c[row]
                market.ask_sz = ask_sz = d[row]
                market.ts_recv = state.last_market_ts = ts
                # the mid the run is marked to is the pipeline's: set when it serves the event
                if bundle is None:
                    if not skip:
                        state.mid = mid = (bid_px + ask_px) * 0.5
                        on_quote(ts, bid_px, bid_sz, ask_px, ask_sz)
                else:
                    market.book_columns = levels
                    market.book_row = row
                    if not skip:
                        state.mid = mid = (bid_px + ask_px) * 0.5
                        on_book(ts, bundle, row)
            elif kind == STATUS:
                if not skip:
                    self.on_status(ts, a[row])
            elif kind == ORDERS:
                market.order_event, market.order_id, market.order_side = a[row], b[row], c[row]
                market.order_px, market.order_sz, market.order_ts = d[row], levels[row], ts
                market.n_order_events += 1
            t1 = clock()
            v_features[slot] = t1 - t0
            if venue.n_resting:  # 4.
                on_market(market, fills)
            if fills:  # fills of 2. and 4. settle before the decision: it sees the position
                position = self.settle(fills)
                cash = portfolio.cash
            if decides and (ready or (ready := features.ready)):  # 5. (read until ready)
                out = predict(compute(), i)
                if out is not last_out:
                    last_out, out_view = out, out.data
                p = out_view[0]
                t2 = clock()
                intents = decide(out, view)
                t3 = clock()
                v_inference[slot] = t2 - t1
                v_decision[slot] = t3 - t2
                target = policy.target if has_target else nan
                sent = False
                if intents:
                    state.n_events, state.max_drawdown = i, max_drawdown
                    if timed:  # dated when risk and order run in simulated time
                        at = scheduler.order_time(t1 - t0, t2 - t1, t3 - t2)
                        sent = act(intents, at, p, t0, t3, slot)
                        scheduler.ordered(sent, v_order[slot])
                    else:
                        sent = act(intents, ts, p, t0, t3, slot)
            else:  # no decision: p is NaN, the target the position held
                p, target, sent = nan, position, False
            if timed:  # the event is done (if served): how long it waited
                if skip:
                    v_features[slot] = -1  # the features did not run
                else:
                    v_queue[slot] = done(t1 - t0, v_inference[slot], v_decision[slot])
                    if kind == TRADE:  # a served trade marks to the market as it is now
                        state.mid = mid = (market.bid_px + market.ask_px) * 0.5
            if sent or due <= ts:  # 6.
                process_due(ts, market, fills)
            if fills:  # 7. (the fills of 6.)
                position = self.settle(fills)
                cash = portfolio.cash
            if mid == mid:  # marked to mid once there is a two-sided market (NaN before)
                equity = cash + position * mid
                if equity > peak:
                    peak = state.peak_equity = equity
                elif peak - equity > max_drawdown:
                    max_drawdown = peak - equity
                state.equity = equity
            v_ts[slot] = ts
            v_kind[slot] = kind
            v_p[slot] = p
            v_target[slot] = target
            v_position[slot] = position
            v_equity[slot] = equity
            i += 1
            slot += 1
            if slot == chunk:
                recorder.flush(slot)
                slot = 0
        state.position, state.equity, state.n_events = position, equity, i
        state.max_drawdown = max_drawdown
        # the portfolio owns equity, peak and drawdown: the loop above is Portfolio.mark
        # inlined (a call per event would cost ~150 ns), handed back once per batch
        portfolio.equity, portfolio.peak_equity, portfolio.max_drawdown = equity, peak, max_drawdown
        return slot

    def new_day(self, ts: int) -> int:
        """A venue day begins (or the run's first event): the day's loss counts from the
        equity now. Returns the next day boundary (cold: once per day)."""
        state = self.state
        state.day_start_equity = state.equity
        state.day_end = next_day_start(ts, self._time_zone)
        return state.day_end

    def on_status(self, ts: int, code: int) -> None:
        """A live feed status event: down on a disconnect or a book reset, up again on a
        connect or a book sync (other codes are recorded, not acted on). A feature stage
        with `on_status` (user features that define it) gets every status event too."""
        state = self.state
        state.n_status += 1
        if self._feature_status is not None:
            self._feature_status(ts, code)
        if code in FEED_DOWN_CODES:
            state.feed_ok = False
        elif code in FEED_UP_CODES:
            state.feed_ok = True

    def settle(self, fills: list[Fill]) -> float:
        """Fills reach the portfolio, the view and the run tables; return the new position.
        The view's equity follows at the current mid (step 7 marks it again, with the peak
        and the drawdown)."""
        for fill in fills:
            self._portfolio.on_fill(fill)
            self._recorder.tables.fills.append(fill)
        fills.clear()
        state, portfolio, view = self.state, self._portfolio, self.view
        state.position = view.position = position = portfolio.position
        view.cash = cash = portfolio.cash
        mid = state.mid
        if mid == mid:  # NaN before a two-sided market
            state.equity = cash + position * mid
        return position

    def act(
        self, intents: Sequence[Intent], ts: int, p: float, t0: int, t3: int, slot: int
    ) -> bool:
        """Risk-check and submit the intents of a decision the scheduler took at `ts`, dated
        by the stamp part (rare: cold enough to allocate)."""
        stamped = self._stamp.stamp(ts, self.state.n_events)
        return self.act_at(intents, stamped, p, t0, t3, slot)

    def act_at(
        self, intents: Sequence[Intent], ts_decision: int, p: float, t0: int, t3: int, slot: int
    ) -> bool:
        """Send the intents of one decision dated `ts_decision`; True when any order went."""
        sent = False
        for intent in intents:
            if isinstance(intent, _NEW_ORDERS):
                sent = self._send_order(intent, ts_decision, p, t0, t3, slot) or sent
            elif isinstance(intent, _CANCELS):
                sent = self._send_cancel(intent, ts_decision, slot) or sent
            else:
                raise InvariantViolation(
                    f"the policy returned {intent!r}; expected MarketOrder, LimitOrder, Cancel "
                    "or CancelReplace (simulator.intents)"
                )
        return sent

    def _send_cancel(self, intent: Cancel | CancelReplace, ts_decision: int, slot: int) -> bool:
        """A cancel goes straight to the venue (never risk-checked: it only reduces risk); a
        replace is risk-checked as the limit order it becomes."""
        request = CancelRequest(order_id=intent.order_id, ts_decision=ts_decision)  # type: ignore[arg-type]
        if isinstance(intent, CancelReplace):
            price, side = intent.price, self._venue.side_of(intent.order_id)
            if side is not None:  # else not open: the venue answers that, price unread
                price = self._pipeline.instrument.limit_price(price, side)
                order = OrderRequest(
                    order_id=intent.order_id,
                    ts_decision=ts_decision,  # type: ignore[arg-type]
                    side=side,
                    qty=intent.qty,
                    order_type=OrderType.LIMIT,
                    limit_px=price,
                )
                if not self._approved(order, price, slot):
                    return False
            request = CancelRequest(
                order_id=intent.order_id,
                ts_decision=ts_decision,  # type: ignore[arg-type]
                new_px=price,
                new_qty=intent.qty,
            )
        self._venue.submit_cancel(request)
        self._recorder.tables.cancels.append(request)
        return True

    def _approved(self, order: OrderRequest, price: float, slot: int) -> bool:
        """Run the risk chain on `order`; record a rejection by its reason's name. A limit
        price off the tick was rounded; NaN (not a finite price > 0) is BAD_PRICE."""
        state, risk = self.state, self._pipeline.risk
        state.now = order.ts_decision
        state.model_healthy = self._model_healthy()
        limit_px = order.limit_px
        if limit_px is not None and limit_px != limit_px:  # before any check reads it
            reason, name = int(RejectReason.BAD_PRICE), RejectReason.BAD_PRICE.name
        else:
            reason = risk.check(order, price, state)
            if reason == 0:
                return True
            name = risk.reason_name(reason)
        self._recorder.tables.rejections.append(
            Rejection(
                event_index=state.n_events,
                ts=order.ts_decision,
                side=int(order.side),
                qty=order.qty,
                reason=name,
                reason_code=reason,
            )
        )
        self._recorder.views["reject"][slot] = reason
        return False

    def _send_order(
        self, intent: MarketOrder | LimitOrder, ts_decision: int, p: float, t0: int, t3: int,
        slot: int,
    ) -> bool:  # fmt: skip
        """Risk-check a new order and submit it (rare: cold enough to allocate)."""
        state, pipeline = self.state, self._pipeline
        order, price = self._order_request(intent, ts_decision)
        approved = self._approved(order, price, slot)
        t4 = perf_counter_ns()
        views = self._recorder.views
        views["risk_ns"][slot] = t4 - t3
        if not approved:
            return False
        pipeline.risk.on_sent(ts_decision)
        self._venue.submit(order)
        t5 = perf_counter_ns()
        views["order_ns"][slot] = t5 - t4
        views["tick_to_trade_ns"][slot] = t5 - t0
        self._recorder.tables.orders.append(order)
        self._recorder.tables.order_p.append(p)
        views["order_id"][slot] = order.order_id
        state.next_order_id += 1
        return True

    def _order_request(
        self, intent: MarketOrder | LimitOrder, ts_decision: int
    ) -> tuple[OrderRequest, float]:
        """The request a new-order intent becomes, and the price it is expected to trade at
        (what risk reads): a limit price on the tick, never more aggressive than asked; a
        market order's opposite best."""
        side = intent.side
        if isinstance(intent, LimitOrder):
            price = self._pipeline.instrument.limit_price(intent.price, side)
            order_type, limit_px, post_only = OrderType.LIMIT, price, intent.post_only
        else:
            market = self._market
            price = market.ask_px if side > 0 else market.bid_px
            order_type, limit_px, post_only = OrderType.MARKET, None, False
        order = OrderRequest(
            order_id=self.state.next_order_id,
            ts_decision=ts_decision,  # type: ignore[arg-type]
            side=side,
            qty=intent.qty,
            order_type=order_type,
            limit_px=limit_px,
            post_only=post_only,
        )
        return order, price


def _with_next_ts(batches: Iterator[MergedBatch]) -> Iterator[tuple[MergedBatch, int]]:
    """Each merged batch with the receive time of the event after its last (MAX_TS at the
    end), so the last event of a timestamp is known even across batches."""
    held: MergedBatch | None = None
    for merged in batches:
        if held is not None:
            first = merged.parts[merged.order_part[0]]
            yield held, int(first.ts_recv[merged.order_row[0]])
        held = merged
    if held is not None:
        yield held, MAX_TS


def _quiet_ties(
    parts: list[tuple[Any, ...]], merged: MergedBatch, next_ts: int
) -> tuple[list[tuple[Any, ...]], MergedBatch]:
    """`strategy.decide = "timestamp"`: events followed by one with the same receive time point
    at copies of their part that do not decide (part index + number of parts)."""
    order_part = np.asarray(merged.order_part, dtype=np.int64)
    order_row = np.asarray(merged.order_row, dtype=np.int64)
    ts = np.empty(len(order_part), dtype=np.int64)
    for index, part in enumerate(parts):
        mine = order_part == index
        ts[mine] = np.asarray(part[1], dtype=np.int64)[order_row[mine]]
    tied = np.empty(len(ts), dtype=np.bool_)
    tied[:-1] = ts[1:] == ts[:-1]
    tied[-1] = ts[-1] == next_ts
    quiet = [(*part[:8], False) for part in parts]
    remapped = np.where(tied, order_part + len(parts), order_part)
    return [*parts, *quiet], replace(merged, order_part=remapped.data)
