"""One symbol of a live run: normaliser -> contract checks -> engine, all of it recorded.

`SymbolRun` owns the symbol's pipeline (built exactly as replay builds it), its run
directory (the same files as a replay's run) and its recorded session (rotating parts:
raw frames, the consumed events, the decisions with their measured times, orders, fills).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from simulator.clock import WallClock
from simulator.config import Config
from simulator.engine_live import LiveEngine
from simulator.live.adapter import Normalizer
from simulator.live.consumed import Checked, Consumed, schemas
from simulator.live.frames import RAW_SCHEMA, Frame
from simulator.live.parts import SessionParts
from simulator.market import MarketState
from simulator.portfolio import Portfolio
from simulator.protocols import ModelRunner
from simulator.recording import RunRecorder, RunTables, fills_table, orders_table
from simulator.runtime import StagedPipeline, build_pipeline, build_venue
from simulator.store import session_dir
from simulator.types import SessionKey

DECISIONS_SCHEMA: Final = pa.schema([("event_index", pa.int64()), ("ts_decision", pa.int64())])
FEED_LATENCY_WINDOW: Final = 2048


def session_key(venue: str, symbol: str, start_ns: int, data_dir: Path) -> SessionKey:
    """`venue/SYMBOL/YYYY-MM-DDTHHMMSS` (UTC start); a taken second moves to the next one."""
    seconds = start_ns // 1_000_000_000
    while True:
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H%M%S")
        key = SessionKey(venue, symbol.upper(), stamp)
        if not session_dir(data_dir, key).exists():
            return key
        seconds += 1


@dataclass(slots=True)
class SymbolCounters:
    orders_recorded: int = 0  # orders and fills already appended to the session's parts
    fills_recorded: int = 0
    feed_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=FEED_LATENCY_WINDOW))


class SymbolRun:
    """The pipeline of one symbol in a live session, and its recording."""

    def __init__(
        self,
        *,
        key: SessionKey,
        prefix: str,
        normalizer: Normalizer,
        config: Config,
        levels: int,
        data_dir: Path,
        run_dir: Path,
        meta: dict[str, object],
        roll_seconds: float = 30.0,
        wrap_model: Callable[[ModelRunner], ModelRunner] | None = None,
    ) -> None:
        self.key = key
        self.prefix = prefix  # stream names of this symbol start with it ("btcusdt@")
        self.normalizer = normalizer
        self.levels = levels
        self.run_dir = run_dir
        self.clock = WallClock()
        self.staged: StagedPipeline = build_pipeline(
            config, levels, self.clock, wrap_model=wrap_model
        )
        self.recorder = RunRecorder(run_dir)
        self.portfolio = Portfolio()
        self.market = MarketState(levels)
        self.engine = LiveEngine(
            wall=self.clock.wall_ns,
            clock=self.clock,
            market=self.market,
            pipeline=self.staged.pipeline,
            venue=build_venue(config["venue"]),
            portfolio=self.portfolio,
            recorder=self.recorder,
            model_healthy=self.staged.health,
        )
        tables = {
            **schemas(levels),
            "raw": RAW_SCHEMA,
            "decisions": DECISIONS_SCHEMA,
            "orders": orders_table(RunTables()).schema,
            "fills": fills_table([]).schema,
        }
        self.session_dir = session_dir(data_dir, key)
        self.parts = SessionParts(
            self.session_dir,
            {**meta, "session": str(key), "recorder": "live", "levels": levels},
            tables,
            roll_seconds=roll_seconds,
        )
        self.consumed = Consumed(levels)
        self.checked = Checked()
        self.counters = SymbolCounters()
        self.engine.begin()

    def process(self, frames: list[Frame]) -> None:
        """Normalise, check, record and run the frames of one drain (consumer thread)."""
        on_frame, consumed = self.normalizer.on_frame, self.consumed
        for frame in frames:
            on_frame(frame, consumed)
        if not len(consumed):
            return
        passed, merged = self.checked.batches(consumed.tables())
        for kind, table in passed.items():
            self.parts.append(kind, table)
        self._feed_latency(passed)
        if merged is None:
            return
        self.engine.step(merged)
        self.record_outputs()

    def _feed_latency(self, passed: dict[str, pa.Table]) -> None:
        """Receive minus exchange time of trades and diffs (may be negative: clock skew)."""
        window = self.counters.feed_latency_ns
        for kind in ("trades", "book"):
            table = passed.get(kind)
            if table is None:
                continue
            ts_event = table.column("ts_event")
            if ts_event.null_count == 0:  # Binance trades and diffs always carry E/T
                lag = table.column("ts_recv").to_numpy() - ts_event.to_numpy()
                window.extend(lag[-FEED_LATENCY_WINDOW:].tolist())

    def record_outputs(self) -> None:
        """Append the decisions, orders and fills made since the last call to the parts."""
        engine, tables, counters = self.engine, self.recorder.tables, self.counters
        if engine.decisions:
            index, ts = zip(*engine.decisions, strict=True)
            self.parts.append(
                "decisions",
                pa.table(
                    {
                        "event_index": pa.array(index, pa.int64()),
                        "ts_decision": pa.array(ts, pa.int64()),
                    },
                    schema=DECISIONS_SCHEMA,
                ),
            )
            engine.decisions.clear()
        if len(tables.orders) > counters.orders_recorded:
            new = tables.orders[counters.orders_recorded :]
            p = tables.order_p[counters.orders_recorded :]
            self.parts.append("orders", orders_table(RunTables(orders=new, order_p=p)))
            counters.orders_recorded = len(tables.orders)
        if len(tables.fills) > counters.fills_recorded:
            self.parts.append("fills", fills_table(tables.fills[counters.fills_recorded :]))
            counters.fills_recorded = len(tables.fills)

    def feed_latency_ms(self) -> tuple[float, float]:
        """(median, p99) of the recent feed latency in ms; NaN before any."""
        window = self.counters.feed_latency_ns
        if not window:
            return float("nan"), float("nan")
        values = np.fromiter(window, dtype=np.int64)
        return float(np.median(values)) / 1e6, float(np.percentile(values, 99)) / 1e6
