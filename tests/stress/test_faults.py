"""Model faults: which events they hit is a pure function of (seed, event index), spikes stay in
their window, and a breaker around a faulty primary trips and recovers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simulator.errors import ModelError, ScenarioError
from simulator.models.breaker import CircuitBreaker
from simulator.stress import (
    CpuContention,
    CpuContentionSpec,
    ExceptionFault,
    IndexedUniform,
    LatencySpike,
    LatencySpikeSpec,
    ModelExceptionSpec,
    apply_faults,
    load_scenario,
)
from simulator.stress.spec import seed_sequence

FEATURES = np.zeros(4, dtype=np.float64)


class ConstRunner:
    def __init__(self, p: float = 0.5, name: str = "const") -> None:
        self.p, self.name, self.calls, self.resets = p, name, 0, 0

    def warm_up(self) -> None:
        pass

    def predict(self, features, event_index):
        self.calls += 1
        return np.array([self.p])

    def reset(self) -> None:
        self.resets += 1


class FakeClock:
    def __init__(self) -> None:
        self.ts = 0

    def now(self) -> int:
        return self.ts


def failing(fault, indices):
    out = set()
    for i in indices:
        try:
            fault.predict(FEATURES, i)[0]
        except ModelError:
            out.add(i)
    return out


def test_indexed_uniform_does_not_depend_on_the_order_of_asking():
    forward = IndexedUniform(seed_sequence(1, 0, "x"))
    backward = IndexedUniform(seed_sequence(1, 0, "x"))
    indices = [0, 1, 4095, 4096, 10_000, 123_457]
    a = [forward(i) for i in indices]
    b = [backward(i) for i in reversed(indices)][::-1]
    assert a == b
    assert all(0.0 <= u < 1.0 for u in a)
    assert a != [IndexedUniform(seed_sequence(2, 0, "x"))(i) for i in indices]


def test_exception_fault_hits_the_same_events_in_any_order_and_on_retry():
    indices = range(20_000)
    fault = ExceptionFault(ConstRunner(), 0.01, seed=7)
    hit = failing(fault, indices)
    again = failing(ExceptionFault(ConstRunner(), 0.01, seed=7), reversed(indices))
    assert hit == again
    assert hit == failing(fault, sorted(hit))  # a retry of a failed event fails again
    assert 120 <= len(hit) <= 280  # 1% of 20,000 = 200 (binomial sd ~14)
    assert fault.injected == 2 * len(hit)
    assert hit != failing(ExceptionFault(ConstRunner(), 0.01, seed=8), indices)


def test_exception_fault_comes_in_runs_and_stays_in_its_window():
    fault = ExceptionFault(ConstRunner(), 0.2, seed=1, window=(100, 1_100), run_length=5)
    hit = sorted(failing(fault, range(2_000)))
    assert hit
    assert min(hit) >= 100
    assert max(hit) < 1_100
    starts = {i for i in hit if i - 1 not in hit}
    assert all((s - 100) % 5 == 0 for s in starts)  # runs aligned to the window start
    assert all(set(range(s, s + 5)) <= set(hit) for s in starts)
    assert fault.calls == 2_000


def test_exception_fault_rejects_a_bad_probability():
    with pytest.raises(ScenarioError, match=r"fault: probability is 1\.5 and run_length 1; "):
        ExceptionFault(ConstRunner(), 1.5, seed=0)


def test_latency_spike_charges_simulated_latency_in_its_window_only():
    primary = ConstRunner(0.7)
    spike = LatencySpike(primary, 500.0, 1.0, seed=0, window=(10, 20))
    charged = []
    for i in range(30):
        assert spike.predict(FEATURES, i)[0] == 0.7
        charged.append(spike.last_extra_ns)
        assert spike.take_extra_ns() == charged[-1]
    assert charged == [0] * 10 + [500_000] * 10 + [0] * 10
    assert spike.take_extra_ns() == 0  # taken once, not twice
    assert spike.counts.injected == 10
    assert spike.counts.extra_ns == 5_000_000
    assert primary.calls == 30


def test_latency_spike_probability_is_seeded():
    a = LatencySpike(ConstRunner(), 50.0, 0.05, seed=3)
    b = LatencySpike(ConstRunner(), 50.0, 0.05, seed=3)
    hits_a = [i for i in range(10_000) if (a.predict(FEATURES, i)[0], a.last_extra_ns)[1]]
    hits_b = [i for i in reversed(range(10_000)) if (b.predict(FEATURES, i)[0], b.last_extra_ns)[1]]
    assert hits_a == sorted(hits_b)
    assert 400 <= len(hits_a) <= 600  # 5% of 10,000


def test_latency_spike_in_measured_mode_spends_real_time_and_charges_nothing():
    spike = LatencySpike(ConstRunner(), 300.0, 1.0, seed=0, measured=True)
    start = time.perf_counter_ns()
    spike.predict(FEATURES, 0)[0]
    assert time.perf_counter_ns() - start >= 300_000
    assert spike.last_extra_ns == 0
    assert spike.take_extra_ns() == 0
    assert spike.counts.extra_ns == 300_000


def test_a_breaker_around_a_faulty_primary_trips_and_recovers():
    clock = FakeClock()
    primary, fallback = ConstRunner(0.9, "model"), ConstRunner(0.5, "rule")
    fault = ExceptionFault(primary, 0.02, seed=17, run_length=5)
    breaker = CircuitBreaker(
        fault, fallback, clock=clock, latency_budget_ns=None, max_violations=3, cooldown_ns=1_000
    )
    for i in range(5_000):
        clock.ts = i * 100  # 100 ns per event: the cool-down spans 10 events
        breaker.predict(FEATURES, i)[0]
    states = [s.state for s in breaker.switches]
    assert breaker.counts.trips > 0
    assert "closed" in states  # it came back
    assert breaker.counts.exceptions <= fault.injected
    assert breaker.counts.primary_calls == fault.calls


def test_apply_faults_wraps_in_order_and_skips_contention_outside_measured_mode():
    scenario = load_scenario("model_faults")
    specs = (
        ModelExceptionSpec(probability=0.1),
        LatencySpikeSpec(extra_us=10.0, probability=0.1),
        CpuContentionSpec(workers=1),
    )
    chain = apply_faults(ConstRunner(), specs, seed=scenario.seed, measured=False)
    assert isinstance(chain.runner, LatencySpike)
    assert chain.runner.primary is chain.exceptions[0]  # the first fault is innermost
    assert chain.contention == ()
    assert chain.skipped == ("cpu_contention #3: needs the measured latency model",)
    measured = apply_faults(ConstRunner(), specs, seed=0, measured=True)
    assert [c.workers for c in measured.contention] == [1]
    assert [c.name for c in chain.counts()] == ["model_exception", "inference_latency"]


def test_cpu_contention_starts_and_stops_its_own_processes():
    with CpuContention(workers=1, duty=0.1) as contention:
        assert contention.running == 1
    assert contention.running == 0


def test_cpu_contention_checks_its_settings():
    with pytest.raises(ScenarioError, match=r"cpu_contention: workers is 0 and duty 1\.0; "):
        CpuContention(workers=0)
