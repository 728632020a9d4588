"""Read `scenarios/*.toml` into validated `Scenario` values (see `spec.py` for the shape).

Everything is checked here, once: a wrong file fails with its path, the table
(`[[transform]] #2`), the key, what was expected and what was found, and a "did you mean"
for a misspelt key, table or kind.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from simulator.errors import ScenarioError
from simulator.stress.spec import (
    CONFLATIONS,
    CORRUPT_MODES,
    FAULT_KINDS,
    INF,
    LATENCY_MODELS,
    STAGES,
    TRANSFORM_KINDS,
    FaultSpec,
    LatencyOverrides,
    Scenario,
    TransformSpec,
)

SCENARIO_DIR: Final = Path(__file__).resolve().parents[2] / "scenarios"


# --- key rules: the type and range each key takes ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    types: tuple[type, ...]
    ok: Callable[[Any], bool]
    expect: str


def _number(ok: Callable[[float], bool], expect: str) -> _Rule:
    return _Rule((float, int), ok, f"a number {expect}")


def _integer(ok: Callable[[int], bool], expect: str) -> _Rule:
    return _Rule((int,), ok, f"an integer {expect}")


def _choice(options: tuple[str, ...]) -> _Rule:
    return _Rule((str,), lambda v: v in options, "one of " + ", ".join(f"'{o}'" for o in options))


_START = _number(lambda v: 0 <= v < INF, "of seconds >= 0")
_SPAN = _number(lambda v: v > 0, "of seconds > 0 (inf: to the end)")
_PROBABILITY = _number(lambda v: 0 < v <= 1, "in (0, 1]")
_EVENT = _integer(lambda v: v >= 0, "event index >= 0")
_MICROS = _number(lambda v: 0 <= v < INF, "of microseconds >= 0")

_RULES: Final[Mapping[str, _Rule]] = {
    "start_s": _START,
    "duration_s": _SPAN,
    "recovery_s": _SPAN,
    "factor": _number(lambda v: 1 < v < INF, "> 1"),
    "copies": _integer(lambda v: 1 <= v <= 1000, "in 1..1000"),
    "size_jitter": _number(lambda v: 0 < v <= 0.5, "in (0, 0.5]"),
    "probability": _PROBABILITY,
    "modes": _Rule(
        (list,),
        lambda v: bool(v) and all(m in CORRUPT_MODES for m in v),
        "a non-empty list of " + ", ".join(f"'{m}'" for m in CORRUPT_MODES),
    ),
    "pct": _number(lambda v: -100 < v < INF and v != 0, "> -100 and not 0"),
    "extra_us": _number(lambda v: 0 < v < INF, "of microseconds > 0"),
    "start_event": _EVENT,
    "end_event": _EVENT,
    "run_length": _integer(lambda v: v >= 1, ">= 1"),
    "workers": _integer(lambda v: 1 <= v <= 64, "in 1..64"),
    "duty": _number(lambda v: 0 < v <= 1, "in (0, 1]"),
    "name": _Rule((str,), lambda v: bool(v.strip()), "a non-empty string"),
    "description": _Rule((str,), lambda v: True, "a string"),
    "seed": _integer(lambda v: 0 <= v < 2**63, "in 0..2^63-1"),
    "model": _choice(LATENCY_MODELS),
    "order_us": _MICROS,
    "feed_us": _MICROS,
    "conflation": _choice(CONFLATIONS),
    "queue_bound": _integer(lambda v: v >= 1, ">= 1"),
    **dict.fromkeys(STAGES, _MICROS),
}


def _hint(key: str, known: Iterable[str]) -> str:
    options = sorted(known)
    close = difflib.get_close_matches(key, options, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (expected one of: {', '.join(options)})"


def _value(where: str, key: str, value: object) -> object:
    """`value` checked against the rule of `key` (ints widened to float where a number is due)."""
    rule = _RULES[key]
    right_type = isinstance(value, rule.types) and not isinstance(value, bool)
    if not right_type or not rule.ok(value):
        raise ScenarioError(
            f"{where}: '{key}' must be {rule.expect}; found {type(value).__name__} {value!r}"
        )
    if float in rule.types:
        return float(cast(float, value))
    return tuple(value) if isinstance(value, list) else value


def _table(where: str, what: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: {what} must be a table; found {type(raw).__name__} {raw!r}")
    return raw


def _fields(where: str, cls: type[Any], raw: Mapping[str, Any], skip: str = "") -> dict[str, Any]:
    """Validated keyword arguments for dataclass `cls` from a TOML table."""
    declared = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key != skip and key not in declared:
            raise ScenarioError(f"{where}: unknown key '{key}'{_hint(key, declared)}")
    for name, f in declared.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in raw:
            raise ScenarioError(f"{where}: missing key '{name}' ({_RULES[name].expect})")
    return {k: _value(where, k, v) for k, v in raw.items() if k != skip}


def _entry(
    where: str, raw: object, kinds: Mapping[str, type[Any]], kind_rule: str
) -> TransformSpec | FaultSpec:
    table = _table(where, "each entry", raw)
    if "kind" not in table:
        raise ScenarioError(f"{where}: missing key 'kind' ({kind_rule}: {', '.join(kinds)})")
    kind = table["kind"]
    if not isinstance(kind, str) or kind not in kinds:
        raise ScenarioError(f"{where}: unknown kind {kind!r}{_hint(str(kind), kinds)}")
    cls = kinds[kind]
    where = f"{where} ({kind})"
    values = _fields(where, cls, table, skip="kind")
    end, start = values.get("end_event"), values.get("start_event", 0)
    if end is not None and end <= start:
        raise ScenarioError(
            f"{where}: 'end_event' must be greater than 'start_event' ({start}); found int {end}"
        )
    spec: TransformSpec | FaultSpec = cls(**values)
    return spec


def _entries(
    path: Path, doc: Mapping[str, Any], name: str, kinds: Mapping[str, type[Any]]
) -> tuple[Any, ...]:
    raw = doc.get(name, [])
    if not isinstance(raw, list):
        raise ScenarioError(
            f"{path}: '{name}' must be an array of tables, written [[{name}]]; "
            f"found {type(raw).__name__}"
        )
    rule = "a transform kind" if name == "transform" else "a fault kind"
    return tuple(
        _entry(f"{path}: [[{name}]] #{i}", entry, kinds, rule) for i, entry in enumerate(raw, 1)
    )


def _latency(path: Path, raw: object) -> LatencyOverrides:
    where = f"{path}: [latency]"
    table = dict(_table(where, "[latency]", raw))
    stages = _table(f"{where}", "'stage_us'", table.pop("stage_us", {}))
    values = _fields(where, LatencyOverrides, table, skip="stage_us")
    stage_where = f"{path}: [latency.stage_us]"
    for key in stages:
        if key not in STAGES:
            raise ScenarioError(f"{stage_where}: unknown key '{key}'{_hint(key, STAGES)}")
    stage_us = tuple((k, cast(float, _value(stage_where, k, v))) for k, v in stages.items())
    return LatencyOverrides(stage_us=stage_us, **values)


_SECTIONS: Final = ("scenario", "transform", "fault", "latency")


def _parse(path: Path, doc: Mapping[str, Any]) -> Scenario:
    for key in doc:
        if key not in _SECTIONS:
            raise ScenarioError(f"{path}: unknown table [{key}]{_hint(key, _SECTIONS)}")
    if "scenario" not in doc:
        raise ScenarioError(f"{path}: missing table [scenario] (with name, description, seed)")
    values = _head(path, _table(f"{path}", "[scenario]", doc["scenario"]))
    return Scenario(
        **values,
        transforms=_entries(path, doc, "transform", TRANSFORM_KINDS),
        faults=_entries(path, doc, "fault", FAULT_KINDS),
        latency=_latency(path, doc.get("latency", {})),
        path=path,
    )


def _head(path: Path, table: Mapping[str, Any]) -> dict[str, Any]:
    """name, description and seed: the only keys of [scenario] (the rest are tables)."""
    where = f"{path}: [scenario]"
    keys = ("name", "description", "seed")
    for key in table:
        if key not in keys:
            raise ScenarioError(f"{where}: unknown key '{key}'{_hint(key, keys)}")
    if "name" not in table:
        raise ScenarioError(f"{where}: missing key 'name' ({_RULES['name'].expect})")
    return {k: _value(where, k, v) for k, v in table.items()}


def scenario_names() -> list[str]:
    """The scenarios shipped in scenarios/, by file stem."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _resolve(spec: str | Path) -> Path:
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        return path
    shipped = SCENARIO_DIR / f"{spec}.toml"
    if shipped.is_file():
        return shipped
    raise ScenarioError(
        f"unknown scenario '{spec}'{_hint(str(spec), scenario_names())} "
        "(a name in scenarios/ or a path to a .toml file)"
    )


def load_scenario(spec: str | Path) -> Scenario:
    """Read and validate one scenario: a path to a TOML file or a name in scenarios/."""
    path = _resolve(spec)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML ({e})") from e
    return _parse(path, doc)


def load_scenarios(specs: Iterable[str | Path]) -> tuple[Scenario, ...]:
    """Several scenarios; names must differ, since a stress report compares them by name."""
    scenarios = tuple(load_scenario(s) for s in specs)
    seen: dict[str, Path | None] = {}
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError(
                f"two scenarios are named '{s.name}': {seen[s.name]} and {s.path}; "
                "names must be unique within a stress run"
            )
        seen[s.name] = s.path
    return scenarios
