"""Issue 11 §4: the shipped obi_rule replays the bundled Binance day in fractions of a coin
(9000 USDT / mid in 0.00001 BTC lots) and never gets stuck on a position too small to sell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from simulator.config import load_strategy
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA


def test_shipped_obi_rule_replays_binance_in_lots_without_min_notional_rejections(
    tmp_path: Path,
):
    session = resolve_session("binance/BTCUSDT/2024-08-08", BUNDLED_DATA)
    result = replay(session, load_strategy("obi_rule"), out_dir=tmp_path / "run")
    summary: dict[str, Any] = result.manifest["summary"]  # type: ignore[assignment]
    assert summary["n_orders"] > 100
    # a partial fill leaves dust under 5 USDT: counted as flat, bought on top of, never
    # offered for sale (before: 24,514 MIN_NOTIONAL rejections and the rule stuck long)
    assert summary["rejections_by_reason"] == {}
    qty = pq.read_table(tmp_path / "run" / "orders.parquet", columns=["qty"])["qty"]
    lots = [q / 0.00001 for q in qty.to_pylist()]
    assert all(abs(n - round(n)) < 1e-6 and 0.5 < n < 20_000 for n in lots), lots[:10]
