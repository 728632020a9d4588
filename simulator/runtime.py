"""The only place that picks concrete implementations: Clock + Source + Venue, the strategy's
stages from its configuration, and the engine's parts (scheduler, decision stamp). Replay,
stress, `--latency recorded` and live runs (`build_live`) are all composed here, and
`write_run` writes every run's summary and manifest.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from time import perf_counter
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq

from simulator import instruments
from simulator.clock import SimClock, WallClock
from simulator.engine import Engine, EngineState, Pipeline
from simulator.engine_live import LiveEngine, RecordedStamp
from simulator.engine_timed import SimulatedTime, TimeModel
from simulator.errors import ConfigError, DataError, InvariantViolation, ModelError
from simulator.execution import FixedLatency, SimVenue, ZeroLatency
from simulator.features import FeatureBuffer, warmup
from simulator.features.user import MixedFeatures, build_feature_stage
from simulator.features.window import WindowedFeatures
from simulator.instruments import WHOLE_UNITS, Instrument
from simulator.market import MarketState
from simulator.models.breaker import CircuitBreaker
from simulator.models.precomputed import PrecomputedRunner
from simulator.models.rule import SIGNAL_OUTPUT, RuleRunner
from simulator.plugins import Requirement, build, load_class
from simulator.policies import ObiRulePolicy, ThresholdPolicy
from simulator.portfolio import Portfolio
from simulator.protocols import FeatureStage, ModelRunner, Policy, RiskCheck
from simulator.recording import LIVE_ROLL_CHUNKS, STAGES, RunRecorder, write_manifest
from simulator.risk import (
    FeedHealth,
    KillSwitch,
    MaxNotional,
    MaxOrderSize,
    MaxPosition,
    MinNotional,
    ModelHealth,
    OrderRateLimit,
    PriceCollar,
    RiskChain,
    StaleData,
)
from simulator.session import SessionRef, resolve_session
from simulator.settings import (
    LatencySection,
    ModelSection,
    PolicySection,
    RiskSection,
    Settings,
    VenueSection,
)
from simulator.sources.recorded import (
    ParquetSource,
    file_time_span,
    open_parquet,
    stop_readers,
)
from simulator.sources.table import TableSource
from simulator.sources.timer import TimerSource
from simulator.store import file_sha256
from simulator.timing import ServiceModel, parse_service_model
from simulator.types import book_levels
from simulator.warm import warm

PACKAGES = ("ticktape", "numpy", "pyarrow", "polars", "duckdb", "onnxruntime", "torch")
MS: int = 1_000_000
US: int = 1_000


@dataclass(frozen=True, slots=True)
class RunResult:
    out_dir: Path
    manifest: dict[str, object]

    @property
    def summary(self) -> dict[str, object]:
        summary = self.manifest["summary"]
        if not isinstance(summary, dict):
            raise InvariantViolation("a run manifest's summary must be a dict")
        return summary


def session_sources(session: SessionRef, config: Settings) -> tuple[list[ParquetSource], int]:
    """The session's sources for the strategy's kinds, in priority order, and the book depth.

    A live recording is consumed in its recorded order, (ts_recv, seq) with seq counted
    across kinds, so there every source gets the same priority and seq breaks every tie."""
    kinds, levels = session_kinds(session, config)
    live = is_live_recording(session)
    sources = [session.source(kind, priority=0 if live else i) for i, kind in enumerate(kinds)]
    return sources, levels


def is_live_recording(session: SessionRef) -> bool:
    return session.meta.get("recorder") == "live"


def recorded_event_sources(session: SessionRef) -> list[TableSource]:
    """A live recording's timer ticks and feed status events, at their recorded times."""
    if not is_live_recording(session) or not session.files:
        return []
    directory = session.directory
    return [
        TableSource(directory / f"{kind}.parquet", kind)
        for kind in ("timer", "status")
        if (directory / f"{kind}.parquet").exists()
    ]


def warming(history: SessionRef, config: Settings, staged: StagedPipeline) -> Callable[[], None]:
    """What a run's `begin()` calls to warm `staged` from `history` (simulator/warm.py): its
    events in replay order, its timer ticks included."""

    def run() -> None:
        sources, _ = session_sources(history, config)
        timers = timer_source(sources, config.strategy.timer_ms)
        extra = [timers] if timers is not None else []
        warm(staged.pipeline.features, staged.pipeline.runner, [*sources, *extra])

    return run


