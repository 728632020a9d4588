"""The shipped obi_mlp on the bundled Binance day: the threshold policy chases small target
changes, and the ones worth under BTCUSDT's 5 USDT minimum are not sent (counted in the
summary) instead of being rejected by the venue's MIN_NOTIONAL rule (1,544 rejections before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.config import load_strategy
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA


def test_obi_mlp_on_binance_sends_no_order_under_the_minimum_notional(tmp_path: Path):
    session = resolve_session("binance/BTCUSDT/2024-08-08", BUNDLED_DATA)
    result = replay(session, load_strategy("obi_mlp"), out_dir=tmp_path / "run")
    summary: dict[str, Any] = result.manifest["summary"]  # type: ignore[assignment]
    assert summary["n_orders"] > 1_000
    assert "MIN_NOTIONAL" not in summary["rejections_by_reason"]
    assert summary["n_under_minimum"] > 1_000  # each one an order the venue would refuse
