"""The network -> pipeline hand-off: run on the receiving thread while the pipeline keeps up,
through the inbox otherwise, frames always consumed in receive order (the live/replay parity
rests on it)."""

from __future__ import annotations

import itertools
import threading
import time

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


class _Pending:
    """Messages websockets holds that the reader has not handed on yet (a burst)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def _setup(backlog: int = 50) -> tuple[Handoff, _Pipeline, Stamper, _Pending]:
    pipeline, pending = _Pipeline(), _Pending()
    inbox = Inbox(100, conflatable=lambda stream: stream.endswith("@bookTicker"), backlog=backlog)
    handoff = Handoff(inbox, pipeline, pending=pending)
    return handoff, pipeline, Stamper(itertools.count(1).__next__), pending


def _frame(stamper: Stamper, stream: str = "x@trade") -> Frame:
    return stamper.stamp(1, Direction.IN, stream, b"{}")


def _me(*seqs: int) -> list[tuple[str, int]]:
    return [(threading.current_thread().name, seq) for seq in seqs]


def test_an_idle_pipeline_runs_the_frame_on_the_receiving_thread():
    handoff, pipeline, stamper, _ = _setup()
    for _ in range(3):
        handoff.offer(_frame(stamper))
    assert pipeline.ran == _me(0, 1, 2)
    assert (handoff.stats.frames, handoff.stats.inline, handoff.stats.handed_off) == (3, 3, 0)
    assert handoff.inbox.empty()
    assert not handoff.consume(0.0)  # nothing was queued


def test_a_burst_is_stamped_whole_then_run_by_the_reader():
    handoff, pipeline, stamper, pending = _setup(backlog=3)
    pending.n = 4
    for _ in range(4):  # more of the burst already received: stamp and queue, run nothing yet
        handoff.offer(_frame(stamper, "x@bookTicker"))
        pending.n -= 1
    assert pipeline.ran == []
    handoff.offer(_frame(stamper, "x@bookTicker"))  # the last one: the reader runs them all
    # once 3 quotes waited (the backlog) each newer one replaced the latest waiting (counted)
    assert pipeline.ran == _me(0, 1, 4)
    assert handoff.inbox.stats.conflated == 2
    assert (handoff.stats.inline, handoff.stats.handed_off) == (3, 0)


def test_the_consumer_thread_runs_what_waits_when_the_reader_cannot():
    handoff, pipeline, stamper, pending = _setup()
    pending.n = 5  # the reader is inside a long burst
    for _ in range(3):
        handoff.offer(_frame(stamper))
    assert handoff.consume(0.0)
    assert [seq for _, seq in pipeline.ran] == [0, 1, 2]
    assert (handoff.stats.inline, handoff.stats.handed_off) == (0, 3)


def test_while_the_pipeline_runs_later_frames_queue_and_never_overtake():
    handoff, pipeline, stamper, _ = _setup()
    pipeline.release.clear()
    reader = threading.Thread(target=handoff.offer, args=(_frame(stamper),), name="reader")
    reader.start()  # runs frame 0 and blocks inside the pipeline
    assert pipeline.entered.wait(5.0)
    handoff.offer(_frame(stamper))  # the pipeline is busy: queued
    handoff.offer(_frame(stamper))
    assert not handoff.inbox.empty()
    pipeline.release.set()
    reader.join(5.0)
    handoff.offer(_frame(stamper))  # idle again: what waits runs first, then this one
    assert pipeline.ran == [("reader", 0), *_me(1, 2, 3)]
    assert handoff.inbox.empty()


def test_a_tick_is_stamped_and_queued_atomically_and_runs_in_stamp_order():
    handoff, pipeline, stamper, _ = _setup()
    handoff.tick(lambda: stamper.stamp(0, Direction.TIMER, "", b""))
    assert pipeline.ran == []  # a tick never runs on the timer thread
    handoff.offer(_frame(stamper))
    assert pipeline.ran == _me(0, 1)


def test_an_error_in_the_inline_path_is_raised_in_the_consumer_thread():
    handoff, pipeline, stamper, _ = _setup()
    pipeline.fail_on = 1
    for _ in range(3):
        handoff.offer(_frame(stamper))  # the reader never sees the error
    with pytest.raises(RuntimeError, match="pipeline failed on frame 1"):
        handoff.check()
    assert [seq for _, seq in pipeline.ran] == [0]  # after the failure nothing ran inline
    assert len(handoff.inbox) == 1  # frame 2 was queued (recorded raw, never run)
    with pytest.raises(RuntimeError, match="pipeline failed on frame 1"):
        handoff.consume(0.0)  # the consumer runs nothing more through a failed pipeline
    assert [seq for _, seq in pipeline.ran] == [0]


def test_an_error_in_the_consumer_thread_stops_the_inline_path_too():
    handoff, pipeline, stamper, pending = _setup()
    pipeline.fail_on = 1
    pending.n = 1  # a burst: queued for the consumer thread
    handoff.offer(_frame(stamper))
    handoff.offer(_frame(stamper))
    pending.n = 0
    with pytest.raises(RuntimeError, match="pipeline failed on frame 1"):
        handoff.consume(0.0)
    handoff.offer(_frame(stamper))  # the pipeline is free again, but failed: queued, not run
    assert [seq for _, seq in pipeline.ran] == [0]
    assert len(handoff.inbox) == 1
    with pytest.raises(RuntimeError, match="pipeline failed on frame 1"):
        handoff.check()


def test_a_burst_leaves_the_consumer_thread_asleep_and_a_tick_wakes_it():
    handoff, pipeline, stamper, pending = _setup()
    woke: list[bool] = []
    consumer = threading.Thread(target=lambda: woke.append(handoff.inbox.wait(3.0)))
    consumer.start()
    time.sleep(0.05)  # it waits for frames
    pending.n = 2
    handoff.offer(_frame(stamper))  # queued inside the burst: the reader runs it at the end
    pending.n = 1
    handoff.offer(_frame(stamper))
    pending.n = 0
    handoff.offer(_frame(stamper))  # the burst's last: this thread runs all three
    consumer.join(0.3)
    assert consumer.is_alive()  # no wake-up (and GIL fight) per frame, nor per burst
    assert woke == []
    assert pipeline.ran == _me(0, 1, 2)
    handoff.tick(lambda: stamper.stamp(0, Direction.TIMER, "", b""))  # nobody else runs it
    consumer.join(1.0)
    assert woke == [True]


class _SlowPipeline(_Pipeline):
    def __call__(self, frames: list[Frame]) -> None:
        time.sleep(0.002 * len(frames))
        super().__call__(frames)


@pytest.mark.parametrize("runner", ["reader", "consumer"])
def test_whoever_runs_frames_times_the_run_for_the_conflation_rule(runner):
    """A pipeline 2 ms a frame with a 1 ms budget: once its runs are timed (by the reader's
    inline runs or the consumer thread's), a quote waiting is more work than the budget, and
    the next one replaces it."""
    pending = _Pending()
    inbox = Inbox(100, conflatable=lambda stream: stream.endswith("@bookTicker"), backlog=50,
                  conflate_after_ns=1e6)  # fmt: skip
    handoff = Handoff(inbox, _SlowPipeline(), pending=pending)
    stamper = Stamper(itertools.count(1).__next__)
    pending.n = 0 if runner == "reader" else 5  # in a burst the reader leaves them queued
    for _ in range(2):
        handoff.offer(_frame(stamper))
    if runner == "consumer":
        assert handoff.consume(0.0)
    assert inbox.cost_ns >= 2e6
    pending.n = 5
    for _ in range(3):
        handoff.offer(_frame(stamper, "x@bookTicker"))
    assert inbox.stats.conflated == 2
