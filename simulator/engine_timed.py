"""The engine's simulated-time scheduler part: the pipeline as a server (see `SimulatedTime`).

Same step order as `Engine` (engine.py), with one change of meaning: an event *arrives* at its
receive time (plus any feed delay) and the venue's market is updated then, but the pipeline
*starts* on it only when free, and its decision and order happen at start + service time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Final

import numpy as np

from simulator.engine import BOOK, ORDERS, QUOTE, STATUS, TIMER, TRADE, Engine
from simulator.market import MAX_TS
from simulator.sources.merge import MergedBatch
from simulator.timing import DECISION, FEATURES, INFERENCE, ORDER, RISK, ServiceModel


@dataclass(frozen=True, slots=True)
class TimeModel:
    """The pipeline in simulated time (see `SimulatedTime`).

    `service` gives each stage's time; `feed_ns` delays every event's arrival (for sessions
    whose receive time is only the venue's time); `conflate_latest` skips a quote or book
    event when a newer one of the same source has arrived by the time it would start;
    `queue_bound` (0 = none) drops an event that finds that many events waiting.
    `pipelined`: each stage (features, inference, decision, risk + order) is its own server
    with its own queue, as stages on separate threads would run; otherwise the whole pipeline
    is one server.
    """

    service: ServiceModel
    feed_ns: int = 0
    conflate_latest: bool = False
    queue_bound: int = 0
    pipelined: bool = False


STAGE_SERVERS: Final = 4  # pipelined: features, inference, decision, risk + order


class SimulatedTime:
    """The simulated-time scheduler part of an Engine (runtime.py picks it): an event arrives
    at its receive time (plus the feed delay) and the venue's market is updated then, but the
    pipeline starts on it only when free, and its decision and order happen at start +
    service time. Single server: the next event starts when the whole pipeline is done.
    Pipelined: stage k of an event starts when stage k-1 of it is done and stage k is free, so
    the next event's features may run while this one's model does."""

    def __init__(self, time_model: TimeModel) -> None:
        self._time = time_model
        self._free = [0] * STAGE_SERVERS  # pipelined: when each stage is free again
        self._busy_until = 0  # when the first stage (the whole pipeline if one server) is free
        self._waiting: deque[int] = deque()  # start times of accepted events not yet started

    def walk(  # noqa: C901 - the timed hot loop, one frame like Engine._walk (STYLE B0)
        self, engine: Engine, parts: list[tuple[Any, ...]], merged: MergedBatch, slot: int
    ) -> int:
        """Steps 1-7 of the engine with the pipeline in simulated time: an event arrives (feed
        delay added), the venue's market is updated at once, and the pipeline starts on it
        when free (waiting counted in `queue_ns`)."""
        state, market, venue = engine.state, engine.market, engine.venue
        recorder = engine.recorder
        time = self._time
        views, fills = recorder.views, state.fills
        feed, bound, waiting = time.feed_ns, time.queue_bound, self._waiting
        next_same = _next_same_source_ts(merged) if time.conflate_latest else None
        advance_to = engine.clock.advance_to
        for k, (part_index, row) in enumerate(
            zip(merged.order_part, merged.order_row, strict=True)
        ):
            kind, ts_col, a, b, c, d, levels, _bundle, _decides = parts[part_index]
            ts = ts_col[row] + feed
            advance_to(ts)  # 1.
            if ts >= state.day_end:
                engine.new_day(ts)
            if venue.due_ts < ts:  # 2.
                venue.process_due(ts - 1, market, fills)
            if kind == TRADE:  # the venue's market is the truth at arrival
                market.last_trade_px, market.last_trade_ts = a[row], ts
                market.last_trade_sz, market.last_trade_side = b[row], c[row]
                market.n_trades += 1
            elif kind < TIMER:
                market.bid_px, market.bid_sz, market.ask_px, market.ask_sz = (
                    a[row],
                    b[row],
                    c[row],
                    d[row],
                )
                market.ts_recv = state.last_market_ts = ts
                market.book_columns, market.book_row = levels, row
            elif kind == ORDERS:
                market.order_event, market.order_id, market.order_side = a[row], b[row], c[row]
                market.order_px, market.order_sz, market.order_ts = d[row], levels[row], ts
                market.n_order_events += 1
            if venue.n_resting:  # 4.
                venue.on_market(market, fills)
            while waiting and waiting[0] <= ts:
                waiting.popleft()
            start = ts if ts >= self._busy_until else self._busy_until
            skip = 0
            if bound and len(waiting) >= bound:
                skip, state.n_dropped = 2, state.n_dropped + 1
            elif next_same is not None and kind in (QUOTE, BOOK) and next_same[k] + feed <= start:
                skip, state.n_skipped = 1, state.n_skipped + 1
            p, target = math.nan, state.position
            if not skip:
                p, target, waited = self._serve(engine, parts[part_index], row, ts, start, slot)
                views["queue_ns"][slot] = start - ts + waited
                waiting.append(start)
            if venue.due_ts <= ts:  # 6.
                venue.process_due(ts, market, fills)
            if fills:  # 7.
                engine.settle(fills)
            _record(engine, slot, ts, kind, p, target, skip)
            slot += 1
            if slot == recorder.chunk_rows:
                recorder.flush(slot)
                slot = 0
        return slot

    def _serve(  # noqa: C901 - the stage sequence of one event, in one frame
        self, engine: Engine, part: tuple[Any, ...], row: int, ts: int, start: int, slot: int
    ) -> tuple[float, float, int]:
        """Features, model, decision and order for one event whose first stage starts at
        `start`: returns (p, target, time waited between stages); sets when stages are free."""
        state, pipeline, views = engine.state, engine.pipeline, engine.recorder.views
        service, free, pipelined = self._time.service.service_ns, self._free, self._time.pipelined
        features = pipeline.features
        kind, _, a, b, c, d, _, bundle, decides = part
        t0 = perf_counter_ns()
        if kind == TRADE:
            features.on_trade(ts, a[row], b[row], c[row])
        elif kind == BOOK:
            features.on_book(ts, bundle, row)
        elif kind == QUOTE:
            features.on_quote(ts, a[row], b[row], c[row], d[row])
        elif kind == STATUS:
            engine.on_status(ts, a[row])
        if kind < TIMER:
            state.mid = (engine.market.bid_px + engine.market.ask_px) * 0.5
        t1 = perf_counter_ns()
        views["features_ns"][slot] = t1 - t0
        now = self._busy_until = free[0] = start + service(FEATURES, t1 - t0)
        p, target, waited = math.nan, state.position, 0
        if decides and features.ready:
            out = pipeline.runner.predict(features.compute(), state.n_events)
            p = float(out[0])
            t2 = perf_counter_ns()
            intents = pipeline.policy.decide(out, engine.view)
            t3 = perf_counter_ns()
            policy = pipeline.policy
            target = policy.target if engine.has_target else math.nan  # type: ignore[attr-defined]
            views["inference_ns"][slot], views["decision_ns"][slot] = t2 - t1, t3 - t2
            for stage, ns in ((1, service(INFERENCE, t2 - t1)), (2, service(DECISION, t3 - t2))):
                if pipelined and free[stage] > now:
                    waited, now = waited + free[stage] - now, free[stage]
                now = free[stage] = now + ns
            if intents:
                if pipelined and free[3] > now:
                    waited, now = waited + free[3] - now, free[3]
                risk_ns = service(RISK, 0)  # risk and order run inside act() at `now`
                if engine.act(intents, now + risk_ns, p, t0, t3, slot):
                    now += risk_ns + service(ORDER, views["order_ns"][slot])
                else:
                    now += risk_ns
                free[3] = now
        if not pipelined:  # one server: the next event starts when this one is done
            self._busy_until = now
        return p, target, waited


def _record(
    engine: Engine, slot: int, ts: int, kind: int, p: float, target: float, skip: int
) -> None:
    state, views, portfolio = engine.state, engine.recorder.views, engine.portfolio
    mid = state.mid
    if mid == mid:  # the portfolio marks equity, peak and drawdown (its one definition)
        state.equity = portfolio.mark(mid)
        state.peak_equity, state.max_drawdown = portfolio.peak_equity, portfolio.max_drawdown
    views["ts_recv"][slot], views["kind"][slot], views["p"][slot] = ts, kind, p
    views["target"][slot], views["position"][slot] = target, state.position
    views["equity"][slot], views["skip"][slot] = state.equity, skip
    state.n_events += 1


def _next_same_source_ts(merged: MergedBatch) -> list[int]:
    """For each event of the batch, the receive time of the next event of the same source in
    the batch (MAX_TS when none): a quote is stale if that one has already arrived."""
    # a part index past the parts is a quiet copy of one (strategy.decide = "timestamp")
    order_part = np.asarray(merged.order_part, dtype=np.int64) % len(merged.parts)
    order_row = np.asarray(merged.order_row, dtype=np.int64)
    ts = np.empty(len(order_part), dtype=np.int64)
    for index, part in enumerate(merged.parts):
        mine = order_part == index
        ts[mine] = part.ts_recv[order_row[mine]]
    out = np.full(len(order_part), MAX_TS, dtype=np.int64)
    for index in range(len(merged.parts)):
        positions = np.flatnonzero(order_part == index)
        out[positions[:-1]] = ts[positions[1:]]
    return out.tolist()
