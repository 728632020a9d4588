"""Strategy configuration: TOML defaults, overridden by a user TOML file and `--set key=value`.

A strategy is `strategies/<name>.toml`. Every key a user sets must already exist in the
strategy's defaults (a typo is an error with a "did you mean" hint), and keeps its type.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simulator.errors import ConfigError

Config = dict[str, Any]

STRATEGY_DIR = Path(__file__).resolve().parents[1] / "strategies"


def strategy_names() -> list[str]:
    return sorted(p.stem for p in STRATEGY_DIR.glob("*.toml"))


def load_strategy(name: str) -> Config:
    """The defaults of strategy `name` (a name in strategies/ or a path to a TOML file)."""
    path = Path(name) if name.endswith(".toml") else STRATEGY_DIR / f"{name}.toml"
    if not path.exists():
        hint = difflib.get_close_matches(name, strategy_names(), n=1)
        maybe = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(
            f"unknown strategy '{name}'{maybe} (available: {', '.join(strategy_names())})"
        )
    config = _read_toml(path)
    config.setdefault("strategy", {})["name"] = config.get("strategy", {}).get("name", path.stem)
    config["strategy"]["dir"] = str(path.parent)
    return config


def _read_toml(path: Path) -> Config:
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
    config: Config, *, file: Path | None = None, sets: Sequence[str] = ()
) -> Config:
    """A copy of `config` with a TOML file's values, then each `section.key=value`, applied."""
    merged = copy.deepcopy(config)
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
    return merged


def _merge(base: Config, update: Mapping[str, Any], *, where: str, prefix: str = "") -> None:
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            hint = difflib.get_close_matches(key, list(base), n=1)
            maybe = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            raise ConfigError(f"{where}: unknown key '{name}'{maybe}")
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
