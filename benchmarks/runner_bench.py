"""Model-runner overhead and stage-timing cost (a benchmark, never a test).

Compares, per call, on the shipped obi_mlp model (16 -> 64 -> 64 -> 1, batch 1):
  bare     the public IO-binding call a user would write: `session.run_with_iobinding(binding)`
           with input and output bound once to preallocated float32 arrays
  runner   `OnnxRunner.predict(features, i)` (what the engine calls), on the float64 feature
           vector: it includes the cast into the model's float32 input and back (one C call
           around the model call when `simulator.models._step` is built)
  python   the same through `_predict_python`, the runner's pure-Python twin (numpy cast)
  cast     that cast alone: `row[...] = features`, 16 float64 -> a preallocated float32 row
  breaker  the runner inside its `CircuitBreaker` (as obi_mlp runs)
and the cost of timing one stage: one `perf_counter_ns()` plus one histogram-column write.
Rounds interleave the variants so that load on a shared host hits them alike; the figure per
variant is the median round. Usage: python benchmarks/runner_bench.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns

import numpy as np
import onnxruntime as ort

from simulator.clock import SimClock
from simulator.models.breaker import CircuitBreaker
from simulator.models.onnx_runner import OnnxRunner
from simulator.models.rule import RuleRunner

MODEL = Path(__file__).resolve().parent.parent / "strategies" / "obi_mlp.onnx"
N_FEATURES = 16


def _bare(runner: OnnxRunner, features: np.ndarray) -> Callable[[int], None]:
    """The public API on a binding of its own, input bound to `features` itself."""
    session = runner.session
    binding = session.io_binding()
    output = np.zeros((1, 1), dtype=np.float32)
    values = (
        ort.OrtValue.ortvalue_from_numpy(features.reshape(1, -1)),
        ort.OrtValue.ortvalue_from_numpy(output),
    )
    binding.bind_ortvalue_input(session.get_inputs()[0].name, values[0])
    binding.bind_ortvalue_output(session.get_outputs()[0].name, values[1])
    run = session.run_with_iobinding

    def loop(n: int) -> None:
        for _ in range(n):
            run(binding)
        assert values  # the OrtValues must outlive the loop

    return loop


def _predict_loop(
    predict: Callable[[np.ndarray, int], np.ndarray], features: np.ndarray
) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for i in range(n):
            predict(features, i)

    return loop


def _cast_loop(features: np.ndarray, row: np.ndarray) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for _ in range(n):
            row[...] = features

    return loop


def _timing_loop(column: memoryview) -> Callable[[int], None]:
    """One stage's timing as the engine does it: read the clock, write the difference."""

    def loop(n: int) -> None:
        clock = perf_counter_ns
        t0 = clock()
        for slot in range(n):
            t1 = clock()
            column[slot & 1023] = t1 - t0
            t0 = t1

    return loop


def _empty_loop(n: int) -> None:
    for _ in range(n):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    features = np.random.default_rng(7).standard_normal(N_FEATURES)  # float64, as the engine's
    runner = OnnxRunner(MODEL, N_FEATURES)
    runner.warm_up()
    breaker = CircuitBreaker(
        OnnxRunner(MODEL, N_FEATURES),
        RuleRunner(0),
        clock=SimClock(),
        latency_budget_ns=None,
        max_violations=3,
        cooldown_ns=10**9,
    )
    breaker.warm_up()
    variants: dict[str, Callable[[int], None]] = {
        "bare": _bare(runner, features.astype(np.float32)),
        "runner": _predict_loop(runner.predict, features),
        "python": _predict_loop(runner._predict_python, features),
        "breaker": _predict_loop(breaker.predict, features),
        "cast": _cast_loop(features, np.zeros(N_FEATURES, dtype=np.float32)),
        "stage_timing": _timing_loop(np.zeros(1024, dtype=np.int64).data),
        "empty_loop": _empty_loop,
    }
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, loop in variants.items():
            start = perf_counter_ns()
            loop(args.calls)
            per_call[name].append((perf_counter_ns() - start) / args.calls / 1e3)
    med = {name: statistics.median(values) for name, values in per_call.items()}
    best = {name: min(values) for name, values in per_call.items()}
    loop_us = med["empty_loop"]
    result = {
        "model": MODEL.name,
        "calls": args.calls,
        "rounds": args.rounds,
        "median_us": {k: round(v, 3) for k, v in med.items()},
        "best_us": {k: round(v, 3) for k, v in best.items()},
        "runner_overhead_vs_bare": round(med["runner"] / med["bare"] - 1.0, 3),
        "python_overhead_vs_bare": round(med["python"] / med["bare"] - 1.0, 3),
        "breaker_overhead_vs_bare": round(med["breaker"] / med["bare"] - 1.0, 3),
        "cast_us": round(med["cast"] - loop_us, 3),
        "stage_timing_us": round(med["stage_timing"] - loop_us, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
