"""The notebook API: a replay returns the run's tables as polars frames, the same run the CLI
writes (same digest); load_run reads it back; bad overrides are the CLI's errors."""

from __future__ import annotations

import json

import polars as pl
import pytest

from simulator import api
from simulator.errors import ConfigError, DataError
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return api.replay(AAPL, "obi_rule", overrides={"venue.taker_fee_bps": 1.0}, out=out,
                      data_dir=BUNDLED_DATA)  # fmt: skip


def test_replay_returns_frames_of_every_table(run):
    for frame in (run.decisions, run.orders, run.fills, run.equity, run.latency, run.rejections):
        assert isinstance(frame, pl.DataFrame)
    assert run.summary["n_fills"] == run.fills.height > 0
    assert run.summary["n_orders"] == run.orders.height
    assert run.summary["n_events"] == 107_165
    assert {"features_ns", "inference_ns", "tick_to_trade_ns"} <= set(run.latency.columns)
    assert run.config["venue"]["taker_fee_bps"] == 1.0
    assert run.fills["fee"].sum() > 0  # the override reached the venue
    assert run.digest == json.loads((run.path / "manifest.json").read_text())["digest"]


def test_load_run_reads_the_same_run_back(run):
    again = api.load_run(run.path)
    assert again.digest == run.digest
    assert again.fills.equals(run.fills)
    assert again.summary == run.summary


def test_nested_overrides_equal_dotted_ones(tmp_path):
    dotted = api.strategy_config("obi_rule", overrides={"venue.taker_fee_bps": 1.0})
    nested = api.strategy_config("obi_rule", overrides={"venue": {"taker_fee_bps": 1}})
    assert dotted == nested
    assert dotted.venue.taker_fee_bps == 1.0  # typed: an int override becomes the float field
    assert dotted.as_dict()["venue"]["taker_fee_bps"] == 1.0


def test_the_same_replay_through_the_cli_has_the_same_digest(run, tmp_path):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "cli"
    args = ["replay", AAPL, "--strategy", "obi_rule", "--set", "venue.taker_fee_bps=1.0",
            "--out", str(out), "--no-report", "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["digest"] == run.digest


def test_report_writes_the_html_report(run, tmp_path):
    path = run.report(tmp_path / "r.html")
    assert path.read_text().lower().startswith("<!doctype html>")


def test_bad_overrides_and_run_dirs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^overrides: unknown key 'venue\.taker_fee'; did you"):
        api.strategy_config("obi_rule", overrides={"venue.taker_fee": 1.0})
    with pytest.raises(ConfigError, match=r"^venue\.taker_fee_bps must be a finite number"):
        api.strategy_config("obi_rule", overrides={"venue.taker_fee_bps": float("nan")})
    with pytest.raises(DataError, match=r"not a run directory \(no manifest\.json\)$"):
        api.load_run(tmp_path)
