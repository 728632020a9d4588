"""The compiled model-runner step (_step.c) gives the bits of its Python twins: the ONNX
runner's casts around the model call and the rule runner's arithmetic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from simulator.models import OnnxRunner, RuleRunner
from simulator.models.tiny import write_logistic

step = pytest.importorskip("simulator.models._step", reason="the compiled step is not built")

STRATEGY_MODEL = "strategies/obi_mlp.onnx"  # 16 -> 64 -> 64 -> 1, the shipped MLP


def _bits(values: np.ndarray) -> list[int]:
    return [int(b) for b in np.asarray(values, dtype=np.float64).view(np.uint64)]


def _window_sum_model(path, window, n):
    """[1, W, n] -> (sum over the window [1, n], the same times 2 [1, n])."""
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["sum"], keepdims=0),
        helper.make_node("Add", ["sum", "sum"], ["twice"]),
    ]
    graph = helper.make_graph(
        nodes, "window_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, window, n])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, n]),
         helper.make_tensor_value_info("twice", TensorProto.FLOAT, [1, n])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _compare(runner: OnnxRunner, rows: np.ndarray) -> int:
    """predict (compiled) and _predict_python on the same rows, one vector rewritten in place
    as the feature stage does, then a different array: the same output bits every time.
    Returns the number of rows compared."""
    assert isinstance(getattr(runner.predict, "__self__", None), step.OnnxStep)  # compiled
    features = np.zeros(rows.shape[1])
    for i, row in enumerate(rows):
        features[:] = row
        compiled = runner.predict(features, i).copy()
        python = runner._predict_python(features, i).copy()
        assert _bits(compiled) == _bits(python)
        other = row.copy()  # another array: the step binds it in place of the first
        assert _bits(runner.predict(other, i)) == _bits(python)
    return len(rows)


def test_onnx_step_matches_the_python_cast_for_one_output():
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(50, 16)) * 3.0 + 1.0 / 3.0  # float64 values float32 must round
    rows[7, 3] = np.nan
    assert _compare(OnnxRunner(STRATEGY_MODEL, 16), rows) == 50


def test_onnx_step_matches_the_python_cast_for_two_outputs(tmp_path):
    path = write_logistic(tmp_path / "m.onnx", [1.0, -1.0], 0.0, ("p_up", "p_down"))
    rows = np.random.default_rng(6).normal(size=(30, 2)) / 3.0
    assert _compare(OnnxRunner(path, 2), rows) == 30
    assert _compare(OnnxRunner(path, 2, outputs=["p_down", "p_up"]), rows) == 30


def test_onnx_step_matches_the_python_cast_for_a_window_and_wide_outputs(tmp_path):
    runner = OnnxRunner(_window_sum_model(tmp_path / "w.onnx", 3, 2), 2)
    assert runner.window == 3
    assert runner.n_outputs == 4
    rows = np.random.default_rng(7).normal(size=(20, 6)) / 7.0  # the last 3 vectors, flat
    assert _compare(runner, rows) == 20
    out = runner.predict(np.arange(6.0), 0)  # vectors (0, 1), (2, 3), (4, 5)
    assert out.tolist() == [6.0, 9.0, 12.0, 18.0]


def test_onnx_step_names_a_wrong_vector():
    runner = OnnxRunner(STRATEGY_MODEL, 16)
    with pytest.raises(ValueError, match=r"features has 15 values; the model takes 16"):
        runner.predict(np.zeros(15), 0)
    with pytest.raises(TypeError, match=r"features must be a contiguous float64 array"):
        runner.predict(np.zeros(16, dtype=np.float32), 0)
    with pytest.raises(TypeError, match=r"features must be a contiguous float64 array"):
        runner.predict(np.zeros(32)[::2], 0)
    assert runner.predict(np.zeros(16), 0).shape == (1,)  # still answers afterwards


@pytest.mark.parametrize("width", [None, 3])
def test_rule_step_matches_the_python_rule(width):
    runner = RuleRunner(1, 1.5, width=width)
    assert isinstance(getattr(runner.predict, "__self__", None), step.RuleStep)  # compiled
    python = runner._predict if width is None else runner._predict_p
    values = [0.0, -0.0, 0.1, 1 / 3, 2 / 3, 0.6, -0.6, 0.9999999, 1.0, -1.0, 5.0, -5.0,
              np.nan, np.inf, -np.inf, 1e-300, 2.2e-16]  # fmt: skip
    features = np.zeros(2)
    for value in values:
        features[1] = value
        compiled = runner.predict(features, 0).copy()
        twin = python(features, 0).copy()
        assert _bits(compiled) == _bits(twin), value
    if width is not None:
        assert np.isnan(runner.predict(features, 0)[1:]).all()  # the primary's other outputs


def test_rule_step_names_a_feature_index_out_of_range():
    with pytest.raises(IndexError, match=r"feature_index 2 is out of range for 2 features"):
        RuleRunner(2).predict(np.zeros(2), 0)
