"""`ticktape bench`: events/s and per-stage latency of the replay path, case by case.

Cases: `data` (read, check and walk every event), `features` (+ the feature stage on every
event), then each strategy's full pipeline (all five stages timed, risk on). Each case runs in
its own subprocess so its peak RSS is its own. Timings cover the run phase only (data opened,
model warmed); `load_s` is reported apart. A benchmark, never a test: figures vary with load.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter
from typing import Final

from simulator import errors
from simulator.config import load_strategy
from simulator.engine import BOOK, KIND_CODES, QUOTE
from simulator.errors import InvariantViolation, SimulatorError
from simulator.features import FeatureBuffer, native
from simulator.features.user import MixedFeatures
from simulator.runtime import build_features, replay, session_sources
from simulator.session import resolve_session
from simulator.sources.merge import merge
from simulator.sources.recorded import BatchSource


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, data: str, data_dir: Path, strategy: str) -> dict[str, object]:
    """Measure one case in this process."""
    started = perf_counter()
    session = resolve_session(data, data_dir)
    config = load_strategy(strategy)
    result: dict[str, object] = {"case": case, "strategy": strategy, "data": data}
    if case in ("data", "features"):
        sources, levels = session_sources(session, config)
        features = build_features(config, levels) if case == "features" else None
        loaded = perf_counter()
        n = _walk(sources, features)
        run_s = perf_counter() - loaded
        result.update(n_events=n, events_per_s=n / run_s, load_s=loaded - started, stages={})
        result["feature_kernel"] = features.kernel if features is not None else None
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = replay(session, config, out_dir=Path(tmp) / "run")
        timings = run.manifest["timings"]
        if not isinstance(timings, dict):
            raise InvariantViolation("a run manifest's timings must be a dict")
        result.update(
            n_events=run.summary["n_events"],
            events_per_s=timings["events_per_s"],
            load_s=timings["load_s"],
            stages=run.manifest["latency_us"],
            feature_kernel=run.manifest["feature_kernel"],
        )
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _walk(sources: Sequence[BatchSource], features: FeatureBuffer | MixedFeatures | None) -> int:
    """Touch every event's fields (data case) or feed the feature stage too (features case)."""
    n = 0
    for merged in merge(sources):
        parts = []
        for batch in merged.parts:
            c = batch.columns
            kind = KIND_CODES[batch.kind]
            if kind == QUOTE:
                cols = (c["ts_recv"], c["bid_px"], c["bid_sz"], c["ask_px"], c["ask_sz"])
            elif kind == BOOK:
                cols = (c["ts_recv"], c["bid_px_0"], c["bid_sz_0"], c["ask_px_0"], c["ask_sz_0"])
            else:
                cols = (c["ts_recv"], c["px"], c["sz"], c["side"], c["side"])
            wants_bundle = features is not None and kind == BOOK
            bundle = features.book_columns(batch) if features is not None and wants_bundle else None
            parts.append((kind, cols, bundle))
        for part, row in zip(merged.order_part, merged.order_row, strict=True):
            kind, (ts, a, b, c_, d), bundle = parts[part]
            t, x1, x2, x3, x4 = ts[row], a[row], b[row], c_[row], d[row]
            if features is not None:
                if kind == QUOTE:
                    features.on_quote(t, x1, x2, x3, x4)
                elif bundle is not None:
                    features.on_book(t, bundle, row)
                else:
                    features.on_trade(t, x1, x2, x3)
                features.compute()
            n += 1
    return n


def default_cases(strategies: list[str]) -> list[tuple[str, str]]:
    """(case, strategy) pairs: data, features, then one full pipeline per strategy."""
    cases = [("data", strategies[0]), ("features", strategies[-1])]
    return cases + [("pipeline", s) for s in strategies]


def run_all(
    datasets: list[str], strategies: list[str], data_dir: Path, *, kernel: str | None = None
) -> list[dict[str, object]]:
    """Every case on every dataset, each in a fresh subprocess (with the feature `kernel`
    forced when given, else the default choice of `native.choose`)."""
    env = None if kernel is None else {**os.environ, native.ENVIRONMENT: native.choose(kernel)}
    results = []
    for data in datasets:
        for case, strategy in default_cases(strategies):
            command = [sys.executable, "-m", "simulator.bench", case, data, str(data_dir), strategy]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise _child_error(done.stderr, f"bench case {case} ({strategy} on {data})")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


CHILD_ERROR: Final = "ticktape-bench-error "
"""Prefix of the one line a case subprocess writes for a SimulatorError: `<prefix><json>`."""


def _child_error(stderr: str, what: str) -> SimulatorError:
    """The case subprocess's own error, as the same SimulatorError class, or (for a crash)
    the last line it wrote."""
    lines = stderr.strip().splitlines()
    for line in reversed(lines):
        if line.startswith(CHILD_ERROR):
            found = json.loads(line.removeprefix(CHILD_ERROR))
            cls = getattr(errors, found["type"], SimulatorError)
            if isinstance(cls, type) and issubclass(cls, SimulatorError):
                return cls(found["message"])
            break
    last = lines[-1] if lines else "no output"
    return SimulatorError(f"{what} failed: {last}")


def _main(argv: list[str]) -> int:
    """One case, in a subprocess of run_all: its result as a JSON line on stdout, or its
    SimulatorError as one tagged line on stderr (exit 1)."""
    case_name, data_name, directory, strategy_name = argv[:4]
    try:
        result = run_case(case_name, data_name, Path(directory), strategy_name)
    except SimulatorError as e:
        error = {"type": type(e).__name__, "message": str(e)}
        sys.stderr.write(CHILD_ERROR + json.dumps(error) + "\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")  # answers the parent process, not a user
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
