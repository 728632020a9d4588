"""The engine's simulated-time scheduler part: the pipeline as a server (see `SimulatedTime`).

The step order is the Engine's (engine.py, written once); this part only answers the questions
in which simulated time differs from running each event at once: when an event arrives (its
receive time plus any feed delay), whether the pipeline skips it (conflated or dropped by the
queue bound), when its stages run, and so at what time its decision is dated.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np

from simulator.engine import BOOK, CONFLATED, DROPPED, QUOTE, SERVED
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
    the next event's features may run while this one's model does.

    The engine asks, per event: `admit` (at arrival), `order_time` and `ordered` (around
    sending a decision's intents), `done` (at the end of a served event); and `batch` once
    per merged batch.
    """

    __slots__ = ("_busy_until", "_free", "_next_same", "_now", "_pipelined", "_risk_ns",
                 "_service", "_start", "_time", "_ts", "_waited", "_waiting",
                 "feed_ns")  # fmt: skip

    def __init__(self, time_model: TimeModel) -> None:
        self._time = time_model
        self._service = time_model.service.service_ns
        self._pipelined = time_model.pipelined
        self.feed_ns = time_model.feed_ns  # added to every event's receive time
        self._free = [0] * STAGE_SERVERS  # pipelined: when each stage is free again
        self._busy_until = 0  # when the first stage (the whole pipeline if one server) is free
        self._waiting: deque[int] = deque()  # start times of accepted events not yet started
        self._next_same: list[int] | None = None  # conflation: see _next_same_source_ts
        # the event being served: its arrival, its start, simulated time so far (-1: its
        # stages not yet placed in time), time it waited between stages, its risk check's time
        self._ts = self._start = self._waited = self._risk_ns = 0
        self._now = -1

    def batch(self, merged: MergedBatch) -> None:
        """A new merged batch (conflation looks ahead at the same source's next event)."""
        if self._time.conflate_latest:
            self._next_same = _next_same_source_ts(merged)

    def admit(self, ts: int, kind: int, k: int) -> int:
        """Event `k` of the batch arrived at `ts` (feed delay included): SERVED when the
        pipeline will serve it (starting when free), or why not: CONFLATED (a newer quote of
        its source has arrived by the time it would start) or DROPPED (the queue is full)."""
        waiting = self._waiting
        while waiting and waiting[0] <= ts:
            waiting.popleft()
        start = ts if ts >= self._busy_until else self._busy_until
        bound = self._time.queue_bound
        if bound and len(waiting) >= bound:
            return DROPPED
        next_same = self._next_same
        if next_same is not None and kind in (QUOTE, BOOK) and next_same[k] + self.feed_ns <= start:
            return CONFLATED
        self._ts, self._start, self._waited, self._now = ts, start, 0, -1
        return SERVED

    def _stages(self, features_ns: int, inference_ns: int, decision_ns: int) -> None:
        """The served event's features, then (when they ran: not -1) its model and policy, in
        simulated time from its start (pipelined: each stage waits until it is free)."""
        service, free, pipelined = self._service, self._free, self._pipelined
        now = self._busy_until = free[0] = self._start + service(FEATURES, features_ns)
        if inference_ns >= 0:
            waited = self._waited
            for stage, ns in ((1, service(INFERENCE, inference_ns)),
                              (2, service(DECISION, decision_ns))):  # fmt: skip
                if pipelined and free[stage] > now:
                    waited, now = waited + free[stage] - now, free[stage]
                now = free[stage] = now + ns
            self._waited = waited
        self._now = now

    def order_time(self, features_ns: int, inference_ns: int, decision_ns: int) -> int:
        """The served event's decision sends intents (measured stage times given): when risk
        and order run (pipelined: once the last stage is free), the time they are dated at
        (after the risk check's time)."""
        self._stages(features_ns, inference_ns, decision_ns)
        free, now = self._free, self._now
        if self._pipelined and free[3] > now:
            self._waited, now = self._waited + free[3] - now, free[3]
        self._risk_ns = self._service(RISK, 0)  # risk and order run inside the engine's act
        self._now = now
        return now + self._risk_ns

    def ordered(self, sent: bool, order_ns: int) -> None:
        """The intents were risk-checked and, when `sent`, submitted (measured order time)."""
        now = self._now + self._risk_ns
        if sent:
            now += self._service(ORDER, order_ns)
        self._now = self._free[3] = now

    def done(self, features_ns: int, inference_ns: int, decision_ns: int) -> int:
        """The served event is done (measured stage times, -1 for stages that did not run):
        the next may start (one server); return the time it waited, for `queue_ns` (before
        its start and between stages)."""
        if self._now < 0:  # no intents: its stages are placed in time now
            self._stages(features_ns, inference_ns, decision_ns)
        if not self._pipelined:  # one server: the next event starts when this one is done
            self._busy_until = self._now
        self._waiting.append(self._start)
        return self._start - self._ts + self._waited


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
