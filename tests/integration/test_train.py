"""`ticktape train`: deterministic weights, exported runtimes that agree, shipped models usable."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
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
    """The strategies' files in a scratch folder: what training may or may not replace."""
    target = tmp_path / "strategies"
    target.mkdir()
    for path in STRATEGY_DIR.glob("*"):
        if path.is_file() and path.name.split(".")[0] in ("obi_mlp", "gru_stream"):
            shutil.copy(path, target / path.name)
    return target / "obi_mlp.toml"


def _train(strategy_toml, *extra):
    args = ["train", AAPL, "--strategy", str(strategy_toml), "--data-dir", str(BUNDLED_DATA),
            "--set", "train.epochs=1", *extra]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_training_twice_gives_byte_identical_models(strategy_copy, tmp_path):
    output = _train(strategy_copy, "--out", str(tmp_path / "one"))
    assert "trained on nasdaq/AAPL/2012-06-21" in output
    _train(strategy_copy, "--out", str(tmp_path / "two"))
    first, second = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert set(first) == {"obi_mlp.onnx", "obi_mlp.pt", "obi_mlp.train.json"}
    assert first == second
    versions = json.loads(first["obi_mlp.train.json"])["versions"]
    assert {"torch", "numpy", "onnx", "onnxruntime", "python", "torch_cpu_capability"} <= set(
        versions
    )
    assert versions["torch"] == torch.__version__


def test_training_by_default_writes_a_new_folder_and_never_the_strategy_files(
    strategy_copy, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = _files(strategy_copy.parent)
    output = _train(strategy_copy)
    _train(strategy_copy)
    assert _files(strategy_copy.parent) == before
    folders = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert folders == [
        "train--obi_mlp--nasdaq_AAPL_2012-06-21--seed7",
        "train--obi_mlp--nasdaq_AAPL_2012-06-21--seed7-2",
    ]
    assert "--set model.path=" in output
    trained = tmp_path / "reports" / folders[0] / "obi_mlp.onnx"
    result = CliRunner().invoke(main, [
        "replay", AAPL, "--strategy", str(strategy_copy), "--data-dir", str(BUNDLED_DATA),
        "--set", f"model.path={trained}", "--no-report", "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output


def test_training_into_the_strategy_folder_replaces_only_its_own_files(strategy_copy):
    before = _files(strategy_copy.parent)
    _train(strategy_copy, "--out", str(strategy_copy.parent))
    after = _files(strategy_copy.parent)
    assert set(after) == set(before)
    for name in ("gru_stream.onnx", "gru_stream.pt", "gru_stream.train.json", "obi_mlp.toml"):
        assert after[name] == before[name]
    assert after["obi_mlp.onnx"] != before["obi_mlp.onnx"]  # one epoch, not the shipped weights


def test_training_refuses_a_folder_holding_something_else(strategy_copy, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    args = ["train", AAPL, "--strategy", str(strategy_copy), "--data-dir", str(BUNDLED_DATA),
            "--set", "train.epochs=1", "--out", str(other)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "not empty and is not a run directory, not a train run" in result.output
    assert _files(other) == {"notes.txt": b"mine"}
    _train(strategy_copy, "--out", str(other), "--force")
    assert set(_files(other)) == {"obi_mlp.onnx", "obi_mlp.pt", "obi_mlp.train.json"}


def test_shipped_obi_mlp_torch_and_onnx_agree_on_real_features():
    config = apply_overrides(load_strategy("obi_mlp"))
    session = resolve_session(AAPL, BUNDLED_DATA)
    x, _, _, _, names = training_set(session, config, horizon=10)
    assert len(names) == 16
    onnx = OnnxRunner(STRATEGY_DIR / "obi_mlp.onnx", 16)
    torch = TorchRunner(STRATEGY_DIR / "obi_mlp.pt", 16)
    rows = x[:: max(1, len(x) // 2000)]
    vector = np.zeros(16, dtype=np.float64)
    diffs = []
    for row in rows:
        vector[:] = row
        diffs.append(abs(onnx.predict(vector, 0)[0] - torch.predict(vector, 0)[0]))
    assert max(diffs) <= 1e-5
    assert len(diffs) > 1000


def test_replay_features_match_the_training_features(tmp_path):
    """The buffer the replay builds computes the same names the model was trained on."""
    config = apply_overrides(load_strategy("obi_mlp"))
    assert build_features(config, 10).names == config.features.names