def recorded_decisions(session: SessionRef) -> dict[int, int]:
    """`--latency recorded`: event index -> the decision time live measured for it."""
    if not is_live_recording(session) or not session.files:
        raise ConfigError(
            f"--latency recorded needs a session recorded by `ticktape live`; {session.name} "
            "is not one (its meta.json has no recorder: live)"
        )
    path = session.directory / "decisions.parquet"
    if not path.exists():
        return {}
    table = open_parquet(path).read()
    index = table.column("event_index").to_pylist()
    return dict(zip(index, table.column("ts_decision").to_pylist(), strict=True))


def session_kinds(session: SessionRef, config: Settings) -> tuple[list[str], int]:
    """The strategy's kinds that the session has, in priority order, and the book depth."""
    wanted = list(config.strategy.kinds)
    if "book" in wanted and "book" not in session.files and "quotes" in session.files:
        wanted[wanted.index("book")] = "quotes"  # an L1 session: quotes stand in for the book
    if "quotes" in wanted and "quotes" not in session.files and "book" in session.files:
        wanted[wanted.index("quotes")] = "book"
    kinds = [k for k in wanted if k in session.files]
    if config.venue.queue == "l3_fifo" and "orders" not in kinds:
        raise DataError(
            f"venue.queue 'l3_fifo' needs order-level data: add \"orders\" to strategy.kinds "
            f"and replay a session that has orders.parquet (LOBSTER imports do); session "
            f"{session.name} has {', '.join(sorted(session.files))}"
        )
    if not any(k in ("quotes", "book") for k in kinds):
        raise DataError(
            f"session {session.name} has {sorted(session.files)}; strategy "
            f"'{config.strategy.name}' needs quotes or a book"
        )
    levels = 1
    if "book" in kinds:
        levels = book_levels(open_parquet(session.files["book"]).schema_arrow.names)
    return kinds, levels


def timer_source(sources: list[ParquetSource], interval_ms: float) -> TimerSource | None:
    """Ticks over the session's span every `interval_ms` (None when 0), after its data sources
    in the merge order (at the same ts_recv, market data goes first)."""
    if interval_ms <= 0:
        return None
    spans = [file_time_span(s.path) for s in sources]
    start, end = min(span[1] for span in spans), max(span[2] for span in spans)
    return TimerSource(start, end, int(interval_ms * MS), priority=len(sources))


def build_features(config: Settings, levels: int) -> FeatureBuffer | MixedFeatures:
    """The built-in buffer, mixed with the user's feature classes when the strategy has some."""
    base = Path(config.strategy.dir)
    return build_feature_stage(config.features.names, config.features.plugins, base=base,
                               levels=levels)  # fmt: skip


def _require_trades_if_needed(
    features: FeatureBuffer | MixedFeatures, sources: list[ParquetSource], session: SessionRef
) -> None:
    """Trade features never become ready without trades: say so instead of never trading."""
    if warmup(features.config)[1] > 0 and not any(s.kind == "trades" for s in sources):
        raise DataError(
            f"the strategy's features include trade features (trade_flow, time_since_trade) but "
            f"session {session.name} has no trades (it has {', '.join(sorted(session.files))}); "
            "replay a session with trades or set features.names without them"
        )


def build_runner(
    section: ModelSection, features: FeatureBuffer | MixedFeatures, strategy_dir: Path
) -> ModelRunner:
    kind = section.kind
    n = len(features.names)
    path = strategy_dir / section.path if section.path else None
    if kind == "rule":
        name = section.feature
        if name not in features.names:
            raise ConfigError(f"model.feature '{name}' is not computed; features: {features.names}")
        return RuleRunner(features.names.index(name))
    if path is None or not path.exists():
        raise ConfigError(f"model.path '{section.path}' not found under {strategy_dir}")
    if kind in ("onnx", "torch"):
        return _shaped_runner(section, path, n)
    if section.outputs or section.window:
        raise ConfigError(
            "model.outputs and model.window apply to ONNX and TorchScript (kind torch) models; "
            f"model.kind is '{kind}'"
        )
    if kind == "gru":
        from simulator.models.torch_runner import StatefulTorchRunner

        return StatefulTorchRunner(path, n, section.hidden_size)
    if kind == "precomputed":
        return PrecomputedRunner.from_file(path)
    raise InvariantViolation(f"model.kind '{kind}' passed the settings' check")


