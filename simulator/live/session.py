"""One symbol of a live run: normaliser -> contract checks -> engine, all of it recorded.

`SymbolRun` owns the symbol's pipeline (built exactly as replay builds it), its run
directory (the same files as a replay's run) and its recorded session (rotating parts:
raw frames, the consumed events, the decisions with their measured times, orders, fills).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import orjson

from simulator import instruments
from simulator.instruments import Instrument
from simulator.intents import MarketOrder
from simulator.live.adapter import Normalizer
from simulator.live.consumed import Consumed, schemas
from simulator.live.frames import RAW_SCHEMA, Direction, Frame
from simulator.live.parts import SessionParts
from simulator.live.stepper import DECISIONS_SCHEMA, EventStepper, RowSpool
from simulator.protocols import ModelRunner
from simulator.recording import RunTables, fills_table, orders_table
from simulator.runtime import build_live
from simulator.session import SessionRef
from simulator.settings import Settings
from simulator.store import session_dir
from simulator.types import SessionKey, Side

FEED_LATENCY_WINDOW: Final = 2048
_PROBE: Final = (MarketOrder(Side.BUY, 1.0),)
"""The order the dry pass risk-checks while the policy wants none (never sent)."""


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
    feed_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=FEED_LATENCY_WINDOW))


class SymbolRun:
    """The pipeline of one symbol in a live session, and its recording."""

    def __init__(
        self,
        *,
        key: SessionKey,
        prefix: str,
        normalizer: Normalizer,
        config: Settings,
        levels: int,
        data_dir: Path,
        run_dir: Path,
        meta: dict[str, object],
        roll_seconds: float = 30.0,
        wrap_model: Callable[[ModelRunner], ModelRunner] | None = None,
        warm_from: SessionRef | None = None,
        instrument: tuple[Instrument, str] | None = None,
    ) -> None:
        self.key = key
        self.prefix = prefix  # stream names of this symbol start with it ("btcusdt@")
        self.normalizer = normalizer
        self.levels = levels
        self.run_dir = run_dir
        # (instrument, where it came from); the recording keeps it for the replay
        traded, source = instrument or (instruments.bundled(key.venue, key.symbol), "bundled")
        self.instrument = traded.as_meta(source)
        built = build_live(
            config,
            levels,
            run_dir,
            wrap_model=wrap_model,
            warm_from=warm_from,
            instrument=traded,
        )
        self.clock, self.staged, self.recorder = built.clock, built.staged, built.recorder
        self.portfolio, self.market, self.engine = built.portfolio, built.market, built.engine
        tables = {
            **schemas(levels),
            "raw": RAW_SCHEMA,
            "decisions": DECISIONS_SCHEMA,
            # not "orders": that is the order-level market-data kind (LOBSTER messages)
            "order_requests": orders_table(RunTables()).schema,
            "fills": fills_table([]).schema,
        }
        self.session_dir = session_dir(data_dir, key)
        self.parts = SessionParts(
            self.session_dir,
            {
                **meta,
                "session": str(key),
                "recorder": "live",
                "levels": levels,
                "instrument": self.instrument,
                **({} if warm_from is None else {"warm_from": warm_from.name}),
            },
            tables,
            roll_seconds=roll_seconds,
        )
        self.counters = SymbolCounters()
        self.engine.begin()
        self.spool = RowSpool(self.parts, levels, f"live {key}")
        self.stepper = EventStepper(
            self.engine, self.recorder.tables, levels, self.spool, self.counters.feed_latency_ns
        )
        self.consumed = Consumed(levels, sink=self.stepper)
        staged = self.staged
        runner = staged.breaker.primary if staged.breaker is not None else staged.pipeline.runner
        # only a model whose answer depends on its input alone is run idle (never a stateful
        # one, nor a wrapped or user runner that does not say so)
        self._dry_runner = runner if getattr(runner, "stateless", False) is True else None
        # a policy decides idle on a shallow copy only where its class says that is safe
        policy = staged.pipeline.policy
        copy_safe = vars(type(policy)).get("copy_safe") is True  # declared, not inherited
        self._dry_policy = copy.copy(policy) if copy_safe else None
        self.engine.prepare_dry(self._dry_runner, self._dry_policy)
        self._features = staged.pipeline.features
        self._scratch = np.empty_like(self._features.vector)
        self._last_frame: Frame | None = None  # the last frame processed
        self._last_data: dict[str, Frame] = {}  # the last market-data frame of each stream
        self._dry_parse = getattr(normalizer, "dry_parse", None)  # else the JSON alone
        self._dry_book = getattr(normalizer, "dry_book", None)

    @property
    def contract_drops(self) -> dict[str, int]:
        """Consumed rows dropped by the per-event contract checks, by kind."""
        return dict(self.stepper.dropped)

    def process(self, frames: list[Frame]) -> None:
        """Normalise the frames of one drain in receive order; each event the normaliser
        emits is checked, recorded and run at once (consumer thread)."""
        if len(frames) > 1 and any(a.seq > b.seq for a, b in itertools.pairwise(frames)):
            # a thread stamped a frame first but put it in the inbox later: receive order
            frames = sorted(frames, key=lambda f: f.seq)
        on_frame, consumed = self.normalizer.on_frame, self.consumed
        for frame in frames:
            on_frame(frame, consumed)
        self.stepper.record_outputs()
        self.recorder.spill()  # after the recording took the new orders and fills
        if frames:  # where `data recover` may cut the recording if the process is killed
            self._last_frame = last = frames[-1]
            if last.direction == Direction.IN:
                self._last_data[last.stream] = last
            tables = self.recorder.tables
            self.spool.mark = (
                consumed.next_seq - 1,
                frames[-1].seq,
                self.engine.state.n_events,
                tables.n_orders,
                tables.n_fills,
            )  # Checkpoint's order; fmt: skip

    def dry_pass(self) -> bool:
        """The hot code again on the last data, every answer thrown away: called while the
        feed is idle (`LiveOptions.keep_warm`) so that the next frame finds the code and data
        in the caches (at 1x a frame comes every ~30 ms and otherwise pays most of its time
        in cache misses). It parses the last frame of each market-data stream again (the
        normaliser's `dry_parse`, else the JSON alone), applies the book's last diff again
        (`dry_book`: absolute sizes, the book stays as it is), checks the last book row again
        and writes it into the engine's row it is already in, and walks the engine over that
        row again on a scratch twin (`LiveEngine.dry_step`: scratch state, market, portfolio
        and record row; an idle venue; no event reaches the feature stage). With a stateless
        model and a policy whose class declares `copy_safe`, that walk decides too: the
        model on a copy of the feature vector, the policy as a shallow copy of itself, and
        the order path up to the venue (`LiveEngine.dry_act`: the request and the pure risk
        checks) on what the copy asked for, and on a probe order (most often the policy
        holds). With a stateless model alone, the model runs on a scratch copy. Nothing that
        decides or is recorded changes: no state is written but the model's output vector
        (which the engine reads only right after its own predict), no event or call is
        counted (the circuit breaker is bypassed), a stateful model is never run. False
        before the first frame."""
        if self._last_frame is None:
            return False
        for frame in self._last_data.values():
            if self._dry_parse is not None:
                self._dry_parse(frame)
            else:
                with contextlib.suppress(ValueError):  # malformed: on_frame counted it
                    orjson.loads(frame.payload)
        if self._dry_book is not None:
            self._dry_book(self.levels)
        self.stepper.dry_check()
        part = self.stepper.dry_part
        if part is not None and self.engine.dry_step(part):
            self.engine.dry_act(_PROBE)  # the order path even while the policy holds
        elif self._dry_runner is not None and self._dry_policy is None and self._features.ready:
            scratch = self._scratch
            scratch[...] = self._features.vector
            self._dry_runner.predict(scratch, self.engine.state.n_events)
        return True

    def record_outputs(self) -> None:
        """Hand the decisions, orders and fills made since the last call to the recording."""
        self.stepper.record_outputs()

    def abort(self, reason: str) -> None:
        """The run failed: stop the recorder's and the recording's threads, keeping what was
        recorded (rows still in the spool included) for `data recover`."""
        self.recorder.abort()
        with contextlib.suppress(Exception):
            self.spool.flush()
        self.parts.abort(reason)

    def feed_latency_ms(self) -> tuple[float, float]:
        """(median, p99) of the recent feed latency in ms; NaN before any."""
        window = self.counters.feed_latency_ns
        if not window:
            return float("nan"), float("nan")
        values = np.fromiter(window, dtype=np.int64)
        return float(np.median(values)) / 1e6, float(np.percentile(values, 99)) / 1e6
