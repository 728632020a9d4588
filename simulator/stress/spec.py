"""What a stress scenario is: frozen values, one dataclass per transform and fault kind.

A scenario is a name, a seed, stream transforms applied in file order to every market-data file
(`[[transform]]`), model faults wrapped around the primary model in file order, the first
innermost (`[[fault]]`), and optional latency overrides for the engine (`[latency]`). Times are
seconds from the session start (its first ts_recv), so a scenario works on any session; fault
windows are event indices (end exclusive, None: to the end). `scenario.py` reads and checks
them; a spec's defaults are its dataclass defaults, a field without one is a required key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

import numpy as np

INF: Final = math.inf


# --- stream transforms (seconds are relative to the session start) ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstSpec:
    """Time compression: events in [start, start + duration) come `factor` times faster."""

    kind: ClassVar[str] = "burst"
    start_s: float = 0.0
    duration_s: float
    factor: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AmplifySpec:
    """Every event in the window is followed by `copies` extra messages (rate x copies + 1)."""

    kind: ClassVar[str] = "amplify"
    start_s: float = 0.0
    duration_s: float = INF
    copies: int
    size_jitter: float = 0.1  # copies' sizes differ from the original by up to this fraction


@dataclass(frozen=True, slots=True, kw_only=True)
class GapSpec:
    """A feed outage: every event in [start, start + duration) is lost."""

    kind: ClassVar[str] = "gap"
    start_s: float = 0.0
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateSpec:
    """Each event in the window is sent twice with `probability` (an exact duplicate)."""

    kind: ClassVar[str] = "duplicate"
    probability: float
    start_s: float = 0.0
    duration_s: float = INF


@dataclass(frozen=True, slots=True, kw_only=True)
class OutOfOrderSpec:
    """Each event in the window is overtaken by the next one with `probability`."""

    kind: ClassVar[str] = "out_of_order"
    probability: float
    start_s: float = 0.0
    duration_s: float = INF


CORRUPT_MODES: Final = ("nan", "zero", "negative", "crossed")


@dataclass(frozen=True, slots=True, kw_only=True)
class CorruptSpec:
    """Each event in the window gets a bad price (one of `modes`) with `probability`."""

    kind: ClassVar[str] = "corrupt"
    probability: float
    start_s: float = 0.0
    duration_s: float = INF
    modes: tuple[str, ...] = CORRUPT_MODES


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceShockSpec:
    """Prices jump by `pct` percent at start and recover linearly over `recovery_s` (inf: never)."""

    kind: ClassVar[str] = "price_shock"
    start_s: float = 0.0
    pct: float
    recovery_s: float


TransformSpec = (
    BurstSpec
    | AmplifySpec
    | GapSpec
    | DuplicateSpec
    | OutOfOrderSpec
    | CorruptSpec
    | PriceShockSpec
)


# --- model faults (windows are event indices; end exclusive, None: to the end) ----------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySpikeSpec:
    """The model takes `extra_us` longer on a `probability` share of events."""

    kind: ClassVar[str] = "inference_latency"
    extra_us: float
    probability: float
    start_event: int = 0
    end_event: int | None = None
    run_length: int = 1  # spikes come in runs of this many consecutive events


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelExceptionSpec:
    """The model raises on a `probability` share of events, in runs of `run_length` events."""

    kind: ClassVar[str] = "model_exception"
    probability: float
    start_event: int = 0
    end_event: int | None = None
    run_length: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuContentionSpec:
    """`workers` busy background processes, each busy `duty` of the time (measured mode only)."""

    kind: ClassVar[str] = "cpu_contention"
    workers: int
    duty: float = 1.0


FaultSpec = LatencySpikeSpec | ModelExceptionSpec | CpuContentionSpec

TRANSFORM_KINDS: Final[Mapping[str, type[TransformSpec]]] = {
    c.kind: c
    for c in (
        BurstSpec,
        AmplifySpec,
        GapSpec,
        DuplicateSpec,
        OutOfOrderSpec,
        CorruptSpec,
        PriceShockSpec,
    )
}
FAULT_KINDS: Final[Mapping[str, type[FaultSpec]]] = {
    c.kind: c for c in (LatencySpikeSpec, ModelExceptionSpec, CpuContentionSpec)
}

STAGES: Final = ("features", "inference", "decision", "risk", "order")
LATENCY_MODELS: Final = ("zero", "fixed", "measured", "calibrated")
CONFLATIONS: Final = ("all", "latest")


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyOverrides:
    """What a scenario changes in the engine's latency settings (None: leave as configured)."""

    model: str | None = None
    stage_us: tuple[tuple[str, float], ...] = ()  # (stage, µs) pairs: hashable, in file order
    order_us: float | None = None
    feed_us: float | None = None
    conflation: str | None = None
    queue_bound: int | None = None

    def as_dict(self) -> dict[str, object]:
        """Only the keys the scenario sets, e.g. {"stage_us": {"inference": 50.0}}."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and value != ():
                out[f.name] = dict(value) if f.name == "stage_us" else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str = ""
    seed: int = 0
    transforms: tuple[TransformSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    latency: LatencyOverrides = field(default_factory=LatencyOverrides)
    path: Path | None = None

    @property
    def needs_measured(self) -> bool:
        """True when the scenario only means something with the measured latency model."""
        return self.latency.model == "measured" or any(
            isinstance(f, CpuContentionSpec) for f in self.faults
        )


def seed_sequence(seed: int, index: int, *names: str) -> np.random.SeedSequence:
    """The seed of one injector: (scenario seed, its position, its names), stable in any process
    (names enter as the integers their UTF-8 bytes spell, never through Python's hash())."""
    words = [int.from_bytes(n.encode(), "little") for n in names]
    return np.random.SeedSequence([seed, index, *words])
