"""obi_maker (post-only quotes with a queue position) paper-trades live against the local feed
server, and the recording replayed with its decision times gives the same digest; it also
runs under `stress` like any strategy."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli import main
from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.server import serving
from tests.live.test_parity import _live, _replay_digest

# BTC in hundredths of a coin: quotes of 0.01 and queue fills in satoshi-sized lots
CRYPTO_MAKER = (
    "policy.size=0.01",
    "policy.max_inventory=0.05",
    "venue.lot_size=0.00001",
    "risk.max_position=1",
    "risk.max_order_size=1",
    "risk.max_notional=1e9",
)


def test_obi_maker_live_run_and_its_replay_have_the_same_digest(tmp_path, tape):
    config = apply_overrides(load_strategy("obi_maker"), sets=CRYPTO_MAKER)
    with serving(tape, speed=None) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    summary = result.summaries[name]
    assert int(str(summary["n_orders"])) > 10  # it quoted
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
