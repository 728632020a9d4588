"""`ticktape new strategy`: a folder that replays as written, from outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import main
from tests.conftest import BUNDLED_DATA, REPO

GOOG = "nasdaq/GOOG/2012-06-21"


def _ticktape(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_new_strategy_replays_unchanged_from_a_folder_outside_the_repository(tmp_path):
    made = _ticktape("new", "strategy", "mine", "--dir", "work", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "work" / "mine"
    files = {"strategy.toml", "features.py", "policy.py", "model.onnx", "README.md"}
    assert {p.name for p in folder.iterdir()} == files
    args = ("replay", GOOG, "--strategy", "work/mine/strategy.toml", "--out", "run", "--no-report",
            "--data-dir", str(BUNDLED_DATA))  # fmt: skip
    replayed = _ticktape(*args, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["strategy"] == "mine"
    assert manifest["summary"]["n_orders"] > 0  # the template trades on the bundled day
    listed = _ticktape("strategies", "--dir", "work", cwd=tmp_path)
    assert "mine" in listed.stdout
    # it sizes in quote currency: the same file buys fractions of a coin, no `--set`
    args = ("replay", "binance/BTCUSDT/2024-08-08", "--strategy", "work/mine/strategy.toml",
            "--out", "btc", "--no-report", "--data-dir", str(BUNDLED_DATA))  # fmt: skip
    replayed = _ticktape(*args, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    summary = json.loads((tmp_path / "btc" / "manifest.json").read_text())["summary"]
    assert summary["n_orders"] > 0
    assert summary["rejections_by_reason"] == {}
    qty = pq.read_table(tmp_path / "btc" / "orders.parquet", columns=["qty"])["qty"].to_pylist()
    assert all(0.0 < q < 0.02 for q in qty), qty  # 1000 USDT / ~61,800
    assert all(abs(q / 0.00001 - round(q / 0.00001)) < 1e-6 for q in qty), qty


def test_new_strategy_refuses_a_taken_folder_and_a_bad_name(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["new", "strategy", "mine", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(main, ["new", "strategy", "mine", "--dir", str(tmp_path)])
    assert again.exit_code == 1
    assert again.output.strip() == (
        f"ConfigError: {tmp_path / 'mine'} already exists and is not empty; pick another name "
        "or --dir"
    )
    bad = runner.invoke(main, ["new", "strategy", "../up", "--dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert "strategy name '../up': use letters, digits" in bad.output


@pytest.mark.slow
def test_new_strategy_trains_with_its_python_feature(tmp_path):
    made = _ticktape("new", "strategy", "mine", "--dir", "work", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    trained = _ticktape("train", GOOG, "--strategy", "work/mine/strategy.toml", "--out", "model",
                        "--data-dir", str(BUNDLED_DATA), cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    report = json.loads((tmp_path / "model" / "mine.train.json").read_text())
    assert report["features"] == ["l1_imbalance", "book_imbalance", "spread_bps"]
    assert report["val"]["auc"] > 0.55  # the template's features carry signal
