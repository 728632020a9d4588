"""`ticktape stress`: the baseline and each scenario as separate, seeded replays, side by side.

Each scenario replays the session through its stream transforms (bad ticks caught and dropped
by the contract checks, counted) and its model faults (inside the circuit breaker), in its own
worker process where cores allow, into `<out>/<scenario>/`. The comparison table
(`<out>/comparison.parquet`) puts every run's latency, rejections, breaker trips, fills and PnL
next to the baseline's. Scenarios that need the simulated-time latency model (stage or feed
latencies, conflation, queue bounds) are listed as not run rather than run half-way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from simulator import runtime
from simulator.clock import SimClock
from simulator.errors import SimulatorError
from simulator.protocols import ModelRunner
from simulator.recording import STAGES
from simulator.runtime import ReplayHooks, replay
from simulator.session import SessionRef, resolve_session
from simulator.settings import Settings
from simulator.sources.recorded import ParquetSource, check_file
from simulator.stress.faults import CpuContention, FaultChain, apply_faults
from simulator.stress.inject import StressedSource, apply_scenario, injection_summary
from simulator.stress.scenario import load_scenario
from simulator.stress.spec import CpuContentionSpec, LatencySpikeSpec, Scenario
from simulator.timing import INFERENCE, ServiceModel

BASELINE: Final = "calm"
STAGES_SHOWN: Final = STAGES  # every measured stage, tick-to-trade and the queueing delay


@dataclass(frozen=True, slots=True)
class StressJob:
    """Everything a worker process needs to run one scenario (plain, picklable values)."""

    session: str
    data_dir: str
    config: Settings
    scenario_path: str
    out_dir: str
    keep_latency_model: bool = False  # `--latency` was given: a scenario's model does not win


def overridden(scenario: Scenario, keep_model: bool) -> list[str]:
    """What a `--latency` model on the command line takes from the scenario: its stage times
    (a fixed model of its own), which would otherwise be dropped without a word."""
    return (
        ["its stage_us needs its own model; --latency names another"]
        if keep_model and scenario.latency.stage_us
        else []
    )


def unsupported(scenario: Scenario, config: Settings) -> list[str]:
    """What in the scenario cannot be honoured: background CPU load means something only
    when the pipeline's measured compute time is what is charged."""
    load = any(isinstance(f, CpuContentionSpec) for f in scenario.faults)
    model = config.latency.model
    return (
        [f"cpu_contention needs the measured model, not {model}"]
        if load and model != "measured"
        else []
    )


def run_one(job: StressJob) -> dict[str, object]:
    """Replay one scenario; return its row of the comparison table."""
    scenario = load_scenario(job.scenario_path)
    row: dict[str, object] = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "description": scenario.description,
        "definition": definition(scenario),
    }
    config = with_scenario_latency(job.config, scenario, keep_model=job.keep_latency_model)
    missing = unsupported(scenario, config) + overridden(scenario, job.keep_latency_model)
    if missing:
        return {**row, "status": f"not run: {', '.join(missing)}"}
    sources: list[StressedSource] = []
    chains: list[FaultChain] = []

    def open_sources(session: SessionRef, kinds: list[str]) -> list[ParquetSource]:
        sources.extend(apply_scenario(session, kinds, scenario))
        return list(sources)

    measured = config.latency.model == "measured"

    def wrap_model(primary: ModelRunner) -> ModelRunner:
        chain = apply_faults(primary, scenario.faults, seed=scenario.seed, measured=measured)
        chains.append(chain)
        return chain.runner

    def wrap_service(base: ServiceModel) -> ServiceModel:
        return _SpikeService(base, chains)  # spikes are charged to simulated inference time

    spikes = any(isinstance(f, LatencySpikeSpec) for f in scenario.faults)

    def extra() -> dict[str, object]:
        faults = {f"{c.name}.injected": c.injected for chain in chains for c in chain.counts()}
        skipped = [s for chain in chains for s in chain.skipped]
        return {"scenario": scenario.name, "injected": injection_summary(sources),
                "faults": faults, "faults_skipped": skipped}  # fmt: skip

    hooks = ReplayHooks(
        open_sources=open_sources,
        wrap_model=wrap_model,
        wrap_service=wrap_service if spikes and not measured else None,
        summary=extra,
    )
    session = resolve_session(job.session, Path(job.data_dir))
    load = [
        CpuContention(f.workers, f.duty)
        for f in scenario.faults
        if isinstance(f, CpuContentionSpec)
    ]
    try:
        with contextlib.ExitStack() as stack:
            for contention in load:  # noisy neighbours for the whole measured run
                stack.enter_context(contention)
            result = replay(session, config, out_dir=Path(job.out_dir), hooks=hooks)
    except SimulatorError as e:
        return {**row, "status": f"failed: {type(e).__name__}: {' '.join(str(e).split())}"}
    return {**row, "status": "ok", **_row(result.manifest)}


