"""`ticktape train`: deterministic weights, exported runtimes that agree, shipped models usable."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from simulator.config import STRATEGY_DIR, apply_overrides, load_strategy
from simulator.models import OnnxRunner, TorchRunner
from simulator.runtime import build_features
from simulator.session import resolve_session
from simulator.trainer import make_labels, training_set
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


def test_labels_are_the_sign_of_the_move_over_the_horizon():
    mid = np.array([1.0, 2.0, 2.0, 1.0, 3.0])
    assert make_labels(mid, 2).tolist() == [1, 0, 1, -1, -1]


@pytest.fixture
def strategy_copy(tmp_path):
    """obi_mlp's TOML in a scratch folder, so training writes its files there."""
    target = tmp_path / "strategies"
    target.mkdir()
    shutil.copy(STRATEGY_DIR / "obi_mlp.toml", target / "obi_mlp.toml")
    return target / "obi_mlp.toml"


def _train(strategy_toml):
    args = ["train", AAPL, "--strategy", str(strategy_toml), "--data-dir", str(BUNDLED_DATA),
            "--set", "train.epochs=1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_training_twice_gives_byte_identical_models(strategy_copy):
    output = _train(strategy_copy)
    assert "trained on nasdaq/AAPL/2012-06-21" in output
    first = {
        p.name: p.read_bytes()
        for p in strategy_copy.parent.glob("obi_mlp.*")
        if p.suffix != ".toml"
    }
    _train(strategy_copy)
    second = {
        p.name: p.read_bytes()
        for p in strategy_copy.parent.glob("obi_mlp.*")
        if p.suffix != ".toml"
    }
    assert set(first) == {"obi_mlp.onnx", "obi_mlp.pt", "obi_mlp.train.json"}
    assert first == second


def test_shipped_obi_mlp_torch_and_onnx_agree_on_real_features():
    config = apply_overrides(load_strategy("obi_mlp"))
    session = resolve_session(AAPL, BUNDLED_DATA)
    x, _, _, _, names = training_set(session, config, horizon=10)
    assert len(names) == 16
    onnx = OnnxRunner(STRATEGY_DIR / "obi_mlp.onnx", 16)
    torch = TorchRunner(STRATEGY_DIR / "obi_mlp.pt", 16)
    rows = x[:: max(1, len(x) // 2000)]
    vector = np.zeros(16, dtype=np.float32)
    diffs = []
    for row in rows:
        vector[:] = row
        diffs.append(abs(onnx.predict(vector, 0)[0] - torch.predict(vector, 0)[0]))
    assert max(diffs) <= 1e-5
    assert len(diffs) > 1000


def test_replay_features_match_the_training_features(tmp_path):
    """The buffer the replay builds computes the same names the model was trained on."""
    config = apply_overrides(load_strategy("obi_mlp"))
    assert build_features(config, 10).names == tuple(config["features"]["names"])
