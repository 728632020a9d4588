"""obi_maker (post-only quotes with a queue position) paper-trades live against the local feed
server, and the recording replayed with its decision times gives the same digest; it also
runs under `stress` like any strategy."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
from click.testing import CliRunner

from cli import main
from simulator.config import load_strategy
from simulator.feedsim.server import serving
from tests.live.test_parity import _live, _replay_digest


def test_obi_maker_live_run_and_its_replay_have_the_same_digest(tmp_path, tape):
    """No `--set`: quotes of 1000 USDT / mid in the instrument's lots (0.00001 BTC, from the
    feed server's exchangeInfo), not 1 BTC."""
    config = load_strategy("obi_maker")  # the defaults: no overrides at all
    with serving(tape, speed=None) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert int(str(summary["n_orders"])) > 10  # it quoted
    sizing = {"MAX_NOTIONAL", "MAX_POSITION", "MAX_ORDER_SIZE", "MIN_NOTIONAL"}
    assert not sizing & set(summary["rejections_by_reason"]), summary["rejections_by_reason"]
    qty = pq.read_table(result.run_dirs[name] / "orders.parquet", columns=["qty"])["qty"]
    lots = [q / 0.00001 for q in qty.to_pylist() if q > 0.0]  # a cancel carries no qty
    assert lots
    assert all(abs(n - round(n)) < 1e-6 for n in lots), lots
    assert all(1_000 < n < 2_000 for n in lots), lots
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_obi_maker_runs_under_stress(tmp_path):
    out = tmp_path / "stress"
    args = ["stress", "nasdaq/GOOG/2012-06-21", "--strategy", "obi_maker", "--scenario",
            "flash_crash", "--workers", "1", "--no-report", "--out", str(out),
            "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {row["scenario"]: row for row in json.loads(result.output)["summary"]}
    assert set(rows) == {"calm", "flash crash"}
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["calm"]["n_fills"] > 0
    assert rows["flash crash"]["digest"] != rows["calm"]["digest"]  # the shock changed fills
