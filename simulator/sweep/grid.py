"""What a sweep varies: `--grid KEY=V1,V2,...` axes and `--latency-scale` factors, and the
effective configuration of each cell (the strategy's, with the cell's values set exactly as
`--set KEY=VALUE` would, then every latency scaled).

Latency scaling multiplies every simulated latency by the factor: the pipeline's stage
service times (a `fixed:` model's microseconds, or a calibrated file's histogram, rewritten
scaled), the feed delay (`latency.feed_us`) and the venue's order legs (`venue.entry_us`,
`venue.response_us` with `venue.latency = "fixed"`). The scaled values are written into the
cell's configuration, so each cell's manifest shows the latencies it ran with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.config import apply_overrides
from simulator.errors import ConfigError
from simulator.settings import Settings
from simulator.timing import parse_service_model, read_calibration

SCALED_DIR: Final = "latency"
"""Under the sweep's directory: calibration files rewritten with scaled times."""


@dataclass(frozen=True, slots=True)
class GridAxis:
    """One `--grid KEY=V1,V2,...`: the key and its values as typed."""

    key: str
    values: tuple[str, ...]


def parse_grid(text: str) -> GridAxis:
    key, sep, rest = text.partition("=")
    values = tuple(v.strip() for v in split_values(rest))
    if not sep or not key.strip() or not values or any(not v for v in values):
        raise ConfigError(
            f"--grid '{text}': expected KEY=V1,V2,..., e.g. policy.threshold=0.2,0.3,0.4"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid '{text}': a value is listed twice")
    return GridAxis(key.strip(), values)


def split_values(text: str) -> list[str]:
    """Split on the commas outside brackets and quotes (a value may be a TOML array)."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    values.append(text[start:])
    return values


def parse_scales(text: str) -> tuple[float, ...]:
    """`--latency-scale 0.5,1,2,4`: factors >= 0, each once."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise ConfigError(f"--latency-scale '{text}': expected numbers, e.g. 0.5,1,2,4") from e
    if any(not 0 <= s < float("inf") for s in scales) or len(set(scales)) != len(scales):
        raise ConfigError(f"--latency-scale '{text}': factors must be finite, >= 0, each once")
    return scales


def check_axes(config: Settings, axes: Sequence[GridAxis]) -> None:
    """Every key exists and every value has its type: one error before any cell runs."""
    keys = [axis.key for axis in axes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"--grid key(s) {twice} given twice; list all values in one --grid")
    for axis in axes:
        for value in axis.values:
            apply_overrides(config, sets=[f"{axis.key}={value}"])


def setting(config: Settings, key: str) -> object:
    """The value at a dotted key as the grid names it, e.g. `policy.threshold` (a TOML
    value: the key is the user's, so it is read from the plain view)."""
    node: object = config.as_dict()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"no setting '{key}' in the configuration")
        node = node[part]
    return node


def cell_config(
    config: Settings, params: Sequence[tuple[str, str]], scale: float | None, sweep_dir: Path
) -> Settings:
    """The cell's effective configuration: grid values set, then latencies scaled."""
    cell = apply_overrides(config, sets=[f"{key}={value}" for key, value in params])
    return cell if scale is None else scale_latency(cell, scale, sweep_dir)


def scale_latency(config: Settings, scale: float, sweep_dir: Path) -> Settings:
    """Every stage, feed and order latency of `config` times `scale` (a copy)."""
    require_scalable(config)
    latency, venue = config.latency, config.venue
    sets = [
        f"latency.model={_quoted(scaled_model(latency.model, scale, sweep_dir))}",
        f"latency.feed_us={latency.feed_us * scale!r}",
    ]
    if venue.latency == "fixed":
        sets += [
            f"venue.entry_us={venue.entry_us * scale!r}",
            f"venue.response_us={venue.response_us * scale!r}",
        ]
    return apply_overrides(config, sets=sets)


def require_scalable(config: Settings) -> None:
    """--latency-scale needs simulated latencies to scale, reproducibly."""
    model = config.latency.model
    kind = model.partition(":")[0]
    if kind in ("measured", "recorded"):
        why = "measured as the cell runs" if kind == "measured" else "the live decision times"
        raise ConfigError(
            f"--latency-scale cannot scale the {kind} latency model ({why}: not reproducible); "
            "calibrate one first (`ticktape calibrate RUN_DIR -o cal.parquet`) and sweep with "
            "--latency calibrated:cal.parquet"
        )
    venue = config.venue
    order = venue.latency == "fixed" and (venue.entry_us > 0 or venue.response_us > 0)
    if kind == "zero" and config.latency.feed_us == 0 and not order:
        raise ConfigError(
            f"--latency-scale needs a non-zero latency model; strategy "
            f"'{config.strategy.name}' uses latency.model = zero with no feed or order "
            "latency, so every scale would give the same cell: choose one with --latency "
            "fixed:features=5,inference=40 or --latency calibrated:FILE"
        )


def scaled_model(model: str, scale: float, sweep_dir: Path) -> str:
    """The stage service-time model with every time multiplied by `scale`."""
    kind, _, rest = model.partition(":")
    if kind == "zero":
        return model
    if kind == "fixed":
        parse_service_model(model)  # a malformed model is reported as the user wrote it
        items = (item.partition("=") for item in filter(None, rest.split(",")))
        return "fixed:" + ",".join(f"{s.strip()}={float(us) * scale!r}" for s, _, us in items)
    if kind == "calibrated":
        return f"calibrated:{scaled_calibration(Path(rest), scale, sweep_dir)}"
    raise ConfigError(f"--latency-scale: latency model '{model}' cannot be scaled")


def scaled_calibration(path: Path, scale: float, sweep_dir: Path) -> Path:
    """A copy of a calibration file with every bucket's time scaled (written once)."""
    table = read_calibration(path)
    out = sweep_dir / SCALED_DIR / f"{path.stem}-x{scale:g}.parquet"
    if out.exists():
        return out.resolve()
    upper = pa.compute.round(
        pa.compute.multiply(table.column("upper_ns").cast(pa.float64()), scale)
    )
    index = table.column_names.index("upper_ns")
    scaled = table.set_column(index, "upper_ns", upper.cast(pa.int64()))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".tmp")
    pq.write_table(scaled, partial)
    partial.replace(out)  # atomic: a worker never reads half a file
    return out.resolve()


def _quoted(text: str) -> str:
    """A TOML string literal, so --set keeps it a string whatever it holds."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
