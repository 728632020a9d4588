"""TorchScript models with any number of outputs and a window input [1, W, n], and user features
that get the feed status events, through replay (errors name the TOML key)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner, Result

from cli import main
from simulator.engine import STATUS
from simulator.errors import ModelError
from simulator.models.torch_runner import TorchRunner
from simulator.types import StatusCode
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


class TwoOutputs(torch.nn.Module):
    """[1, n] -> (p_up [1, 1], p_down [1, 1]) as a dict by name, from x0 - x1."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = x[:, :1] - x[:, 1:2]
        return {"p_up": torch.sigmoid(s), "p_down": torch.sigmoid(-s)}


class PairOutputs(torch.nn.Module):
    """[1, n] -> a tuple (sigmoid of the sum [1, 1], the vector itself [1, n])."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(x.sum(dim=1, keepdim=True)), x * 1.0


class WindowMean(torch.nn.Module):
    """A window [1, W, n] -> its mean over time [1, n]; 0.5 + mean of feature 0 first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) + 0.5


class Linear2(torch.nn.Module):
    """Takes exactly two features."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x.reshape(1, 2)))


def _save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():  # torch >= 2.10 marks torch.jit deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


def test_outputs_come_back_side_by_side_and_can_be_picked_by_name(tmp_path):
    path = _save(TwoOutputs(), tmp_path / "two.pt")
    both = TorchRunner(path, 2)
    assert both.output_names == ("p_up", "p_down")
    out = both.predict(np.array([0.3, 0.1]), 0)
    assert out.dtype == np.float64
    assert out.shape == (2,)
    assert out[0] == pytest.approx(1 / (1 + np.exp(-0.2)), rel=1e-6)
    assert out[0] + out[1] == pytest.approx(1.0, rel=1e-6)
    assert both.predict(np.array([0.1, 0.3]), 1) is out  # the same preallocated vector
    assert out[0] == pytest.approx(1 / (1 + np.exp(0.2)), rel=1e-6)
    down = TorchRunner(path, 2, outputs=["p_down"])
    assert down.predict(np.array([0.3, 0.1]), 0).tolist() == pytest.approx(
        [1 - 1 / (1 + np.exp(-0.2))]
    )
    pair = TorchRunner(
        _save(PairOutputs(), tmp_path / "pair.pt"), 3, outputs=["output_1", "output_0"]
    )
    assert pair.n_outputs == 4
    np.testing.assert_allclose(pair.predict(np.array([0.5, -1.0, 2.0]), 0),
                               [0.5, -1.0, 2.0, 1 / (1 + np.exp(-1.5))], rtol=1e-6)  # fmt: skip
    with pytest.raises(ModelError, match=r"model.outputs names 'p_dwn', but the model has no such "
                                         r"output; did you mean 'p_down'\? \(its outputs: p_up, "
                                         r"p_down\)$"):  # fmt: skip
        TorchRunner(path, 2, outputs=["p_dwn"])


def test_a_window_model_sees_the_last_w_vectors_flat_oldest_first(tmp_path):
    runner = TorchRunner(_save(WindowMean(), tmp_path / "w.pt"), 2, window=3)
    assert runner.window == 3
    assert runner.output_names == ("output_0",)
    out = runner.predict(np.arange(6.0), 0)  # rows (0, 1), (2, 3), (4, 5)
    np.testing.assert_allclose(out, [2.5, 3.5])


def _folder(tmp_path: Path, module: torch.nn.Module, model_toml: str, names: str) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    _save(module, folder / "model.pt")
    (folder / "strategy.toml").write_text(
        f'[features]\nnames = {names}\n[model]\nkind = "torch"\npath = "model.pt"\n'
        f"{model_toml}\n[breaker]\nenabled = false\n[policy]\nthreshold = 0.2\n"
    )
    return folder / "strategy.toml"


def _replay(strategy: Path, out: Path, *extra: str, data_dir: Path = BUNDLED_DATA,
            session: str = AAPL) -> Result:  # fmt: skip
    args = ["replay", session, "--strategy", str(strategy), "--out", str(out), "--no-report",
            "--data-dir", str(data_dir), *extra]  # fmt: skip
    return CliRunner().invoke(main, args)


def test_loading_errors_are_one_line_naming_the_key(tmp_path):
    two = '["l1_imbalance", "book_imbalance"]'
    result = _replay(_folder(tmp_path, TwoOutputs(), 'outputs = ["p_dwn"]', two), tmp_path / "a")
    assert result.exit_code == 1
    model = tmp_path / "mine" / "model.pt"
    assert result.output.strip() == (
        f"ConfigError: model.path 'model.pt': {model}: model.outputs names 'p_dwn', but the "
        "model has no such output; did you mean 'p_down'? (its outputs: p_up, p_down)"
    )
    strategy = _folder(tmp_path, TwoOutputs(), "window = 4", '["l1_imbalance"]')
    result = _replay(strategy, tmp_path / "b")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ConfigError: model.path 'model.pt': {model}: output 'p_up' is torch.float32 of shape "
        "[1, 1, 1]; expected a float tensor [1, k] (its input is a window: model.window is 4)"
    )
    strategy = _folder(tmp_path, Linear2(), "", '["l1_imbalance"]')
    result = _replay(strategy, tmp_path / "c")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"ConfigError: model.path 'model.pt': {model}: forward fails on inputs of shape "
        "[[1, 1]]: RuntimeError: "
    )
    assert len(result.output.strip().splitlines()) == 1  # not TorchScript's two tracebacks
    result = _replay(
        strategy,
        tmp_path / "d",
        "--set",
        'model.kind="gru"',
        "--set",
        "model.window=2",
        "--set",
        "model.hidden_size=4",
    )
    assert result.exit_code == 1
    assert "model.outputs and model.window apply to ONNX and TorchScript" in result.output


def test_a_two_output_and_a_window_model_replay(tmp_path):
    two = '["l1_imbalance", "book_imbalance"]'
    result = _replay(_folder(tmp_path, TwoOutputs(), "", two), tmp_path / "two")
    assert result.exit_code == 0, result.output
    decisions = pl.read_parquet(tmp_path / "two" / "decisions.parquet")
    assert decisions.filter(pl.col("inference_ns") >= 0).height > 0
    counts = []
    strategy = _folder(tmp_path, WindowMean(), "window = 4", '["l1_imbalance"]')
    for name, extra in (("window", []), ("rule", ["--set", 'model.kind="rule"',
                                                  "--set", "model.window=0"])):  # fmt: skip
        result = _replay(strategy, tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        decisions = pl.read_parquet(tmp_path / name / "decisions.parquet")
        counts.append(decisions.filter(pl.col("inference_ns") >= 0).height)  # the model ran
    assert counts[1] - counts[0] == 3  # the window of 4 fills 3 events after the features


STATUS_PY = '''
class StatusCount:
    """How many feed status events it saw, and the sum of their codes."""

    names = ("n_status", "status_codes")
    warmup = 0

    def __init__(self):
        self.reset()

    def on_quote(self, ts_recv, bid_px, bid_sz, ask_px, ask_sz):
        pass

    def on_status(self, ts_recv, code):
        assert ts_recv >= self.last_ts
        self.last_ts = ts_recv
        self.n += 1
        self.codes += code

    def write(self, out, at):
        out[at] = self.n
        out[at + 1] = self.codes

    def reset(self):
        self.n, self.codes, self.last_ts = 0, 0, 0


class Seen:
    """A policy that never trades; its target is the status count the model passed on."""

    target = float("nan")

    def decide(self, outputs, view):
        self.target = outputs[0] * 100 + outputs[1]
        return ()

    def reset(self):
        self.target = float("nan")
'''


def _live_recording(tmp_path: Path, codes: list[int]) -> Path:
    """The bundled AAPL session marked as a live recording, with a status table."""
    data = tmp_path / "data"
    session = data / AAPL
    session.mkdir(parents=True)
    source = BUNDLED_DATA / AAPL
    for name in ("quotes.parquet", "trades.parquet", "book.parquet", "orders.parquet"):
        (session / name).symlink_to(source / name)
    meta = json.loads((source / "meta.json").read_text())
    (session / "meta.json").write_text(json.dumps({**meta, "recorder": "live"}))
    ts = pq.read_table(source / "quotes.parquet", columns=["ts_recv"]).column("ts_recv")
    first, last = ts[0].as_py(), ts[len(ts) - 1].as_py()
    times = np.linspace(first, last, len(codes) + 2)[1:-1].astype(np.int64)  # inside
    pq.write_table(pa.table({
        "ts_event": pa.array(times, pa.int64()), "ts_recv": pa.array(times, pa.int64()),
        "seq": pa.array(np.arange(len(codes)), pa.int64()), "code": pa.array(codes, pa.int8()),
        "reason": pa.array([""] * len(codes), pa.string()),
    }), session / "status.parquet")  # fmt: skip
    return data


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


@pytest.mark.parametrize("latency", ["zero", "fixed:inference=5"])  # immediate; simulated time
def test_a_user_feature_gets_the_feed_status_events_of_a_recorded_session(tmp_path, latency):
    codes = [int(StatusCode.DISCONNECTED), int(StatusCode.CONNECTED), int(StatusCode.GAP)]
    data = _live_recording(tmp_path, codes)
    folder = tmp_path / "status"
    folder.mkdir()
    (folder / "status.py").write_text(STATUS_PY)
    _save(Identity(), folder / "model.pt")
    (folder / "strategy.toml").write_text(
        '[features]\nnames = ["n_status", "status_codes"]\n'
        'plugins = [{ class = "status.py:StatusCount" }]\n'
        '[model]\nkind = "torch"\npath = "model.pt"\n[breaker]\nenabled = false\n'
        '[policy]\nclass = "status.py:Seen"\n'
    )
    run = tmp_path / "run"
    result = _replay(folder / "strategy.toml", run, "--latency", latency, data_dir=data)
    assert result.exit_code == 0, result.output
    decisions = pl.read_parquet(run / "decisions.parquet")
    status = decisions.filter(pl.col("kind") == STATUS)
    # each status event reaches the feature before the decision on it: counts 1, 2, 3 and
    # code sums 2, 3, 6
    assert status["target"].to_list() == [102.0, 203.0, 306.0]
    assert decisions["target"].drop_nans().max() == 306.0


def test_status_calls_cost_nothing_when_no_feature_takes_them(tmp_path):
    from simulator.features.user import build_feature_stage
    from simulator.plugins import PluginSpec

    (tmp_path / "status.py").write_text(STATUS_PY)
    spec = PluginSpec(ref="status.py:StatusCount", params={})
    with_status = build_feature_stage(["n_status", "status_codes"], [spec], base=tmp_path,
                                      levels=1)  # fmt: skip
    assert with_status.on_status is not None  # type: ignore[union-attr]
    (tmp_path / "plain.py").write_text(STATUS_PY.replace("def on_status", "def _on_status"))
    plain = build_feature_stage(["n_status", "status_codes"],
                                [PluginSpec(ref="plain.py:StatusCount", params={})],
                                base=tmp_path, levels=1)  # fmt: skip
    assert plain.on_status is None  # type: ignore[union-attr]
