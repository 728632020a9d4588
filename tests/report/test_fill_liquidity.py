"""The report tags fills maker or taker: counts and fees (rebates) of each, from fills.parquet."""

from __future__ import annotations

import polars as pl
import pytest

from simulator.report.pnl import statistics


def test_statistics_split_fills_and_fees_by_liquidity():
    fills = pl.DataFrame(
        {
            "side": [1, -1, 1, -1],
            "px": [100.0, 101.0, 100.0, 100.5],
            "qty": [1.0, 1.0, 2.0, 2.0],
            "fee": [-0.002, -0.00202, 0.01, 0.01005],
            "ts_recv": [1, 2, 3, 4],
            "liquidity": ["maker", "maker", "taker", "taker"],
        }
    )
    stats = {s.key: s.value for s in statistics({"n_fills": 4.0}, fills)}
    assert stats["maker_fills"] == 2.0
    assert stats["taker_fills"] == 2.0
    assert stats["maker_fees"] == pytest.approx(-0.00402)
    assert stats["taker_fees"] == pytest.approx(0.02005)
