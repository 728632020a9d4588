"""Timer events: a source like any other, merged into the same (ts_recv, priority, seq) order.

A timer tick lets the pipeline re-decide on its latest features when no market data arrives
(so a stale-data check can act during a feed gap). Ticks carry only a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import pyarrow as pa

from simulator.errors import ConfigError
from simulator.sources.recorded import DEFAULT_BATCH_ROWS, EventBatch

TIMER_KIND: Final = "timer"


class TimerSource:
    """Ticks every `interval_ns` from `start_ns` up to and including `end_ns`."""

    def __init__(
        self,
        start_ns: int,
        end_ns: int,
        interval_ns: int,
        *,
        priority: int,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        if interval_ns <= 0:
            raise ConfigError(f"timer interval must be > 0 ns; found {interval_ns}")
        self.name = f"timer every {interval_ns / 1e6:g} ms"
        self.kind = TIMER_KIND
        self.priority = priority
        self._start, self._end, self._interval = start_ns, end_ns, interval_ns
        self._batch_rows = batch_rows

    def __len__(self) -> int:
        return max(0, (self._end - self._start) // self._interval + 1)

    def batches(self) -> Iterator[EventBatch]:
        total = len(self)
        for first in range(0, total, self._batch_rows):
            n = min(self._batch_rows, total - first)
            ts = self._start + (first + np.arange(n, dtype=np.int64)) * self._interval
            record = pa.record_batch({"ts_event": ts, "ts_recv": ts})
            seq = np.arange(first, first + n, dtype=np.int64)
            yield EventBatch(
                source=self.priority,
                kind=TIMER_KIND,
                first_row=first,
                record=record,
                columns={"ts_recv": ts.data, "ts_event": ts.data},
                ts_recv=ts,
                seq=seq,
            )
