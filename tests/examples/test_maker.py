"""examples/maker, a plug-in strategy outside the package (a Python feature, an ONNX model with
two outputs, a policy posting and cancelling limit orders, a custom risk check): it replays,
runs under stress, and runs live against the feed server with live/replay digest parity."""

from __future__ import annotations

import json
import threading
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from simulator import api
from simulator.config import apply_overrides, load_strategy
from simulator.features import session_events
from simulator.features.user import assert_twin_matches
from simulator.feedsim.server import serving
from simulator.live.run import LiveOptions, run_live
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA, REPO

MAKER = REPO / "examples" / "maker" / "strategy.toml"
GOOG = "nasdaq/GOOG/2012-06-21"
ETH = "binance/ETHUSDT/2024-08-08"
# the policy sizes in quote currency (1000 / mid in the instrument's lots): only the signal's
# thresholds differ on the short BTC tape, no sizing or risk limit
CRYPTO = ("policy.enter=0.52", "policy.leave=0.5")
SIZING = {"MAX_NOTIONAL", "MAX_POSITION", "MAX_ORDER_SIZE", "MIN_NOTIONAL"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maker") / "run"
    return api.replay(GOOG, MAKER, out=out, data_dir=BUNDLED_DATA)


def test_the_example_replays_posting_cancelling_and_filling_as_maker(run):
    assert run.manifest["strategy"] == "maker"
    orders, fills = run.orders, run.fills
    assert orders.filter(pl.col("post_only")).height > 100  # limit orders at the best
    assert run.table("cancels").height > 100  # cancelled when the signal fades
    assert fills.filter(pl.col("liquidity") == "maker").height > 0
    reasons = run.rejections["reason"].unique().to_list()
    assert "TOO_FAR_FROM_MID" in reasons  # the custom check, reported by its name
    buys = run.orders.filter(pl.col("side") == 1)["qty"].unique().to_list()
    assert buys == [1.0]  # 1000 / mid (~570) in whole shares


def test_the_example_buys_fractions_of_a_coin_in_lots(tmp_path):
    """1000 USDT / mid (~2,600 on ETHUSDT) in the instrument's 0.0001 ETH lots."""
    run = api.replay(ETH, MAKER, out=tmp_path / "run", data_dir=BUNDLED_DATA)
    assert not SIZING & set(run.rejections["reason"].to_list())
    buys = run.orders.filter(pl.col("side") == 1)["qty"].to_list()
    assert buys
    assert all(abs(q / 0.0001 - round(q / 0.0001)) < 1e-6 for q in buys), buys
    assert all(0.3 < q < 0.45 for q in buys), buys


def test_the_example_follows_the_ask_down_with_cancel_replace(tmp_path):
    """On the GOOG day no exit has to follow the ask (each fills where it was posted, or the
    stop sells at market); on the ETHUSDT day the ask moves away under some exits, which
    follow it (cancel-replace)."""
    run = api.replay(ETH, MAKER, out=tmp_path / "run", data_dir=BUNDLED_DATA)
    replaces = run.table("cancels").filter(pl.col("new_px").is_not_null())
    assert replaces.height > 0
    sells = set(run.orders.filter(pl.col("side") == -1)["order_id"].to_list())
    assert set(replaces["order_id"].to_list()) <= sells  # only exits move


def test_the_example_feature_has_a_true_vectorised_twin():
    from simulator.plugins import build, load_class

    cls = load_class("features.py:ObiEwma", key="test", base=MAKER.parent, needs=_needs())
    session = resolve_session(GOOG, BUNDLED_DATA)
    events = session_events(session, kinds=("book", "trades"), levels=5).head(20_000)
    assert_twin_matches(build(cls, {"halflife": 20.0}, key="test"), events)


def _needs():
    from simulator.features.user import NEEDS

    return NEEDS


def test_the_example_runs_under_stress(run, tmp_path):
    out = tmp_path / "stress"
    args = ["stress", GOOG, "--strategy", str(MAKER), "--scenario", "flash_crash",
            "--workers", "1", "--no-report", "--out", str(out), "--json",
            "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    comparison = pl.read_parquet(out / "comparison.parquet")
    assert comparison.height == 2  # the calm baseline and the flash crash
    baseline = json.loads(next(out.rglob("calm*/manifest.json")).read_text())
    assert baseline["digest"] == run.digest  # the calm baseline is the plain replay


def test_the_example_runs_live_against_the_feed_server_with_replay_parity(tmp_path, tape):
    config = apply_overrides(load_strategy(str(MAKER)), sets=CRYPTO)
    with serving(tape, speed=None) as server:
        options = LiveOptions(
            symbols=("btcusdt",), data_dir=tmp_path / "data", out_root=tmp_path / "reports",
            url=server.ws_url, rest_url=server.rest_url, until_idle_s=2.0,
            backoff_initial_s=0.1, backoff_cap_s=0.5,
        )  # fmt: skip
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert int(str(summary["n_orders"])) > 0
    assert not SIZING & set(summary["rejections_by_reason"]), summary["rejections_by_reason"]
    ref = resolve_session(str(result.sessions[name]), tmp_path / "data")
    recorded = apply_overrides(config, sets=["latency.model=recorded"])
    replayed = replay(ref, recorded, out_dir=tmp_path / "replayed")
    assert replayed.manifest["digest"] == digest


@pytest.mark.slow
def test_the_example_runs_in_a_sweep_on_worker_processes(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", GOOG, "--strategy", str(MAKER), "--grid", "policy.enter=0.56,0.6",
            "--workers", "2", "--out", str(out), "--data-dir", str(BUNDLED_DATA)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    results = pl.read_parquet(out / "results.parquet")
    assert results.height == 2
    assert results["digest"].n_unique() == 2  # the parameter reached the user's policy
