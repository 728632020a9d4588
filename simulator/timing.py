"""Service-time models: how long each pipeline stage takes in simulated time.

The engine treats the pipeline as a server: an event waits while the previous one is being
served, and its service time is the sum of its stages' times (pipelined: each stage is its
own server, see engine_timed) from one of these models:

  zero                       no time passes (the default: decisions at the event's own time)
  fixed:STAGE=US,...         constant microseconds per stage (stages: features, inference,
                             decision, risk, order); stages not named take 0
  measured                   the compute time just measured (realistic, not reproducible)
  calibrated:FILE            sampled, with a seeded generator, from the latency histograms of
                             an earlier run (`ticktape calibrate`): realistic and reproducible
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import ConfigError, DataError

SERVICE_STAGES: Final = ("features", "inference", "decision", "risk", "order")
FEATURES, INFERENCE, DECISION, RISK, ORDER = range(5)
SAMPLE_BLOCK: Final = 4096


class ServiceModel(Protocol):
    name: str

    def service_ns(self, stage: int, measured_ns: int) -> int:
        """Simulated time the stage takes, given what its compute just measured."""


class ZeroService:
    name = "zero"

    def service_ns(self, stage: int, measured_ns: int) -> int:
        return 0


class FixedService:
    def __init__(self, stage_ns: dict[str, int]) -> None:
        unknown = sorted(set(stage_ns) - set(SERVICE_STAGES))
        if unknown:
            raise ConfigError(
                f"latency fixed: unknown stage(s) {unknown}; stages: {SERVICE_STAGES}"
            )
        self._ns = [int(stage_ns.get(stage, 0)) for stage in SERVICE_STAGES]
        shown = ",".join(f"{k}={v / 1e3:g}" for k, v in sorted(stage_ns.items()))
        self.name = f"fixed:{shown}"

    def service_ns(self, stage: int, measured_ns: int) -> int:
        return self._ns[stage]


class MeasuredService:
    name = "measured"

    def service_ns(self, stage: int, measured_ns: int) -> int:
        return measured_ns


class CalibratedService:
    """Draws each stage's time from its histogram (bucket upper edges, weighted by counts),
    from one seeded generator per stage, in blocks: the same file and seed, the same times."""

    def __init__(self, path: Path, seed: int) -> None:
        self.name = f"calibrated:{path.name}"
        table = read_calibration(path)
        self._values: list[npt.NDArray[np.int64]] = []
        self._weights: list[npt.NDArray[np.float64]] = []
        for stage in SERVICE_STAGES:
            rows = table.filter(pa.compute.equal(table.column("stage"), stage))
            counts = np.asarray(rows.column("count").to_numpy(), dtype=np.float64)
            self._values.append(np.asarray(rows.column("upper_ns").to_numpy(), dtype=np.int64))
            self._weights.append(counts / counts.sum() if counts.sum() else counts)
        self._rngs = [np.random.default_rng([seed, i]) for i in range(len(SERVICE_STAGES))]
        self._blocks: list[list[int]] = [[] for _ in SERVICE_STAGES]

    def service_ns(self, stage: int, measured_ns: int) -> int:
        block = self._blocks[stage]
        if not block:
            values = self._values[stage]
            if values.size == 0:
                return 0
            draws = self._rngs[stage].choice(values, size=SAMPLE_BLOCK, p=self._weights[stage])
            block.extend(reversed(draws.tolist()))
        return block.pop()


def parse_service_model(spec: str, *, seed: int = 0) -> ServiceModel:
    """`zero`, `fixed:features=2,inference=15`, `measured` or `calibrated:FILE`."""
    kind, _, rest = spec.partition(":")
    if kind == "zero" and not rest:
        return ZeroService()
    if kind == "measured" and not rest:
        return MeasuredService()
    if kind == "fixed":
        return FixedService(_stage_micros(spec, rest))
    if kind == "calibrated" and rest:
        return CalibratedService(Path(rest), seed)
    raise ConfigError(
        f"latency model '{spec}' unknown; expected zero, fixed:STAGE=US,..., measured, "
        "calibrated:FILE or recorded (a `ticktape live` session)"
    )


def _stage_micros(spec: str, text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        stage, _, micros = item.partition("=")
        try:
            out[stage.strip()] = round(float(micros) * 1e3)
        except ValueError as e:
            raise ConfigError(f"latency '{spec}': '{item}' is not STAGE=MICROSECONDS") from e
    return out


def calibrate(run_dir: Path, out: Path) -> Path:
    """Write a calibration file from a run's measured stage histograms."""
    source = run_dir / "latency_histograms.parquet"
    if not source.exists():
        raise DataError(
            f"{run_dir}: no latency_histograms.parquet; is it a ticktape run directory?"
        )
    table = pq.read_table(source)
    table = table.filter(pa.compute.is_in(table.column("stage"), pa.array(SERVICE_STAGES)))
    pq.write_table(table, out)
    return out


def read_calibration(path: Path) -> pa.Table:
    if not path.exists():
        raise ConfigError(f"calibration file {path} not found; write one with `ticktape calibrate`")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a calibration file ({e})") from e
    missing = {"stage", "upper_ns", "count"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: not a calibration file (missing {sorted(missing)})")
    return table
