"""ONNX models with any number of named outputs and a window input [1, W, n], through the
runner and through a strategy TOML (errors name the key)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from cli import main
from simulator.errors import ModelError
from simulator.features import FeatureBuffer, FeatureConfig
from simulator.features.window import WindowedFeatures
from simulator.models.onnx_runner import OnnxRunner
from simulator.models.tiny import write_logistic
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


def _window_mean_model(path, window, n):
    """[1, W, n] -> mean over the window of every feature, [1, n] ("mean")."""
    node = helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=0)
    graph = helper.make_graph(
        [node], "window_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, window, n])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, n])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_two_outputs_come_back_side_by_side_and_can_be_picked_by_name(tmp_path):
    path = write_logistic(tmp_path / "m.onnx", [1.0, -1.0], 0.0, ("p_up", "p_down"))
    both = OnnxRunner(path, 2)
    assert both.output_names == ("p_up", "p_down")
    out = both.predict(np.array([0.3, 0.1]), 0)
    assert out.dtype == np.float64
    assert out.shape == (2,)
    assert out[0] + out[1] == pytest.approx(1.0, rel=1e-6)
    assert out[0] == pytest.approx(1 / (1 + np.exp(-0.2)), rel=1e-6)
    down = OnnxRunner(path, 2, outputs=["p_down"])
    assert down.predict(np.array([0.3, 0.1]), 0)[0] == pytest.approx(out[1], rel=1e-6)
    with pytest.raises(ModelError, match=r"no output 'p_dwn'; did you mean 'p_down'\? \(its "
                                         r"outputs: p_up, p_down\)$"):  # fmt: skip
        OnnxRunner(path, 2, outputs=["p_dwn"])


def test_a_window_model_sees_the_last_w_vectors_and_waits_until_it_has_them(tmp_path):
    runner = OnnxRunner(_window_mean_model(tmp_path / "w.onnx", 3, 2), 2)
    assert runner.window == 3
    stage = WindowedFeatures(FeatureBuffer(FeatureConfig(features=("l1_imbalance", "spread"))), 3)
    quotes = [(100.0, float(i), 101.0 + i, 5.0) for i in range(1, 7)]
    seen = []
    for i, (bid, bid_sz, ask, ask_sz) in enumerate(quotes):
        stage.on_quote(i, bid, bid_sz, ask, ask_sz)
        seen.append(stage.ready)
        if stage.ready:
            window = np.array([[(b - a_sz) / (b + a_sz), a - 100.0]
                               for _, b, a, a_sz in quotes[i - 2 : i + 1]])  # fmt: skip
            out = runner.predict(stage.compute(), i)
            np.testing.assert_allclose(out, window.mean(axis=0), rtol=1e-6)
    assert seen == [False, False, True, True, True, True]  # not ready before 3 vectors
    stage.reset()
    assert not stage.ready


def _replay(tmp_path, model_toml, features='["l1_imbalance", "book_imbalance"]'):
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    write_logistic(folder / "model.onnx", [1.0, -1.0], 0.0, ("p_up", "p_down"))
    (folder / "strategy.toml").write_text(
        f'[features]\nnames = {features}\n[model]\nkind = "onnx"\npath = "model.onnx"\n'
        f"{model_toml}\n[policy]\nthreshold = 0.2\n"
    )
    args = ["replay", AAPL, "--strategy", str(folder / "strategy.toml"), "--out",
            str(tmp_path / "run"), "--no-report", "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    return CliRunner().invoke(main, args)


def test_model_errors_name_the_key(tmp_path):
    result = _replay(tmp_path, 'outputs = ["p_up", "p_dwn"]')
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ConfigError: model.path 'model.onnx': {tmp_path / 'mine' / 'model.onnx'}: the model has "
        "no output 'p_dwn'; did you mean 'p_down'? (its outputs: p_up, p_down)"
    )
    result = _replay(tmp_path, "", features='["l1_imbalance", "book_imbalance", "spread"]')
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ConfigError: model.path 'model.onnx': {tmp_path / 'mine' / 'model.onnx'}: input "
        "'features' is tensor(float) of shape [1, 2]; expected tensor(float) of shape [1, 3] (or "
        "a window [1, W, 3]): features.names lists 3 features"
    )


def test_a_two_output_model_replays_with_the_builtin_policy_on_output_0(tmp_path):
    result = _replay(tmp_path, 'outputs = ["p_up", "p_down"]')
    assert result.exit_code == 0, result.output


def test_a_window_model_replays_and_decides_once_its_window_is_full(tmp_path):
    import polars as pl

    folder = tmp_path / "win"
    folder.mkdir()
    _window_mean_model(folder / "w.onnx", 4, 1)
    toml = ('[features]\nnames = ["l1_imbalance"]\n[model]\nkind = "onnx"\npath = "w.onnx"\n'
            '[breaker]\nenabled = false\n')  # fmt: skip
    (folder / "strategy.toml").write_text(toml)
    counts = []
    for name, extra in (("window", []), ("rule", ["--set", 'model.kind="rule"'])):
        out = tmp_path / name
        args = ["replay", AAPL, "--strategy", str(folder / "strategy.toml"), "--out", str(out),
                "--no-report", "--data-dir", str(BUNDLED_DATA), *extra]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        decisions = pl.read_parquet(out / "decisions.parquet")
        counts.append(decisions.filter(pl.col("inference_ns") >= 0).height)  # the model ran
    assert counts[1] - counts[0] == 3  # the window of 4 fills 3 events after the features
