"""Inference stage: runners agree with the model they serve, training is reproducible, and the
circuit breaker switches (and records switching) exactly as specified."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from onnx import TensorProto, helper

from simulator.errors import InvariantViolation, ModelError
from simulator.models import (
    BreakerSwitch,
    CircuitBreaker,
    OnnxRunner,
    PrecomputedRunner,
    RuleRunner,
    StatefulTorchRunner,
    TorchRunner,
    export_gru,
    export_mlp,
    roc_auc,
    train_gru,
    train_mlp,
)
from simulator.models.onnx_runner import load_session
from simulator.protocols import ModelRunner

N_FEATURES = 6
HIDDEN = 8


def _dataset(n: int = 600, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Features with offsets and scales (so standardisation matters) and a learnable label."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, N_FEATURES)) * 3.0 + 10.0).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + rng.normal(size=n) > 0.0).astype(np.int64)
    return x, y


def _random_features(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, N_FEATURES)) * 3.0 + 10.0).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory):
    x, y = _dataset()
    result = train_mlp(x, y, hidden=(16, 16), epochs=3, lr=1e-2, seed=3, batch_size=64)
    folder = tmp_path_factory.mktemp("mlp")
    export_mlp(result.model, N_FEATURES, folder / "mlp.onnx", folder / "mlp.pt")
    return result, folder / "mlp.onnx", folder / "mlp.pt"


@pytest.fixture(scope="module")
def gru_files(tmp_path_factory):
    x, y = _dataset()
    result = train_gru(x, y, hidden_size=HIDDEN, seq_len=16, streams=4, epochs=2, seed=3)
    folder = tmp_path_factory.mktemp("gru")
    export_gru(result.model, N_FEATURES, folder / "gru.pt", folder / "gru.onnx")
    return result, folder / "gru.pt", folder / "gru.onnx"


# --- runners serve the trained model ----------------------------------------------------------


def test_onnx_and_torchscript_runners_agree_with_the_trained_mlp(mlp_files):
    result, onnx_path, torch_path = mlp_files
    runners: list[ModelRunner] = [
        OnnxRunner(onnx_path, N_FEATURES),
        TorchRunner(torch_path, N_FEATURES),
    ]
    for runner in runners:
        runner.warm_up()
    inputs = _random_features(1000)
    with torch.no_grad():
        expected = result.model(torch.from_numpy(inputs)).numpy()[:, 0]
    features = np.zeros(N_FEATURES, dtype=np.float64)  # one buffer, rewritten per event
    served = np.zeros((2, len(inputs)))
    for i, row in enumerate(inputs):
        features[:] = row
        served[:, i] = [runner.predict(features, i)[0] for runner in runners]
    np.testing.assert_allclose(served[0], served[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(served[1], expected, rtol=0, atol=1e-5)
    assert served.min() >= 0.0
    assert served.max() <= 1.0
    assert served.std() > 0.01  # not a constant model


def test_runners_cast_float64_features_to_the_models_float32_input(mlp_files):
    result, onnx_path, torch_path = mlp_files
    inputs = _random_features(200).astype(np.float64) + 1.0 / 3.0  # not float32 values
    rounded = inputs.astype(np.float32)  # round to nearest: the cast the runners make
    assert not np.array_equal(rounded.astype(np.float64), inputs)
    session = load_session(onnx_path)  # the runner's settings, without the runner
    expected = [float(session.run(None, {"features": row[None]})[0].item()) for row in rounded]
    onnx_runner, torch_runner = (
        OnnxRunner(onnx_path, N_FEATURES),
        TorchRunner(torch_path, N_FEATURES),
    )
    features = np.zeros(N_FEATURES)  # the feature stage's float64 vector, rewritten in place
    served_onnx, served_torch = [], []
    for i, row in enumerate(inputs):
        features[:] = row
        served_onnx.append(float(onnx_runner.predict(features, i)[0]))
        served_torch.append(float(torch_runner.predict(features, i)[0]))
    assert served_onnx == expected  # exactly the model's output on the float32-rounded input
    with torch.no_grad():
        from_torch = result.model(torch.from_numpy(rounded)).numpy()[:, 0]
    np.testing.assert_allclose(served_torch, from_torch, rtol=0, atol=1e-6)


def test_exported_onnx_has_the_contracted_signature(mlp_files):
    _, onnx_path, _ = mlp_files
    model = onnx.load(onnx_path)
    assert model.opset_import[0].version >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (inp, out)]
    assert (inp.name, out.name, dims) == ("features", "p", [[1, N_FEATURES], [1, 1]])
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.node[0].op_type == "Gemm"  # standardisation folded into the first layer


def test_training_metrics_describe_both_chronological_splits(mlp_files):
    result, _, _ = mlp_files
    _, y = _dataset()
    assert (result.train.n, result.val.n) == (480, 120)
    assert result.train.base_rate == pytest.approx(y[:480].mean())
    assert result.val.base_rate == pytest.approx(y[480:].mean())
    assert result.val.auc > 0.7
    assert 0.0 < result.val.loss < 1.0


def test_roc_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(float)
    scores = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairs)
    assert np.isnan(roc_auc(np.ones(3), np.arange(3.0)))


# --- determinism of training ------------------------------------------------------------------


def _train_and_export(folder: Path, seed: int) -> dict[str, torch.Tensor]:
    folder.mkdir()
    x, y = _dataset(300)
    model = train_mlp(x, y, hidden=(8,), epochs=2, seed=seed, batch_size=32).model
    export_mlp(model, N_FEATURES, folder / "m.onnx", folder / "m.pt")
    return model.state_dict()


def test_same_data_and_seed_give_identical_weights_and_files(tmp_path):
    first = _train_and_export(tmp_path / "a", seed=11)
    second = _train_and_export(tmp_path / "b", seed=11)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    for name in ("m.onnx", "m.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_different_seed_gives_different_weights(tmp_path):
    first = _train_and_export(tmp_path / "a", seed=11)
    other = _train_and_export(tmp_path / "b", seed=12)
    assert not torch.equal(first["body.0.weight"], other["body.0.weight"])
    assert (tmp_path / "a" / "m.onnx").read_bytes() != (tmp_path / "b" / "m.onnx").read_bytes()


def test_training_leaves_the_callers_torch_settings_alone():
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    x, y = _dataset(100)
    train_mlp(x, y, hidden=(4,), epochs=1, seed=0)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.random.get_rng_state(), state)


# --- load-time validation ---------------------------------------------------------------------


def test_onnx_runner_names_the_file_and_the_shape_found(mlp_files):
    _, onnx_path, _ = mlp_files
    with pytest.raises(
        ModelError,
        match=r"mlp\.onnx: input 'features' is tensor\(float\) of shape \[1, 6\]; expected .*5\]",
    ):
        OnnxRunner(onnx_path, N_FEATURES - 1)


def test_onnx_runner_rejects_a_model_with_two_inputs(gru_files):
    _, _, onnx_path = gru_files
    with pytest.raises(ModelError, match=r"gru\.onnx: the model has 2 inputs and 2 outputs"):
        OnnxRunner(onnx_path, N_FEATURES)


def test_onnx_runner_rejects_a_wrong_dtype(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["p"])],
        "double",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, [1, 1])],
        [helper.make_tensor_value_info("p", TensorProto.DOUBLE, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "double.onnx")
    with pytest.raises(ModelError, match=r"double\.onnx: input 'features' is tensor\(double\)"):
        OnnxRunner(tmp_path / "double.onnx", 1)


def test_unreadable_model_files_are_named(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.bin: ONNX Runtime cannot load"):
        OnnxRunner(junk, N_FEATURES)
    with pytest.raises(ModelError, match=r"junk\.bin: not a loadable TorchScript model"):
        TorchRunner(junk, N_FEATURES)
    with pytest.raises(ModelError, match=r"missing\.pt: model file not found"):
        TorchRunner(tmp_path / "missing.pt", N_FEATURES)


def test_torch_runner_rejects_a_wrong_feature_count(mlp_files):
    _, _, torch_path = mlp_files
    with pytest.raises(ModelError, match=r"mlp\.pt: forward fails on inputs of shape \[\[1, 4\]\]"):
        TorchRunner(torch_path, 4)


def test_stateful_runner_rejects_a_wrong_hidden_size_and_a_stateless_model(gru_files, mlp_files):
    _, gru_path, _ = gru_files
    with pytest.raises(
        ModelError, match=r"gru\.pt: forward fails on inputs of shape \[\[1, 6\], \[1, 5\]\]"
    ):
        StatefulTorchRunner(gru_path, N_FEATURES, 5)
    with pytest.raises(
        ModelError, match=r"gru\.pt: forward fails .* missing value for argument 'h'"
    ):
        TorchRunner(gru_path, N_FEATURES)
    _, _, mlp_path = mlp_files
    with pytest.raises(
        ModelError, match=r"mlp\.pt: forward fails on inputs of shape \[\[1, 6\], \[1, 8\]\]"
    ):
        StatefulTorchRunner(mlp_path, N_FEATURES, HIDDEN)


# --- stateful runner --------------------------------------------------------------------------


def _serve(runner: ModelRunner, inputs: np.ndarray) -> list[float]:
    features = np.zeros(N_FEATURES, dtype=np.float64)
    out = []
    for i, row in enumerate(inputs):
        features[:] = row
        out.append(runner.predict(features, i)[0])
    return out


def test_stateful_runner_carries_state_like_the_sequence_model(gru_files):
    result, gru_path, _ = gru_files
    inputs = _random_features(50)
    runner = StatefulTorchRunner(gru_path, N_FEATURES, HIDDEN)
    served = _serve(runner, inputs)
    with torch.no_grad():
        logits, _ = result.model.sequence_logits(
            torch.from_numpy(inputs[None]), torch.zeros(1, 1, HIDDEN)
        )
    np.testing.assert_allclose(served, torch.sigmoid(logits)[0].numpy(), rtol=0, atol=1e-5)
    same_input_twice = _serve(runner, np.repeat(inputs[:1], 2, axis=0))
    assert same_input_twice[0] != same_input_twice[1]  # the state moved between the two
    assert runner.hidden.abs().sum().item() > 0.0


def test_reset_and_warm_up_leave_a_stateful_runner_like_a_fresh_one(gru_files):
    _, gru_path, _ = gru_files
    inputs = _random_features(30)
    used = StatefulTorchRunner(gru_path, N_FEATURES, HIDDEN)
    _serve(used, _random_features(20, seed=5))
    used.warm_up()
    used.reset()
    fresh = StatefulTorchRunner(gru_path, N_FEATURES, HIDDEN)
    assert _serve(used, inputs) == _serve(fresh, inputs)
    fresh.reset()
    partway = _serve(fresh, inputs[:10])
    fresh.warm_up()  # mid-session: the carried state is untouched
    rest = _serve(fresh, inputs[10:])
    assert partway + rest == _serve(StatefulTorchRunner(gru_path, N_FEATURES, HIDDEN), inputs)


def test_onnx_gru_cell_matches_the_torchscript_cell(gru_files):
    _, gru_path, onnx_path = gru_files
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = _random_features(40)
    h = np.zeros((1, HIDDEN), dtype=np.float32)
    from_onnx = []
    for row in inputs:
        p, h = session.run(["p", "h_new"], {"features": row[None], "h": h})
        from_onnx.append(float(p.item()))
    served = _serve(StatefulTorchRunner(gru_path, N_FEATURES, HIDDEN), inputs)
    np.testing.assert_allclose(from_onnx, served, rtol=0, atol=1e-5)


# --- precomputed and rule runners -------------------------------------------------------------


def test_precomputed_runner_serves_by_event_index_and_names_the_gap():
    runner = PrecomputedRunner(np.array([0.1, 0.9, 0.5]))
    features = np.zeros(1, dtype=np.float64)
    assert [runner.predict(features, i)[0] for i in (2, 0, 1)] == [0.5, 0.1, 0.9]
    for index in (3, -1):
        with pytest.raises(
            ModelError, match=rf"no signal for event {index}; the cache holds events 0\.\.2"
        ):
            runner.predict(features, index)[0]


def test_precomputed_runner_rejects_values_that_are_not_probabilities():
    with pytest.raises(ModelError, match=r"signal 1 is nan; probabilities must lie in \[0, 1\]"):
        PrecomputedRunner(np.array([0.2, np.nan, 1.5]))


def test_precomputed_runner_loads_npy_and_parquet(tmp_path):
    values = np.array([0.25, 0.75])
    np.save(tmp_path / "s.npy", values)
    pq.write_table(pa.table({"ts": [1, 2], "p": values}), tmp_path / "s.parquet")
    features = np.zeros(1, dtype=np.float64)
    for runner in (
        PrecomputedRunner.from_file(tmp_path / "s.npy"),
        PrecomputedRunner.from_file(tmp_path / "s.parquet", column="p"),
    ):
        assert [runner.predict(features, i)[0] for i in range(2)] == [0.25, 0.75]
    with pytest.raises(
        ModelError, match=r"s\.parquet: 2 columns \['ts', 'p'\]; name the signal column"
    ):
        PrecomputedRunner.from_file(tmp_path / "s.parquet")
    with pytest.raises(ModelError, match=r"s\.parquet: no column 'q'"):
        PrecomputedRunner.from_file(tmp_path / "s.parquet", column="q")


@pytest.mark.parametrize(
    ("obi", "scale", "expected"),
    [
        (-1.0, 1.0, 0.0),
        (0.0, 1.0, 0.5),
        (1.0, 1.0, 1.0),
        (0.5, 1.0, 0.75),
        (-0.2, 1.0, 0.4),
        (0.4, 2.0, 0.9),
        (0.9, 2.0, 1.0),
        (-3.0, 1.0, 0.0),
        (0.5, -1.0, 0.25),
        (np.nan, 1.0, 0.5),
    ],
)
def test_rule_runner_maps_imbalance_to_probability(obi, scale, expected):
    features = np.array([7.0, obi], dtype=np.float64)
    p, signal = RuleRunner(1, scale).predict(features, 0)
    assert p == pytest.approx(expected)
    np.testing.assert_array_equal(signal, obi * scale)  # the signal itself, unclipped


# --- circuit breaker --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.ts = 1_000

    def now(self) -> int:
        return self.ts


class ScriptedRunner:
    """Answers `value`, or raises on the events listed in `fail_at` / while `failing` is set."""

    def __init__(self, value: float, fail_at: set[int] | None = None, sleep_s: float = 0.0) -> None:
        self.name = f"scripted:{value}"
        self.value = value
        self.fail_at = fail_at or set()
        self.failing = False
        self.sleep_s = sleep_s
        self.calls: list[int] = []
        self.warm_ups = self.resets = 0

    def warm_up(self) -> None:
        self.warm_ups += 1

    def reset(self) -> None:
        self.resets += 1

    def predict(self, features, event_index):
        self.calls.append(event_index)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.failing or event_index in self.fail_at:
            raise RuntimeError("model fault")
        return np.array([self.value])


class FlakyRunner(ScriptedRunner):
    """Raises with probability `p_fail`, drawn from a seeded generator."""

    def __init__(self, p_fail: float, seed: int) -> None:
        super().__init__(0.9)
        self.rng = np.random.default_rng(seed)
        self.p_fail = p_fail
        self.failures: set[int] = set()

    def predict(self, features, event_index):
        self.calls.append(event_index)
        if self.rng.random() < self.p_fail:
            self.failures.add(event_index)
            raise ValueError("flaky")
        return np.array([self.value])


def _breaker(
    primary: ModelRunner,
    clock: FakeClock,
    *,
    budget: int | None = None,
    max_violations: int = 3,
    cooldown_ns: int = 1_000,
) -> CircuitBreaker:
    return CircuitBreaker(
        primary,
        ScriptedRunner(0.5),
        clock=clock,
        latency_budget_ns=budget,
        max_violations=max_violations,
        cooldown_ns=cooldown_ns,
    )


def test_breaker_trips_after_consecutive_failures_and_recovers_after_cool_down():
    clock, primary = FakeClock(), ScriptedRunner(0.9)
    breaker = _breaker(primary, clock)
    features = np.zeros(1, dtype=np.float64)
    primary.failing = True
    assert [breaker.predict(features, i)[0] for i in range(3)] == [
        0.5,
        0.5,
        0.5,
    ]  # fallback answers
    assert breaker.is_open
    clock.ts += 999
    assert breaker.predict(features, 3)[0] == 0.5
    assert primary.calls == [0, 1, 2]  # not tried during the cool-down
    clock.ts += 1  # cool-down over: half-open, one trial, it fails, open again
    assert breaker.predict(features, 4)[0] == 0.5
    assert breaker.is_open
    clock.ts += 1_000
    primary.failing = False
    assert breaker.predict(features, 5)[0] == 0.9  # half-open trial succeeds: closed
    assert not breaker.is_open
    assert breaker.switches == [
        BreakerSwitch(ts=1_000, event_index=2, state="open", reason="exception: RuntimeError"),
        BreakerSwitch(ts=2_000, event_index=4, state="half_open", reason="cool-down elapsed"),
        BreakerSwitch(ts=2_000, event_index=4, state="open", reason="exception: RuntimeError"),
        BreakerSwitch(ts=3_000, event_index=5, state="half_open", reason="cool-down elapsed"),
        BreakerSwitch(ts=3_000, event_index=5, state="closed", reason="recovered"),
    ]
    counts = breaker.counts
    assert (counts.calls, counts.primary_calls, counts.fallback_calls) == (6, 5, 5)
    assert (counts.violations, counts.exceptions, counts.slow_calls, counts.trips) == (4, 4, 0, 2)


def test_a_success_between_failures_restarts_the_count():
    breaker = _breaker(ScriptedRunner(0.9, fail_at={0, 1, 3, 4, 6, 7, 8}), FakeClock())
    features = np.zeros(1, dtype=np.float64)
    served = [breaker.predict(features, i)[0] for i in range(10)]
    assert served == [0.5, 0.5, 0.9, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5]
    assert [(s.event_index, s.state) for s in breaker.switches] == [(8, "open")]


def _run_flaky(seed: int) -> tuple[list[float], list[BreakerSwitch], FlakyRunner]:
    clock, primary = FakeClock(), FlakyRunner(p_fail=0.4, seed=seed)
    breaker = _breaker(primary, clock, max_violations=2, cooldown_ns=5_000)
    features = np.zeros(1, dtype=np.float64)
    served = []
    for i in range(2_000):
        clock.ts += 1_000
        served.append(breaker.predict(features, i)[0])
    return served, list(breaker.switches), primary


def test_flaky_primary_switches_deterministically_and_every_switch_is_recorded():
    served, switches, primary = _run_flaky(seed=42)
    again, switches_again, _ = _run_flaky(seed=42)
    assert (served, switches) == (again, switches_again)
    assert len(switches) > 20
    assert {s.state for s in switches} == {"open", "half_open", "closed"}
    allowed = {
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("half_open", "closed"),
    }
    assert switches[0].state == "open"
    for before, after in itertools.pairwise(switches):
        assert (before.state, after.state) in allowed
        if after.state == "half_open":
            assert after.ts - before.ts >= 5_000  # the cool-down is respected
    # Replay the record: event by event, who answered follows from the state and the failures.
    state, changes, called = "closed", dict[int, list[BreakerSwitch]](), set(primary.calls)
    for s in switches:
        changes.setdefault(s.event_index, []).append(s)
    for i, p in enumerate(served):
        tried = state != "open" or any(s.state == "half_open" for s in changes.get(i, []))
        assert (i in called) == tried
        assert p == (0.9 if tried and i not in primary.failures else 0.5)
        if i in changes:
            state = changes[i][-1].state
    opens = [s for s in switches if s.state == "open"]
    assert all(s.reason == "exception: ValueError" for s in opens)
    assert all(s.event_index in primary.failures for s in opens)


def test_slow_primary_trips_the_latency_budget():
    primary = ScriptedRunner(0.9, sleep_s=0.003)
    breaker = _breaker(primary, FakeClock(), budget=1_000_000, max_violations=2)
    features = np.zeros(1, dtype=np.float64)
    served = [breaker.predict(features, i)[0] for i in range(4)]
    assert served == [0.9, 0.9, 0.5, 0.5]  # late answers are served, then the fallback
    (switch,) = breaker.switches
    assert (switch.event_index, switch.state) == (1, "open")
    assert switch.reason.startswith("latency ")
    assert switch.reason.endswith(" ns > budget")
    assert int(switch.reason.split()[1]) > 1_000_000
    assert breaker.counts.slow_calls == 2


def test_breaker_warms_and_resets_both_runners_and_starts_each_session_closed():
    primary, fallback = ScriptedRunner(0.9), ScriptedRunner(0.5)
    breaker = CircuitBreaker(
        primary,
        fallback,
        clock=FakeClock(),
        latency_budget_ns=None,
        max_violations=1,
        cooldown_ns=1,
    )
    breaker.warm_up()
    assert (primary.warm_ups, fallback.warm_ups) == (1, 1)
    primary.failing = True
    breaker.predict(np.zeros(1, dtype=np.float64), 0)[0]
    assert breaker.is_open
    breaker.reset()
    assert (primary.resets, fallback.resets) == (1, 1)
    assert not breaker.is_open
    assert breaker.switches == []
    assert breaker.counts.calls == 0


def test_breaker_lets_an_invariant_violation_stop_the_run():
    class Broken(ScriptedRunner):
        def predict(self, features, event_index):
            raise InvariantViolation("time went backwards")

    breaker = _breaker(Broken(0.9), FakeClock())
    with pytest.raises(InvariantViolation):
        breaker.predict(np.zeros(1, dtype=np.float64), 0)[0]


def test_breaker_serves_fallback_when_precomputed_signals_run_out():
    features = np.array([0.2], dtype=np.float64)
    breaker = CircuitBreaker(
        PrecomputedRunner(np.array([0.8])),
        RuleRunner(0),
        clock=FakeClock(),
        latency_budget_ns=None,
        max_violations=1,
        cooldown_ns=10,
    )
    assert [breaker.predict(features, i)[0] for i in range(2)] == [0.8, pytest.approx(0.6)]
    assert breaker.switches[0].reason == "exception: ModelError"