def check_inputs(
    session: SessionRef, config: Settings, scenarios: Sequence[Scenario], keep_model: bool
) -> None:
    """Raise what a worker would: the session's files under the replay's contract (a bad row
    stops a stress run as it stops a replay; only injected bad ticks are dropped, counted),
    and each scenario's settings (latency model, venue, timer, pipeline parts)."""
    kinds, levels = runtime.session_kinds(session, config)
    for kind in kinds:
        check_file(session.files[kind], kind=kind).raise_if_bad()
    runtime.build_pipeline(config, levels, SimClock())
    for scenario in scenarios:
        settings = with_scenario_latency(config, scenario, keep_model=keep_model)
        if unsupported(scenario, settings) or overridden(scenario, keep_model):
            continue
        if settings.latency.model == "recorded":
            runtime.recorded_decisions(session)
        else:
            runtime.build_time_model(settings.latency, scenario.seed)
        runtime.build_venue(settings.venue)
        if not runtime.is_live_recording(session):
            runtime.timer_source([session.source(k) for k in kinds], settings.strategy.timer_ms)


def definition(scenario: Scenario) -> str:
    """The scenario's transforms, faults and latency settings as one compact JSON line."""
    parts = [{"transform": t.kind, **_fields(t)} for t in scenario.transforms]
    parts += [{"fault": f.kind, **_fields(f)} for f in scenario.faults]
    latency = scenario.latency.as_dict()
    if latency:
        parts.append({"latency": latency})
    return json.dumps(parts, default=str)


def _fields(spec: object) -> dict[str, object]:
    return {k: v for k, v in dataclasses.asdict(spec).items() if k != "kind"}  # type: ignore[call-overload]


def with_scenario_latency(
    config: Settings, scenario: Scenario, *, keep_model: bool = False
) -> Settings:
    """A copy of `config` with the scenario's [latency] settings: stage times become a fixed
    model (unless it names one), order latency goes to the venue. With `keep_model` (the user
    named a model with `--latency`) the config's model stays: a scenario that needs another
    one (cpu_contention: measured) is then listed as not run, never run on a model not asked for.
    """
    wanted, latency = scenario.latency, config.latency
    model = latency.model
    if wanted.stage_us and not keep_model:
        model = "fixed:" + ",".join(f"{k}={v}" for k, v in sorted(dict(wanted.stage_us).items()))
    if wanted.model is not None and not keep_model:
        model = wanted.model
    latency = dataclasses.replace(
        latency,
        model=model,
        feed_us=latency.feed_us if wanted.feed_us is None else float(wanted.feed_us),
        conflation=latency.conflation if wanted.conflation is None else wanted.conflation,
        queue_bound=latency.queue_bound if wanted.queue_bound is None else wanted.queue_bound,
    )
    venue = config.venue
    if wanted.order_us is not None:
        venue = dataclasses.replace(venue, latency="fixed", entry_us=float(wanted.order_us))
    return dataclasses.replace(config, latency=latency, venue=venue)


class _SpikeService:
    """A service model that also charges the scenario's latency spikes to inference."""

    def __init__(self, base: ServiceModel, chains: list[FaultChain]) -> None:
        self._base, self._chains = base, chains
        self.name = f"{base.name}+spikes"

    def service_ns(self, stage: int, measured_ns: int) -> int:
        ns = self._base.service_ns(stage, measured_ns)
        if stage == INFERENCE:
            ns += sum(chain.take_extra_ns() for chain in self._chains)
        return ns


