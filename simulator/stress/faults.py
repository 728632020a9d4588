"""Model faults of a stress scenario: ModelRunner wrappers and a background CPU load.

Whether event i is hit is a pure function of (seed, fault position, kind, i // run_length):
the same in any process and whatever order the engine asks in, so a retry or a replay of
event i meets the same fault. Wrap the *primary* runner, inside a CircuitBreaker, so that the
breaker sees the faults and the fallback stays healthy.

A latency spike is charged once: in simulated time (the engine reads `take_extra_ns()` after
each predict and adds it to the inference service time) or, in measured mode, as real time
spent busy-waiting inside predict (then nothing is left to charge).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import numpy as np
import numpy.typing as npt

from simulator.errors import ModelError, ScenarioError
from simulator.protocols import ModelRunner
from simulator.stress.spec import (
    CpuContentionSpec,
    FaultSpec,
    LatencySpikeSpec,
    ModelExceptionSpec,
    seed_sequence,
)

NS_PER_US: Final = 1_000
BLOCK: Final = 4_096  # uniforms drawn at a time: ~7 ns per event amortised


class IndexedUniform:
    """u(i) in [0, 1) for any index i >= 0, reproducible whatever order indices come in.

    Block b of indices draws from its own generator seeded from (entropy, b), so u(i) never
    depends on which indices were asked before; consecutive indices reuse the cached block.
    """

    __slots__ = ("_block", "_entropy", "_view")

    def __init__(self, entropy: np.random.SeedSequence) -> None:
        self._entropy = tuple(int(w) for w in entropy.generate_state(4, np.uint32))
        self._block = -1
        self._view: memoryview = memoryview(b"")

    def __call__(self, index: int) -> float:
        block, offset = divmod(index, BLOCK)
        if block != self._block:
            seq = np.random.SeedSequence([*self._entropy, block])
            values = np.random.Generator(np.random.PCG64(seq)).random(BLOCK)
            self._view, self._block = values.data, block
        value: float = self._view[offset]  # a memoryview item is a plain float: no boxing
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCounts:
    """What one fault did in a session."""

    name: str
    calls: int
    injected: int
    extra_ns: int  # latency spikes: total extra latency injected


class _Trigger:
    """Does the fault hit event i? (window, runs of `run_length`, seeded probability)."""

    __slots__ = ("_end", "_p", "_run", "_start", "_u")

    def __init__(
        self,
        probability: float,
        uniform: IndexedUniform,
        window: tuple[int, int | None] | None,
        run_length: int,
    ) -> None:
        if not 0.0 < probability <= 1.0 or run_length < 1:
            raise ScenarioError(
                f"fault: probability is {probability} and run_length {run_length}; "
                "expected a probability in (0, 1] and a run_length >= 1"
            )
        start, end = window if window is not None else (0, None)
        self._start, self._end = start, end if end is not None else sys.maxsize
        self._p, self._run, self._u = probability, run_length, uniform

    def __call__(self, event_index: int) -> bool:
        if not self._start <= event_index < self._end:
            return False
        # whole runs of events share one draw: a fault that lasts, as a breaker sees one
        return self._u((event_index - self._start) // self._run) < self._p


class ExceptionFault:
    """Raises ModelError instead of predicting on a seeded `probability` share of events."""

    __slots__ = ("_hit", "calls", "injected", "name", "primary")

    def __init__(
        self,
        primary: ModelRunner,
        probability: float,
        seed: int,
        *,
        window: tuple[int, int | None] | None = None,
        run_length: int = 1,
        index: int = 0,
    ) -> None:
        self.primary = primary
        self.name = primary.name
        uniform = IndexedUniform(seed_sequence(seed, index, ModelExceptionSpec.kind))
        self._hit = _Trigger(probability, uniform, window, run_length)
        self.calls = self.injected = 0

    def warm_up(self) -> None:
        self.primary.warm_up()

    def reset(self) -> None:
        self.primary.reset()
        self.calls = self.injected = 0

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        self.calls += 1
        if self._hit(event_index):
            self.injected += 1
            raise ModelError(f"injected model fault at event {event_index} (stress scenario)")
        return self.primary.predict(features, event_index)

    @property
    def counts(self) -> FaultCounts:
        return FaultCounts(
            name=ModelExceptionSpec.kind, calls=self.calls, injected=self.injected, extra_ns=0
        )


class LatencySpike:
    """Makes the model `extra_us` slower on a seeded `probability` share of events.

    Simulated (default): `last_extra_ns` is the extra latency of the latest call and
    `take_extra_ns()` hands over what is not charged yet. Measured (`measured=True`): predict
    busy-waits that long instead, so the measured compute time grows, and nothing is charged.
    """

    __slots__ = (
        "_extra",
        "_hit",
        "_measured",
        "_pending",
        "calls",
        "extra_ns",
        "injected",
        "last_extra_ns",
        "name",
        "primary",
    )

    def __init__(
        self,
        primary: ModelRunner,
        extra_us: float,
        probability: float,
        seed: int,
        *,
        window: tuple[int, int | None] | None = None,
        run_length: int = 1,
        measured: bool = False,
        index: int = 0,
    ) -> None:
        self.primary = primary
        self.name = primary.name
        self._extra = round(extra_us * NS_PER_US)
        uniform = IndexedUniform(seed_sequence(seed, index, LatencySpikeSpec.kind))
        self._hit = _Trigger(probability, uniform, window, run_length)
        self._measured = measured
        self.calls = self.injected = self.extra_ns = self.last_extra_ns = self._pending = 0

    def warm_up(self) -> None:
        self.primary.warm_up()

    def reset(self) -> None:
        self.primary.reset()
        self.calls = self.injected = self.extra_ns = self.last_extra_ns = self._pending = 0

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        self.calls += 1
        extra = 0
        if self._hit(event_index):
            self.injected += 1
            self.extra_ns += self._extra
            if self._measured:
                _busy_wait(self._extra)
            else:
                extra = self._extra
        self.last_extra_ns = extra
        self._pending += extra
        return self.primary.predict(features, event_index)

    def take_extra_ns(self) -> int:
        """Extra simulated latency not charged yet (0 in measured mode); clears it.

        Safer than `last_extra_ns` behind a breaker: an open breaker never calls this runner,
        and a stale `last_extra_ns` would be charged twice.
        """
        extra, self._pending = self._pending, 0
        return extra

    @property
    def counts(self) -> FaultCounts:
        return FaultCounts(
            name=LatencySpikeSpec.kind,
            calls=self.calls,
            injected=self.injected,
            extra_ns=self.extra_ns,
        )


def _busy_wait(ns: int) -> None:
    # spinning, not sleeping: sleep granularity is ~50 µs and a stalled model burns CPU
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


_BUSY_LOOP: Final = """
import sys, time
duty, period = float(sys.argv[1]), 0.01
while True:
    end = time.perf_counter() + duty * period
    while time.perf_counter() < end:
        pass
    if duty < 1.0:
        time.sleep((1.0 - duty) * period)
