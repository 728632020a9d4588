"""Typed strategy settings: one frozen dataclass per TOML section, with the defaults every
strategy starts from, validated once when a strategy loads.

A strategy TOML holds only what it changes; `simulator.config` merges it (and `--config`,
`--set`) over `default_dict()` and builds `Settings` from the result. Range errors name the key
the user typed (`policy.threshold`), never a class or an internal field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from simulator.errors import ConfigError
from simulator.plugins import PluginSpec
from simulator.types import KINDS, QUEUE_MODELS

MODEL_KINDS = ("rule", "onnx", "torch", "gru", "precomputed")
POLICY_KINDS = ("threshold", "obi_rule")  # the built-in policies (simulator.policies)


def _fail(key: str, expected: str, value: object) -> None:
    raise ConfigError(f"{key} must be {expected}; found {value!r}")


def _positive(value: float) -> bool:
    return 0.0 < value < math.inf  # False for NaN


def _non_negative(value: float) -> bool:
    return 0.0 <= value < math.inf


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Rule = tuple[str, Callable[[Any], bool], str]
"""(key in the section, test of its value, what was expected) for one range check."""


class _Section:
    """Range checks shared by every section: `RULES` name keys as the user types them."""

    __slots__ = ()
    SECTION: ClassVar[str]
    RULES: ClassVar[tuple[Rule, ...]] = ()

    def __post_init__(self) -> None:
        for key, ok, expected in self.RULES:
            value = getattr(self, key)
            if not ok(value):
                _fail(f"{self.SECTION}.{key}", expected, value)
        self.check()

    def check(self) -> None:
        """Checks between keys (subclasses)."""

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        """TOML values as the fields' types (subclasses with richer fields)."""
        return _tuples(values)

    def as_dict(self) -> dict[str, Any]:
        """The section as TOML values: `typed`'s inverse (lists, plug-ins as named)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(v) if isinstance(v, list) else v for key, v in values.items()}


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


def _specs(values: dict[str, Any], section: str, key: str) -> tuple[PluginSpec, ...]:
    """A list of plug-in references, each checked and named by its place in the TOML."""
    return tuple(
        PluginSpec.of(raw, f"{section}.{key}[{i}]") for i, raw in enumerate(values.get(key, ()))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategySection(_Section):
    SECTION: ClassVar[str] = "strategy"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("kinds", lambda v: bool(v) and all(k in KINDS for k in v) and len(set(v)) == len(v),
         "a non-empty list of distinct kinds among " + ", ".join(KINDS)),
        ("timer_ms", _non_negative, "a finite number >= 0 (0 = no timer)"),
        ("decide", *_one_of("event", "timestamp")),
    )  # fmt: skip

    name: str = ""
    dir: str = ""  # where the strategy's files are; set when it loads
    description: str = ""
    kinds: tuple[str, ...] = ("quotes",)
    timer_ms: float = 0.0
    # event: decide after every event; timestamp: once per timestamp, after all its rows
    # (hftbacktest's order of work, with trades listed before the book in `kinds`)
    decide: str = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeaturesSection(_Section):
    SECTION: ClassVar[str] = "features"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("names", lambda v: len(set(v)) == len(v), "a list of distinct feature names"),
    )

    names: tuple[str, ...] = ()  # () = the whole built-in library; else built-ins and plug-ins
    plugins: tuple[PluginSpec, ...] = ()  # the user's feature classes, "file.py:Class"

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**_tuples(values), "plugins": _specs(values, "features", "plugins")}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSection(_Section):
    SECTION: ClassVar[str] = "model"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("kind", *_one_of(*MODEL_KINDS)),
        ("hidden_size", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        ("window", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = from the model)"),
    )

    kind: str = "rule"
    path: str = ""  # model file, relative to the strategy's TOML
    outputs: tuple[str, ...] = ()  # onnx, torch: the outputs the policy gets, in order; () = all
    # onnx: W of a [1, W, n] input when the model leaves it symbolic; torch: W (0: [1, n])
    window: int = 0
    feature: str = "l1_imbalance"  # rule: the feature read as obi
    hidden_size: int = 0  # gru: the size of the carried hidden state

    def check(self) -> None:
        if self.kind == "gru" and self.hidden_size < 1:
            _fail("model.hidden_size", "an integer >= 1 for model.kind 'gru'", self.hidden_size)
        if self.kind not in ("rule",) and not self.path:
            _fail("model.path", f"a model file for model.kind '{self.kind}'", self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSection(_Section):
    SECTION: ClassVar[str] = "breaker"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("latency_budget_us", _non_negative, "a finite number >= 0 (0 = no budget)"),
        ("max_violations", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("cooldown_ms", _non_negative, "a finite number >= 0"),
    )

    enabled: bool = True  # model errors fall back to the obi rule on `fallback`
    fallback: str = "l1_imbalance"  # the feature the fallback rule reads as obi
    latency_budget_us: float = 0.0  # 0 = no latency budget (keeps replays deterministic)
    max_violations: int = 3
    cooldown_ms: float = 1000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySection(_Section):
    """The decision policy: a built-in by `kind` (threshold-and-sizing, or the obi rule)."""

    SECTION: ClassVar[str] = "policy"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("kind", *_one_of(*POLICY_KINDS)),
        ("size", _positive, "a finite number > 0"),
        ("max_position", _positive, "a finite number > 0"),
        ("lot", _non_negative, "a finite number >= 0 (0: the instrument's lot)"),
        ("exponent", _positive, "a finite number > 0"),
        ("max_notional", _non_negative, "a finite number >= 0 (0: off)"),
    )

    kind: str = "threshold"
    threshold: float = 0.35  # obi_rule: on obi, in [0, 1); threshold: on |p - 0.5|, in [0, 0.5)
    size: float = 1.0  # obi_rule: units bought
    max_position: float = 10.0  # threshold: size at full confidence
    lot: float = 0.0  # 0: the instrument's lot (whole shares, 0.00001 BTC)
    exponent: float = 1.0
    max_notional: float = 0.0  # > 0: the size (threshold: at full confidence) <= it / mid
    cls: str = ""  # TOML `class`: the user's policy, "file.py:Class" (then `kind` is unused)
    params: Mapping[str, Any] = field(default_factory=dict)  # the other keys, for its __init__

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        ref = values.pop("class", "")
        if ref:  # the user's policy: every other key is one of its parameters
            return {"cls": ref, "params": values}
        known = {f.name for f in dataclasses.fields(cls)} - {"cls", "params"}
        params = {k: v for k, v in values.items() if k not in known}
        own = _tuples({k: v for k, v in values.items() if k in known})
        return {**own, "cls": ref, "params": params}

    def as_dict(self) -> dict[str, Any]:
        if self.cls:  # the user's policy: its reference, then its parameters
            return {"class": self.cls, **_plain_map(self.params)}
        out = _Section.as_dict(self)
        del out["params"]
        out["class"] = out.pop("cls")
        return out

    def check(self) -> None:
        if self.params and not self.cls:
            raise ConfigError(
                f"policy.{next(iter(self.params))}: unknown key (keys beyond the built-in "
                "policies' are parameters of your own policy: set policy.class)"
            )
        high = 0.5 if self.kind == "threshold" else 1.0
        if not 0.0 <= self.threshold < high:
            _fail("policy.threshold", f"in [0, {high}) for policy.kind '{self.kind}'",
                  self.threshold)  # fmt: skip
        if self.kind == "threshold" and self.lot > self.max_position:
            raise ConfigError(
                f"policy.lot ({self.lot}) is larger than policy.max_position "
                f"({self.max_position}); every target would round to 0 — lower policy.lot or "
                "raise policy.max_position"
            )


def _limit(value: float) -> bool:
    return value > 0.0  # inf allowed: that limit is off


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskSection(_Section):
    SECTION: ClassVar[str] = "risk"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("max_order_size", _positive, "a finite number > 0"),
        ("max_position", _positive, "a finite number > 0"),
        ("max_notional", _positive, "a finite number > 0"),
        ("price_collar_bps", _positive, "a finite number > 0"),
        ("max_orders", lambda v: _is_int(v) and v > 0, "an integer > 0"),
        ("rate_window_ms", _positive, "a finite number > 0"),
        ("stale_after_ms", _positive, "a finite number > 0"),
        ("max_drawdown", _limit, "> 0 (or inf: off)"),
        ("daily_loss", _limit, "> 0 (or inf: off)"),
    )

    max_order_size: float = 20.0
    max_position: float = 10.0
    max_notional: float = 10000.0
    price_collar_bps: float = 100.0
    max_orders: int = 50  # orders per rate window
    rate_window_ms: float = 1000.0
    stale_after_ms: float = 5000.0
    max_drawdown: float = 5000.0
    daily_loss: float = 5000.0
    builtins: bool = True  # false: only the user's checks run
    checks: tuple[PluginSpec, ...] = ()  # the user's checks, after the built-ins

    @classmethod
    def typed(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**_tuples(values), "checks": _specs(values, "risk", "checks")}


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueSection(_Section):
    SECTION: ClassVar[str] = "venue"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("depth", *_one_of("l1", "l2")),
        ("taker_fee_bps", math.isfinite, "a finite number"),
        ("maker_fee_bps", math.isfinite, "a finite number"),
        ("latency", *_one_of("zero", "fixed")),
        ("entry_us", _non_negative, "a finite number >= 0"),
        ("response_us", _non_negative, "a finite number >= 0"),
        ("queue", *_one_of(*QUEUE_MODELS)),
        ("queue_power", _positive, "a finite number > 0"),
        ("lot_size", _non_negative, "a finite number >= 0"),
    )

    depth: str = "l2"  # l1: opposite best capped at its size; l2: walk the book
    taker_fee_bps: float = 0.5
    maker_fee_bps: float = 0.0
    latency: str = "zero"  # zero | fixed (entry_us / response_us)
    entry_us: float = 0.0
    response_us: float = 0.0
    # resting limit orders: none (fill at the touch) | risk_averse | prob_power | prob_log
    # | l3_fifo (exact, needs the `orders` kind in strategy.kinds)
    queue: str = "none"
    queue_power: float = 3.0  # prob_power: f(x) = x ** queue_power
    lot_size: float = 0.0  # queue fills in whole lots (hftbacktest's lot); 0 = any quantity
    partial_fills: bool = True  # False: a queue fill takes the whole order (hftbacktest)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSection(_Section):
    SECTION: ClassVar[str] = "train"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("horizon", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("hidden", lambda v: all(_is_int(h) and h >= 1 for h in v), "a list of integers >= 1"),
        ("epochs", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("lr", _positive, "a finite number > 0"),
        ("seed", _is_int, "an integer"),
        ("seq_len", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    )

    session: str = "nasdaq/GOOG/2012-06-21"
    horizon: int = 10  # label: the mid move over the next `horizon` mid updates
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 8
    lr: float = 0.001
    seed: int = 7
    seq_len: int = 0  # gru: training sequence length


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySection(_Section):
    SECTION: ClassVar[str] = "latency"
    RULES: ClassVar[tuple[Rule, ...]] = (
        ("feed_us", _non_negative, "a finite number >= 0"),
        ("conflation", *_one_of("all", "latest")),
        ("queue_bound", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = unbounded)"),
        ("scheduler", *_one_of("server", "pipelined")),
    )

    model: str = "zero"  # zero | fixed:STAGE=US,... | measured | calibrated:FILE | recorded
    feed_us: float = 0.0  # extra feed delay added to every event's arrival
    conflation: str = "all"  # all | latest (skip a quote when a newer one is already waiting)
    queue_bound: int = 0  # 0 = unbounded; else events finding that many waiting are dropped
    scheduler: str = "server"  # server: one pipeline; pipelined: each stage its own server


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """A whole strategy configuration, typed: what `simulator.config.load_strategy` returns and
    every module reads. `Settings.of(toml_dict)` builds and validates it; `as_dict()` is the
    way back to the plain TOML-shaped dict."""

    strategy: StrategySection = field(default_factory=StrategySection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    model: ModelSection = field(default_factory=ModelSection)
    breaker: BreakerSection = field(default_factory=BreakerSection)
    policy: PolicySection = field(default_factory=PolicySection)
    risk: RiskSection = field(default_factory=RiskSection)
    venue: VenueSection = field(default_factory=VenueSection)
    train: TrainSection = field(default_factory=TrainSection)
    latency: LatencySection = field(default_factory=LatencySection)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Settings:
        """The typed, validated view of a merged config dict (see `simulator.config`)."""
        sections: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kind = SECTIONS[f.name]
            sections[f.name] = kind(**kind.typed(dict(config.get(f.name, {}))))
        return cls(**sections)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The whole configuration as a plain TOML-shaped dict, `Settings.of`'s inverse: the
        one place a typed configuration becomes data again (the manifest records it, the
        `--set` / `--config` overrides and sweep cells merge into it, content keys hash it)."""
        return {f.name: getattr(self, f.name).as_dict() for f in dataclasses.fields(self)}


SECTIONS: dict[str, type[Any]] = {
    "strategy": StrategySection,
    "features": FeaturesSection,
    "model": ModelSection,
    "breaker": BreakerSection,
    "policy": PolicySection,
    "risk": RiskSection,
    "venue": VenueSection,
    "train": TrainSection,
    "latency": LatencySection,
}
"""Every TOML section and its type (a section added here is known to --set and --config)."""


def default_dict() -> dict[str, dict[str, Any]]:
    """The defaults as a plain TOML-shaped dict (lists, not tuples): what a strategy TOML,
    `--config` and `--set` are merged over, key by key."""
    return Settings().as_dict()


OPEN_SECTIONS = frozenset({"policy"})
"""Sections that name a user class by `class`: a table setting it replaces the built-in keys,
and every other key of it is a parameter of that class."""


def _plain(value: object) -> object:
    """A field's value as TOML writes it: lists for tuples, a plug-in as its reference (a
    table when it has parameters), fresh containers (the frozen value is never shared)."""
    if isinstance(value, PluginSpec):
        table = value.table or bool(value.params)
        return {"class": value.ref, **_plain_map(value.params)} if table else value.ref
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return _plain_map(value)
    return value


def _plain_map(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(v) for key, v in values.items()}