def _shaped_runner(section: ModelSection, path: Path, n: int) -> ModelRunner:
    """An ONNX or TorchScript runner: [1, n] or a window, any number of outputs."""
    # imported here: onnxruntime and torch load only for the strategies that use them
    if section.kind == "onnx":
        from simulator.models.onnx_runner import OnnxRunner as Runner
    else:
        from simulator.models.torch_runner import TorchRunner as Runner  # type: ignore[assignment]
    try:
        return Runner(path, n, outputs=section.outputs, window=section.window)
    except ModelError as e:  # name the key; the message names the file and what is wrong
        raise ConfigError(f"model.path '{section.path}': {e}") from e


def build_policy(
    section: PolicySection, model_kind: str = "rule", instrument: Instrument = WHOLE_UNITS
) -> Policy:
    """The decision policy of the [policy] section (a built-in, by `kind`). obi_rule on the
    rule model compares the rule's signal (the float64 imbalance), not p. `policy.lot = 0`
    takes the instrument's lot."""
    lot = section.lot or instrument.lot
    if section.kind == "obi_rule":
        return ObiRulePolicy(
            threshold=section.threshold,
            size=section.size,
            lot=lot,
            obi_output=SIGNAL_OUTPUT if model_kind == "rule" else None,
            max_notional=section.max_notional,
            min_notional=instrument.min_notional,
        )
    if section.kind == "threshold":
        return ThresholdPolicy(
            threshold=section.threshold,
            max_position=section.max_position,
            lot=lot,
            exponent=section.exponent,
            max_notional=section.max_notional,
            min_notional=instrument.min_notional,
        )
    raise InvariantViolation(f"policy.kind '{section.kind}' passed the settings' check")


POLICY_NEEDS = Requirement(stage="policy", methods=("decide", "reset"))
RISK_CHECK_NEEDS = Requirement(stage="risk check", methods=("check",))


def build_user_policy(section: PolicySection, base: Path) -> Policy:
    """The user's policy class of `policy.class`, built with the section's other keys."""
    cls = load_class(section.cls, key="policy.class", base=base, needs=POLICY_NEEDS)
    return cast("Policy", build(cls, section.params, key="policy"))


def user_risk_checks(section: RiskSection, base: Path) -> list[RiskCheck]:
    """The user's checks of `risk.checks`, in order."""
    checks = []
    for i, spec in enumerate(section.checks):
        key = f"risk.checks[{i}]"
        cls = load_class(spec.ref, key=key, base=base, needs=RISK_CHECK_NEEDS)
        checks.append(cast("RiskCheck", build(cls, spec.params, key=key)))
    return checks


def build_risk(
    section: RiskSection, user: Sequence[RiskCheck] = (), instrument: Instrument = WHOLE_UNITS
) -> RiskChain:
    """The built-in chain (unless risk.builtins = false), then the user's checks; the
    minimum-notional check only where the instrument has a minimum."""
    minimum = [MinNotional(instrument.min_notional)] if instrument.min_notional > 0 else []
    if not section.builtins:
        return RiskChain(list(user))
    return RiskChain(
        [  # the state of the world first (data, kill switch, model), then the order's limits
            FeedHealth(),
            StaleData(int(section.stale_after_ms * MS)),
            KillSwitch(max_drawdown=section.max_drawdown, daily_loss=section.daily_loss),
            ModelHealth(),
            MaxOrderSize(section.max_order_size),
            MaxPosition(section.max_position),
            MaxNotional(section.max_notional),
            *minimum,
            PriceCollar(section.price_collar_bps),
            OrderRateLimit(section.max_orders, int(section.rate_window_ms * MS)),
            *user,
        ]
    )


def build_time_model(
    section: LatencySection, seed: int, wrap: Callable[[ServiceModel], ServiceModel] | None = None
) -> TimeModel | None:
    """The simulated-time model of the [latency] section (its service model wrapped by
    `wrap` when given); None for the plain zero model with nothing to wrap."""
    plain = (section.model == "zero" and section.feed_us == 0 and section.conflation == "all"
             and section.queue_bound == 0 and section.scheduler == "server")  # fmt: skip
    if plain and wrap is None:
        return None
    service = parse_service_model(section.model, seed=seed)
    return TimeModel(
        service=service if wrap is None else wrap(service),
        feed_ns=round(section.feed_us * US),
        conflate_latest=section.conflation == "latest",
        queue_bound=section.queue_bound,
        pipelined=section.scheduler == "pipelined",
    )


