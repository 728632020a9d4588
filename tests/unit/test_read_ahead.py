"""The read-ahead thread of a Parquet source is stopped and joined when its run ends early
(Ctrl-C, an error): no thread may still be in Arrow's native code when the process exits."""

from __future__ import annotations

import threading

from simulator.sources.recorded import ParquetSource, stop_readers
from tests.factories import quotes, write


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ticktape-read-ahead" and t.is_alive()]


def test_stop_readers_joins_the_threads_of_an_abandoned_walk(tmp_path):
    path = write(quotes(5_000), tmp_path / "q.parquet", row_group_size=100)
    batches = ParquetSource(path, batch_rows=100).batches()
    next(batches)  # the walk stops here, as an interrupted engine does, the generator kept
    assert len(_readers()) == 1
    stop_readers()
    assert _readers() == []
    del batches


def test_stop_readers_leaves_other_threads_runs_alone(tmp_path):
    path = write(quotes(5_000), tmp_path / "q.parquet", row_group_size=100)
    walked: list[int] = []
    started, release = threading.Event(), threading.Event()

    def walk() -> None:
        batches = ParquetSource(path, batch_rows=100).batches()
        walked.append(next(batches).record.num_rows)
        started.set()
        release.wait(10)
        walked.extend(b.record.num_rows for b in batches)

    other = threading.Thread(target=walk)
    other.start()
    assert started.wait(10)
    stop_readers()  # this thread has no run: the other thread's reader goes on
    release.set()
    other.join(10)
    assert sum(walked) == 5_000
