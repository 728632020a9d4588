"""The network -> pipeline hand-off: inline while the pipeline keeps up, the inbox otherwise,
frames always consumed in receive order (the live/replay parity rests on it)."""

from __future__ import annotations

import itertools
import threading

import pytest

from simulator.live.frames import Direction, Frame, Stamper
from simulator.live.handoff import Handoff
from simulator.live.inbox import Inbox


class _Pipeline:
    """Records which thread ran which frames, in order; can block or fail on demand."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_on: int | None = None

    def __call__(self, frames: list[Frame]) -> None:
        for frame in frames:
            if frame.seq == self.fail_on:
                raise RuntimeError(f"pipeline failed on frame {frame.seq}")
            self.ran.append((threading.current_thread().name, frame.seq))
        self.entered.set()
        self.release.wait(5.0)


def _setup(pending: int = 0) -> tuple[Handoff, _Pipeline, Stamper]:
    pipeline = _Pipeline()
    inbox = Inbox(100, conflatable=lambda stream: stream.endswith("@bookTicker"), backlog=50)
    handoff = Handoff(inbox, pipeline, pending=lambda: pending)
    return handoff, pipeline, Stamper(itertools.count(1).__next__)


def _frame(stamper: Stamper, stream: str = "x@trade") -> Frame:
    return stamper.stamp(1, Direction.IN, stream, b"{}")


def test_an_idle_pipeline_runs_the_frame_on_the_receiving_thread():
    handoff, pipeline, stamper = _setup()
    for _ in range(3):
        handoff.offer(_frame(stamper))
    me = threading.current_thread().name
    assert pipeline.ran == [(me, 0), (me, 1), (me, 2)]
    assert (handoff.stats.inline, handoff.stats.queued) == (3, 0)
    assert handoff.inbox.empty()
    assert not handoff.consume(0.0)  # nothing was queued


def test_a_burst_already_received_goes_to_the_inbox_and_the_consumer_runs_it():
    handoff, pipeline, stamper = _setup(pending=2)
    for _ in range(3):
        handoff.offer(_frame(stamper))
    assert pipeline.ran == []  # the reader only queued: it reads the rest of the burst first
    assert handoff.consume(0.0)
    assert [seq for _, seq in pipeline.ran] == [0, 1, 2]
    assert (handoff.stats.inline, handoff.stats.queued) == (0, 3)


def test_while_the_pipeline_runs_later_frames_queue_behind_and_never_overtake():
    handoff, pipeline, stamper = _setup()
    pipeline.release.clear()
    first = _frame(stamper)
    reader = threading.Thread(target=handoff.offer, args=(first,), name="reader")
    reader.start()  # runs `first` inline and blocks inside the pipeline
    assert pipeline.entered.wait(5.0)
    handoff.offer(_frame(stamper))  # the pipeline is busy: queued
    handoff.offer(_frame(stamper))  # the inbox is not empty: queued behind it
    pipeline.release.set()
    reader.join(5.0)
    handoff.offer(_frame(stamper))  # idle again, but frames wait: queued, not run ahead
    assert handoff.consume(0.0)
    assert pipeline.ran == [("reader", 0)] + [
        (threading.current_thread().name, s) for s in (1, 2, 3)
    ]
    handoff.offer(_frame(stamper))  # drained: inline again
    assert pipeline.ran[-1][1] == 4
    assert handoff.stats.inline == 2


def test_a_tick_is_stamped_and_queued_atomically_with_the_inline_path():
    handoff, pipeline, stamper = _setup()
    handoff.tick(lambda: stamper.stamp(0, Direction.TIMER, "", b""))
    handoff.offer(_frame(stamper))  # a tick waits: the frame queues behind it
    assert pipeline.ran == []
    handoff.consume(0.0)
    assert [seq for _, seq in pipeline.ran] == [0, 1]


def test_an_error_in_the_inline_path_is_raised_in_the_consumer_thread():
    handoff, pipeline, stamper = _setup()
    pipeline.fail_on = 1
    for _ in range(3):
        handoff.offer(_frame(stamper))  # the reader never sees the error
    with pytest.raises(RuntimeError, match="pipeline failed on frame 1"):
        handoff.check()
    assert [seq for _, seq in pipeline.ran] == [0]  # after the failure nothing ran inline
    assert len(handoff.inbox) == 1  # frame 2 was queued for the shutdown path
