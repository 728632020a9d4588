"""A live run whose rare tables spill many times (a tiny SPILL_ROWS) still records every
order and fill in its session, in order, and its replay has the same digest; its checkpoints
hand free memory back (live/memory.py), counted in the manifest."""

from __future__ import annotations

import json
import threading
from typing import Any

import pyarrow.parquet as pq

from simulator import recording
from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.server import serving
from simulator.live.run import LiveOptions, run_live
from simulator.runtime import replay
from simulator.session import resolve_session

CRYPTO = ("policy.lot=0.01", "policy.max_position=0.1", "risk.max_position=1",
          "risk.max_order_size=1", "risk.max_notional=1e9")  # fmt: skip
SPILL_ROWS = 2
PACED = 100.0
"""Order counts depend on when the book syncs: at max speed on a loaded host the REST snapshot
can come so late that few orders (or none) are made; paced, the server answers it at once."""


def test_a_live_run_spilling_its_tables_records_every_order_and_replays_equal(
    tmp_path, tape, monkeypatch
):
    monkeypatch.setattr(recording, "SPILL_ROWS", SPILL_ROWS)  # live and replay both spill
    config = apply_overrides(load_strategy("obi_mlp"), sets=CRYPTO)
    with serving(tape, speed=PACED) as server:
        options = LiveOptions(symbols=("btcusdt",), data_dir=tmp_path / "data",
                              out_root=tmp_path / "reports", url=server.ws_url,
                              rest_url=server.rest_url, until_idle_s=2.0,
                              roll_seconds=0.5)  # fmt: skip
        result = run_live(config, options, stop=threading.Event())
    ((name, digest),) = result.digests.items()
    summary: dict[str, Any] = result.summaries[name]
    assert summary["n_orders"] > 5 * SPILL_ROWS
    assert summary["n_fills"] > 5 * SPILL_ROWS
    session, run_dir = result.sessions[name], result.run_dirs[name]
    assert not (run_dir / recording.SPILL_DIR).exists()
    released = json.loads((run_dir / "manifest.json").read_text())["live"]["memory_released"]
    assert released["calls"] >= 1  # a checkpoint every roll_seconds
    assert len(released["rss_mb"]) == released["calls"]  # RSS after each (a short run)
    orders = pq.read_table(run_dir / "orders.parquet")
    recorded = pq.read_table(session / "order_requests.parquet").select(orders.column_names)
    assert orders.num_rows == summary["n_orders"]
    assert recorded.equals(orders)
    fills = pq.read_table(run_dir / "fills.parquet")
    assert pq.read_table(session / "fills.parquet").select(fills.column_names).equals(fills)
    ref = resolve_session(str(session), tmp_path / "data")
    recorded_times = apply_overrides(config, sets=["latency.model=recorded"])
    replayed = replay(ref, recorded_times, out_dir=tmp_path / "replayed")
    assert replayed.manifest["digest"] == digest