"""


class CpuContention:
    """`workers` busy background processes while a run is measured (a noisy neighbour).

    Processes, not threads: a busy thread would contend for the GIL, not for a core. Use as a
    context manager around the measured run; only processes started here are stopped.
    """

    def __init__(self, workers: int, duty: float = 1.0) -> None:
        if not 1 <= workers <= 64 or not 0.0 < duty <= 1.0:
            raise ScenarioError(
                f"cpu_contention: workers is {workers} and duty {duty}; "
                "expected workers in 1..64 and duty in (0, 1]"
            )
        self.workers, self.duty = workers, duty
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def running(self) -> int:
        return sum(1 for p in self._processes if p.poll() is None)

    def start(self) -> None:
        if self._processes:
            return
        command = [sys.executable, "-c", _BUSY_LOOP, repr(self.duty)]
        self._processes = [subprocess.Popen(command) for _ in range(self.workers)]

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []

    def __enter__(self) -> CpuContention:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultChain:
    """A primary runner with a scenario's faults around it, and handles on the faults."""

    runner: ModelRunner  # the outermost wrapper: give this to the CircuitBreaker as primary
    exceptions: tuple[ExceptionFault, ...]
    spikes: tuple[LatencySpike, ...]
    contention: tuple[CpuContention, ...]  # measured mode only; start/stop around the run
    skipped: tuple[str, ...]  # faults that mean nothing in this mode (reported, not silent)

    def take_extra_ns(self) -> int:
        """Extra simulated inference latency not charged yet (0 when none)."""
        return sum(s.take_extra_ns() for s in self.spikes)

    def counts(self) -> tuple[FaultCounts, ...]:
        return tuple(e.counts for e in self.exceptions) + tuple(s.counts for s in self.spikes)


def _wrap(
    runner: ModelRunner,
    spec: ModelExceptionSpec | LatencySpikeSpec,
    *,
    seed: int,
    index: int,
    measured: bool,
) -> ExceptionFault | LatencySpike:
    window = (spec.start_event, spec.end_event)
    if isinstance(spec, ModelExceptionSpec):
        return ExceptionFault(
            runner, spec.probability, seed, window=window, run_length=spec.run_length, index=index
        )
    return LatencySpike(
        runner,
        spec.extra_us,
        spec.probability,
        seed,
        window=window,
        run_length=spec.run_length,
        measured=measured,
        index=index,
    )


def apply_faults(
    primary: ModelRunner, faults: Sequence[FaultSpec], *, seed: int, measured: bool
) -> FaultChain:
    """Wrap `primary` in `faults`, in order (the first innermost)."""
    runner = primary
    exceptions: list[ExceptionFault] = []
    spikes: list[LatencySpike] = []
    contention: list[CpuContention] = []
    skipped: list[str] = []
    for index, spec in enumerate(faults):
        if isinstance(spec, CpuContentionSpec):
            if measured:
                contention.append(CpuContention(spec.workers, spec.duty))
            else:
                skipped.append(f"{spec.kind} #{index + 1}: needs the measured latency model")
            continue
        wrapper = _wrap(runner, spec, seed=seed, index=index, measured=measured)
        if isinstance(wrapper, ExceptionFault):
            exceptions.append(wrapper)
        else:
            spikes.append(wrapper)
        runner = wrapper
    return FaultChain(
        runner=runner,
        exceptions=tuple(exceptions),
        spikes=tuple(spikes),
        contention=tuple(contention),
        skipped=tuple(skipped),
    )