def _row(manifest: dict[str, object]) -> dict[str, object]:
    summary = manifest["summary"]
    latency = manifest["latency_us"]
    if not isinstance(summary, dict) or not isinstance(latency, dict):
        raise SimulatorError("a run manifest lacks its summary or latency")
    pnl = summary["net_pnl"]  # after fees, as everywhere
    row: dict[str, object] = {
        "n_events": summary["n_events"],
        "n_orders": summary["n_orders"],
        "n_fills": summary["n_fills"],
        "n_rejections": summary["n_rejections"],
        "breaker_trips": summary["breaker_trips"],
        "pnl": pnl,
        "realized_pnl": summary["realized_pnl"],
        "unrealized_pnl": summary["unrealized_pnl"],
        "fees": summary["fees"],
        "max_drawdown": summary["max_drawdown"],
        "digest": summary["digest"],
        "latency_model": summary.get("latency_model"),
        "n_skipped": summary.get("n_skipped"),
        "n_dropped": summary.get("n_dropped"),
        "injected": json.dumps(summary.get("injected", {}), sort_keys=True),
        "faults": json.dumps(summary.get("faults", {}), sort_keys=True),
    }
    for stage in STAGES_SHOWN:
        for q in ("p50", "p99", "p99.9", "max"):
            row[f"{stage}_{q}_us"] = latency[stage][f"{q}_us"]
    return row


def _rejections_by_reason(run_dir: Path) -> dict[str, int]:
    path = run_dir / "risk_rejections.parquet"
    if not path.exists():
        return {}
    reasons = pq.read_table(path).column("reason").to_pylist()
    return {str(r).lower(): reasons.count(r) for r in sorted(set(reasons))}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "scenario"


def run_stress(
    session: str,
    data_dir: Path,
    config: Settings,
    scenario_paths: Sequence[str],
    out_root: Path,
    *,
    workers: int | None = None,
    on_done: Callable[[str], None] = lambda _: None,
    keep_latency_model: bool = False,
) -> pa.Table:
    """Run the baseline and every scenario; write and return the comparison table.

    Everything a worker would refuse is refused here first, before anything is written."""
    paths = [BASELINE, *[p for p in scenario_paths if load_scenario(p).name != BASELINE]]
    scenarios = [load_scenario(p) for p in paths]
    check_inputs(resolve_session(session, data_dir), config, scenarios, keep_latency_model)
    jobs = [
        StressJob(session, str(data_dir), config, str(s.path), str(out_root / slug(s.name)),
                  keep_latency_model)
        for s in scenarios
    ]  # fmt: skip
    out_root.mkdir(parents=True, exist_ok=True)
    count = workers or min(len(jobs), os.cpu_count() or 1)
    rows: list[dict[str, object]] = []
    if count <= 1:
        for job in jobs:
            rows.append(run_one(job))
            on_done(str(rows[-1]["scenario"]))
    else:  # spawn: workers start clean, whatever the parent imported
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
            try:
                with _workers_ignore_interrupts():  # map() starts them
                    results = pool.map(run_one, jobs)
                for row in results:
                    rows.append(row)
                    on_done(str(row["scenario"]))
            except BaseException:  # Ctrl-C or a failure: no worker outlives the parent
                _stop_workers(pool)
                raise
    for job, row in zip(jobs, rows, strict=True):
        row["rejections"] = json.dumps(_rejections_by_reason(Path(job.out_dir)), sort_keys=True)
    table = _comparison(rows, out_root)
    baseline_dir = Path(jobs[0].out_dir)
    if baseline_dir.is_dir():  # the baseline's report then shows the whole comparison
        pq.write_table(table, baseline_dir / "comparison.parquet")
    return table


@contextlib.contextmanager
def _workers_ignore_interrupts() -> Iterator[None]:
    """Processes started inside inherit an ignored SIGINT: Ctrl-C, sent to the whole process
    group by a terminal, is the parent's to handle (it stops the workers), not theirs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the workers and wait for them, so none still writes into a run directory
    that the caller is about to remove."""
    for process in list(pool._processes.values()):  # no public API to stop running tasks
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _comparison(rows: list[dict[str, object]], out_root: Path) -> pa.Table:
    baseline = rows[0].get("pnl")
    for row in rows:
        pnl = row.get("pnl")
        row["pnl_vs_baseline"] = (
            pnl - baseline if isinstance(pnl, float) and isinstance(baseline, float) else None
        )
    columns = sorted({key for row in rows for key in row}, key=_column_order)
    table = pa.table({key: [row.get(key) for row in rows] for key in columns})
    pq.write_table(table, out_root / "comparison.parquet")
    return table


def _column_order(name: str) -> tuple[int, str]:
    first = ("scenario", "status", "description", "seed", "n_events", "n_orders", "n_fills", "pnl",
             "pnl_vs_baseline", "fees", "max_drawdown", "n_rejections", "rejections",
             "breaker_trips")  # fmt: skip
    return (first.index(name), name) if name in first else (len(first), name)