def build_venue(section: VenueSection) -> SimVenue:
    latency: ZeroLatency | FixedLatency = ZeroLatency()
    if section.latency == "fixed":
        latency = FixedLatency(int(section.entry_us * US), int(section.response_us * US))
    return SimVenue(
        latency=latency,
        taker_fee_bps=section.taker_fee_bps,
        maker_fee_bps=section.maker_fee_bps,
        depth=section.depth,
        queue=section.queue,
        queue_power=section.queue_power,
        lot_size=section.lot_size,
        partial_fills=section.partial_fills,
    )


def run_id(config: Settings, session: SessionRef, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", session.name.strip("/"))[-60:]
    return f"{config.strategy.name}--{slug}--seed{seed}"


def unique_dir(root: Path, name: str) -> Path:
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


@dataclass(frozen=True, slots=True)
class StagedPipeline:
    """A configured pipeline, with its circuit breaker (if any) and the health it reports."""

    pipeline: Pipeline
    features: FeatureBuffer | MixedFeatures
    health: Callable[[], bool]
    breaker: CircuitBreaker | None


def build_pipeline(
    config: Settings,
    levels: int,
    clock: SimClock | WallClock,
    *,
    wrap_model: Callable[[ModelRunner], ModelRunner] | None = None,
    instrument: Instrument = WHOLE_UNITS,
) -> StagedPipeline:
    """Features, model (inside its circuit breaker when enabled), policy and risk: the same
    objects for replay, stress and live; `instrument` gives the lot and minimum notional."""
    stage = build_features(config, levels)
    features: FeatureStage = stage
    strategy_dir = Path(config.strategy.dir)
    runner = build_runner(config.model, stage, strategy_dir)
    width = getattr(runner, "n_outputs", 1)  # the fallback answers with as many outputs
    window = getattr(runner, "window", 0)
    if window:  # a sequence model: the stage hands it the last W vectors, flat
        features = WindowedFeatures(features, window)
    if wrap_model is not None:
        runner = wrap_model(runner)
    health: Callable[[], bool] = lambda: True  # noqa: E731
    breaker: CircuitBreaker | None = None
    if config.breaker.enabled:
        index = _fallback_index(config.breaker.fallback, features)
        if window:  # the fallback reads the newest vector: the window's last row
            index += (window - 1) * len(features.names)
        fallback = RuleRunner(index, width=width)
        breaker = CircuitBreaker(
            runner,
            fallback,
            clock=clock,
            latency_budget_ns=int(config.breaker.latency_budget_us * US) or None,
            max_violations=config.breaker.max_violations,
            cooldown_ns=int(config.breaker.cooldown_ms * MS),
        )
        runner, health = breaker, lambda: not breaker.is_open
    policy = (
        build_user_policy(config.policy, strategy_dir)
        if config.policy.cls
        else build_policy(config.policy, config.model.kind, instrument)
    )
    risk = build_risk(config.risk, user_risk_checks(config.risk, strategy_dir), instrument)
    pipeline = Pipeline(
        features=features, runner=runner, policy=policy, risk=risk, instrument=instrument
    )
    return StagedPipeline(pipeline, stage, health, breaker)


def _fallback_index(name: str, features: FeatureStage) -> int:
    """The slot the breaker's fallback rule reads as obi: a feature the strategy computes."""
    if name not in features.names:
        raise ConfigError(
            f"breaker.fallback '{name}' is not among the strategy's features.names "
            f"({', '.join(features.names)}); add it there, set breaker.fallback to one of them, "
            "or set breaker.enabled = false"
        )
    return features.names.index(name)


@dataclass(frozen=True, slots=True)
class ReplayHooks:
    """What a stress run changes, and nothing else: the sources the session is read through,
    a wrapper around the primary model (inside the circuit breaker), extra summary figures."""

    open_sources: Callable[[SessionRef, list[str]], list[ParquetSource]] | None = None
    wrap_model: Callable[[ModelRunner], ModelRunner] | None = None
    wrap_service: Callable[[ServiceModel], ServiceModel] | None = None
    summary: Callable[[], dict[str, object]] | None = None


def replay(
    session: SessionRef,
    config: Settings,
    *,
    out_dir: Path,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    hooks: ReplayHooks | None = None,
) -> RunResult:
    """Replay `session` through the configured pipeline; write the run into `out_dir`."""
    started = perf_counter()
    hooks = hooks or ReplayHooks()
    if hooks.open_sources is None:
        sources, levels = session_sources(session, config)
    else:  # a stress run opens the same kinds through its own transforms
        kinds, levels = session_kinds(session, config)
        sources = hooks.open_sources(session, kinds)
    recorded = recorded_event_sources(session)
    timers = None if is_live_recording(session) else timer_source(sources, config.strategy.timer_ms)
    total = sum(open_parquet(s.path).metadata.num_rows for s in sources) + len(timers or ())
    total += sum(len(r) for r in recorded)
    clock = SimClock()
    staged = build_pipeline(
        config,
        levels,
        clock,
        wrap_model=hooks.wrap_model,
        instrument=instruments.from_meta(session.meta, session.name),
    )
    _require_trades_if_needed(staged.features, sources, session)
    pipeline, health, breaker = staged.pipeline, staged.health, staged.breaker
    # every setting is checked before the recorder creates out_dir and starts its thread
    venue = build_venue(config.venue)
    replayed = config.latency.model == "recorded"
    decisions = recorded_decisions(session) if replayed else {}
    time_model = None if replayed else build_time_model(config.latency, seed, hooks.wrap_service)
    recorder = RunRecorder(out_dir)
    portfolio = Portfolio()
    parts: dict[str, Any] = {
        "clock": clock,
        "sources": [*sources, *recorded, *([timers] if timers is not None else [])],
        "market": MarketState(levels),
        "pipeline": pipeline,
        "venue": venue,
        "portfolio": portfolio,
        "recorder": recorder,
        "model_healthy": health,
        "progress": None if progress is None else (lambda n: progress(n, total)),
        "time_zone": session.time_zone,
        "decide_per_timestamp": config.strategy.decide == "timestamp",
    }
    if "warm_from" in session.meta:  # a live session warmed from history: replay it warmed
        data_dir = session.directory.parents[2]  # <data>/<venue>/<SYMBOL>/<start>
        history = resolve_session(str(session.meta["warm_from"]), data_dir)
        parts["warm"] = warming(history, config, staged)
    if replayed:  # live's decision times, at once
        parts["stamp"] = RecordedStamp(decisions)
    else:
        parts["scheduler"] = None if time_model is None else SimulatedTime(time_model)
    engine = Engine(**parts)
    loaded = perf_counter()
    try:
        state = engine.run()
        ran = perf_counter()
        digest = recorder.close()
    except BaseException:  # failed or interrupted (Ctrl-C): no thread may outlive the run
        stop_readers()
        recorder.abort()
        raise
    _, manifest = write_run(
        RunOutcome(
            out_dir=out_dir,
            session=session.name,
            config=config,
            seed=seed,
            state=state,
            recorder=recorder,
            portfolio=portfolio,
            breaker=breaker,
            digest=digest,
            latency_model=config.latency.model,
            timings={"load_s": loaded - started, "run_s": ran - loaded},
        ),
        summary_extra=hooks.summary() if hooks.summary is not None else {},
        manifest_extra={
            "data_files": {
                str(path): file_sha256(path)
                for path in [*(s.path for s in sources), *(r.path for r in recorded)]
            },
            "time_zone": session.time_zone,
            "feature_kernel": staged.features.kernel,  # native or python: same bits
            "source_checks": {s.name: dict(s.report.counts) for s in sources},
        },
    )
    return RunResult(out_dir=out_dir, manifest=manifest)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """What a finished run (replay, stress scenario or live symbol) hands to `write_run`."""

    out_dir: Path
    session: str
    config: Settings
    seed: int
    state: EngineState
    recorder: RunRecorder
    portfolio: Portfolio
    breaker: CircuitBreaker | None
    digest: str
    latency_model: str
    timings: dict[str, float]  # run_s (and load_s); events_per_s is derived here


def write_run(
    outcome: RunOutcome,
    *,
    summary_extra: dict[str, object] | None = None,
    manifest_extra: dict[str, object] | None = None,
) -> tuple[dict[str, object], dict[str, object]]:
    """The one writer of every run's summary and manifest.json (replay, stress and live):
    the same keys for every mode, plus what the mode adds. Returns (summary, manifest)."""
    state, recorder = outcome.state, outcome.recorder
    summary = run_summary(state, recorder, outcome.portfolio, outcome.digest)
    summary["breaker_trips"] = write_breaker(outcome.breaker, outcome.out_dir)
    summary["latency_model"] = outcome.latency_model
    summary["n_skipped"], summary["n_dropped"] = state.n_skipped, state.n_dropped
    summary.update(summary_extra or {})
    run_s = outcome.timings["run_s"]
    manifest: dict[str, object] = {
        "session": outcome.session,
        "strategy": outcome.config.strategy.name,
        "config": outcome.config.as_dict(),
        "seed": outcome.seed,
        "versions": versions(),
        "timings": {**outcome.timings, "events_per_s": state.n_events / max(run_s, 1e-9)},
        "latency_us": {stage: recorder.histograms[stage].summary() for stage in STAGES},
        **(manifest_extra or {}),
        "summary": summary,
        "digest": outcome.digest,
    }
    write_manifest(outcome.out_dir, manifest)
    return summary, manifest


@dataclass(frozen=True, slots=True)
class LiveParts:
    """The parts of one live symbol's engine, built here like a replay's (runtime is the one
    composition root): the wall clock, the staged pipeline, recorder, portfolio, market."""

    clock: WallClock
    staged: StagedPipeline
    recorder: RunRecorder
    portfolio: Portfolio
    market: MarketState
    engine: LiveEngine


def build_live(
    config: Settings,
    levels: int,
    run_dir: Path,
    *,
    wrap_model: Callable[[ModelRunner], ModelRunner] | None = None,
    warm_from: SessionRef | None = None,
    instrument: Instrument = WHOLE_UNITS,
) -> LiveParts:
    """One live symbol's engine: a WallClock, the same pipeline objects as a replay, the
    simulated venue, its decisions dated by the wall clock (engine_live.WallClockStamp);
    with `warm_from`, its features and model are warmed from that recorded session."""
    clock = WallClock()
    staged = build_pipeline(config, levels, clock, wrap_model=wrap_model, instrument=instrument)
    # spilled by the live loop; its decisions roll into parts often (memory stays flat)
    recorder = RunRecorder(run_dir, spill_at_flush=False, roll_chunks=LIVE_ROLL_CHUNKS)
    portfolio = Portfolio()
    market = MarketState(levels)
    engine = LiveEngine(
        wall=clock.wall_ns,
        clock=clock,
        market=market,
        pipeline=staged.pipeline,
        venue=build_venue(config.venue),
        portfolio=portfolio,
        recorder=recorder,
        model_healthy=staged.health,
        warm=None if warm_from is None else warming(warm_from, config, staged),
    )
    return LiveParts(clock, staged, recorder, portfolio, market, engine)


def run_summary(
    state: EngineState, recorder: RunRecorder, portfolio: Portfolio, digest: str
) -> dict[str, object]:
    tables = recorder.tables
    return {
        "n_events": state.n_events,
        "n_orders": tables.n_orders,
        "n_fills": tables.n_fills,
        "n_rejections": tables.n_rejections,
        "rejections_by_reason": tables.rejection_counts(),
        "n_under_minimum": state.n_under_minimum,  # orders the policy did not send: too small
        # the one PnL everywhere: after fees (= final_equity - initial cash), with its parts
        "net_pnl": portfolio.realized_pnl + portfolio.unrealized_pnl - portfolio.fees,
        "realized_pnl": portfolio.realized_pnl,
        "unrealized_pnl": portfolio.unrealized_pnl,
        "fees": portfolio.fees,
        "final_position": portfolio.position,
        "final_equity": portfolio.equity,
        "max_drawdown": portfolio.max_drawdown,
        "digest": digest,
    }


def write_breaker(breaker: CircuitBreaker | None, out_dir: Path) -> int:
    """Every breaker switch of the run as `breaker_switches.parquet`; returns the trips."""
    switches = [] if breaker is None else breaker.switches
    table = pa.table(
        {
            "ts": pa.array([s.ts for s in switches], pa.int64()),
            "event_index": pa.array([s.event_index for s in switches], pa.int64()),
            "state": pa.array([str(s.state) for s in switches], pa.string()),
            "reason": pa.array([s.reason for s in switches], pa.string()),
        }
    )
    pq.write_table(table, out_dir / "breaker_switches.parquet")
    return 0 if breaker is None else breaker.counts.trips


def versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
