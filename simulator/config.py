"""Strategy configuration: the defaults of `simulator.settings`, overridden by the strategy's
TOML, then by a user TOML file (`--config`) and `--set key=value`.

A strategy is `strategies/<name>.toml` or any `path/to/strategy.toml`; it holds only what it
changes. Every key set must exist in the defaults (a typo is an error with a "did you mean"
hint) and keeps its type. Loading returns the typed, validated `Settings` (built once, at load,
what every module reads); overrides merge into its plain view `Settings.as_dict()` and are
validated again as a new `Settings`.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import ConfigError
from simulator.settings import OPEN_SECTIONS, Settings, default_dict

TomlDict = dict[str, Any]
"""A configuration as TOML-shaped data: what TOML files and overrides merge into."""

STRATEGY_DIR = Path(__file__).resolve().parents[1] / "strategies"


def strategy_names() -> list[str]:
    return sorted(p.stem for p in STRATEGY_DIR.glob("*.toml"))


@dataclass(frozen=True, slots=True)
class StrategyEntry:
    """One strategy `ticktape strategies` lists: where it is and what it says it does."""

    name: str
    path: Path
    shipped: bool
    description: str  # or the reason it does not load, prefixed "invalid: "


def strategy_catalog(local: Path | None = None) -> list[StrategyEntry]:
    """The shipped strategies, then the strategy folders under `local` (`*/strategy.toml` and
    one level deeper, e.g. examples/maker from the repository's root)."""
    paths = [(STRATEGY_DIR / f"{n}.toml", True) for n in strategy_names()]
    if local is not None:
        found = [*local.glob("*/strategy.toml"), *local.glob("*/*/strategy.toml")]
        paths += [(p, False) for p in sorted(found)]
    entries = []
    for path, shipped in paths:
        try:
            strategy = load_strategy(str(path)).strategy
        except ConfigError as e:
            entries.append(StrategyEntry(path.parent.name, path, shipped, f"invalid: {e}"))
            continue
        entries.append(StrategyEntry(strategy.name, path, shipped, strategy.description))
    return entries


def to_toml(config: Mapping[str, Mapping[str, Any]]) -> str:
    """A two-level config as TOML text (sections of scalars and flat lists)."""
    blocks = []
    for section, values in config.items():
        body = "".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items())
        blocks.append(f"[{section}]\n{body}")
    return "\n".join(blocks)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def strategy_path(name: str) -> Path:
    """The TOML of strategy `name`: a name in strategies/, a TOML file, or a strategy folder
    (holding strategy.toml)."""
    path = Path(name)
    if path.is_dir() and (path / "strategy.toml").is_file():
        return path / "strategy.toml"
    if not name.endswith(".toml"):
        path = STRATEGY_DIR / f"{name}.toml"
    if path.is_file():
        return path
    if name.endswith(".toml") or "/" in name:
        raise ConfigError(f"strategy file {name} not found")
    hint = difflib.get_close_matches(name, strategy_names(), n=1)
    maybe = f"; did you mean '{hint[0]}'?" if hint else ""
    raise ConfigError(
        f"unknown strategy '{name}'{maybe} (available: {', '.join(strategy_names())}, or a path "
        "to a strategy TOML)"
    )


def load_strategy(name: str) -> Settings:
    """Strategy `name` (see `strategy_path`): its TOML merged over the defaults, validated.

    The strategy's name is its TOML's stem (the folder's name for a `strategy.toml`) unless
    it sets `strategy.name`."""
    path = strategy_path(name)
    config = default_dict()
    config["strategy"]["name"] = path.parent.name if path.name == "strategy.toml" else path.stem
    _merge(config, _read_toml(path), where=str(path))
    config["strategy"]["dir"] = str(path.parent)
    return Settings.of(config)


def _read_toml(path: Path) -> TomlDict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def parse_value(text: str) -> object:
    """A --set value as TOML (numbers, booleans, arrays, quoted strings) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(
    config: Settings, *, file: Path | None = None, sets: Sequence[str] = ()
) -> Settings:
    """`config` with a TOML file's values, then each `section.key=value`, applied; validated
    (range errors name the key, e.g. policy.lot)."""
    merged = config.as_dict()
    if file is not None:
        _merge(merged, _read_toml(file), where=str(file))
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set '{item}': expected section.key=value, e.g. policy.threshold=0.3"
            )
        nested: dict[str, object] = {}
        cursor = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})  # type: ignore[assignment]
        cursor[parts[-1]] = parse_value(value.strip())
        _merge(merged, nested, where=f"--set {item}")
    return Settings.of(merged)


def apply_values(config: Settings, values: Mapping[str, object], *, where: str) -> Settings:
    """`config` with `values` applied: `{"section.key": value}` or nested
    `{"section": {"key": value}}` (the Python API's overrides), checked like `--set`."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    merged = config.as_dict()
    _merge(merged, nested, where=where)
    return Settings.of(merged)


def _merge(base: TomlDict, update: Mapping[str, Any], *, where: str, prefix: str = "") -> None:
    for key, value in update.items():
        name = f"{prefix}{key}"
        if (
            not prefix
            and key in OPEN_SECTIONS
            and isinstance(value, Mapping)
            and value.get("class")
        ):
            base[key] = {"class": ""}  # the user's class: the built-in keys do not apply
        if (
            key not in base
            and prefix[:-1] in OPEN_SECTIONS
            and (update.get("class") or base.get("class"))
        ):
            base[key] = value  # a parameter of the user's class: its signature checks it
            continue
        if key not in base:
            hint = difflib.get_close_matches(key, list(base), n=1)
            maybe = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            what = "section" if not prefix else "key"
            raise ConfigError(f"{where}: unknown {what} '{name}'{maybe}")
        current = base[key]
        if isinstance(current, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: '{name}' is a section; set one of its keys")
            _merge(current, value, where=where, prefix=f"{name}.")
            continue
        base[key] = _coerce(current, value, name, where)


def _coerce(current: object, value: object, name: str, where: str) -> object:
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) and isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, int):
        return float(value)
    elif type(current) is type(value):
        return value
    raise ConfigError(
        f"{where}: '{name}' must be {type(current).__name__} (like {current!r}); "
        f"found {type(value).__name__} {value!r}"
    )
