"""The shipped maker strategy (obi_maker: a plug-in policy with post-only limit orders) through
the real engine and venue, queue models end to end, and decisions once per timestamp."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import DataError
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA
from tests.factories import T0, write

GOOG = "nasdaq/GOOG/2012-06-21"
BTC = "binance/BTCUSDT/2024-08-08"


def _replay(tmp_path, name: str, *sets: str, strategy: str = "obi_maker", session=None):
    config = apply_overrides(load_strategy(strategy), sets=sets)
    ref = session or resolve_session(GOOG, BUNDLED_DATA)
    return replay(ref, config, out_dir=tmp_path / name)


@pytest.fixture(scope="module")
def goog_runs(tmp_path_factory):
    """obi_maker on the GOOG day under each queue model (about 2-3 s a run)."""
    tmp = tmp_path_factory.mktemp("maker")
    runs = {
        "risk_averse": _replay(tmp, "risk_averse"),
        "again": _replay(tmp, "again"),
        "prob_power": _replay(tmp, "prob_power", 'venue.queue="prob_power"'),
        "none": _replay(tmp, "none", 'venue.queue="none"'),
        "l3_fifo": _replay(
            tmp, "l3", 'venue.queue="l3_fifo"', 'strategy.kinds=["trades", "orders", "book"]'
        ),
    }
    return runs


def test_obi_maker_quotes_fill_as_maker_through_the_queue(goog_runs):
    run = goog_runs["risk_averse"]
    fills = pq.read_table(run.out_dir / "fills.parquet")
    orders = pq.read_table(run.out_dir / "orders.parquet")
    assert fills.num_rows > 100
    assert set(fills.column("liquidity").to_pylist()) == {"maker"}  # post-only: never takes
    assert all(orders.column("post_only").to_pylist())
    assert max(abs(p) for p in pq.read_table(run.out_dir / "decisions.parquet")
               .column("position").to_pylist()) <= 5.0  # the inventory limit  # fmt: skip
    assert float(str(run.summary["fees"])) < 0.0  # maker rebates
    assert goog_runs["again"].manifest["digest"] == run.manifest["digest"]


def test_obi_maker_sizes_in_quote_currency_whole_goog_shares_and_fractions_of_a_coin(
    tmp_path, goog_runs
):
    """Issue 11 §4: 1000 quote-currency units per quote in the instrument's lots, no `--set`:
    1 GOOG share; on Binance 1000 USDT / mid in 0.00001 BTC lots (not 1 BTC, which the risk
    limits rejected 1,682 times as MAX_NOTIONAL)."""
    goog = pq.read_table(goog_runs["risk_averse"].out_dir / "orders.parquet")["qty"].to_pylist()
    assert set(goog) == {1.0}
    run = _replay(tmp_path, "btc", session=resolve_session(BTC, BUNDLED_DATA))
    assert run.summary["rejections_by_reason"] == {}
    assert int(str(run.summary["n_fills"])) > 100
    orders = pq.read_table(run.out_dir / "orders.parquet").to_pylist()
    assert len(orders) > 100
    for order in orders:  # ~0.016 BTC at ~61,800 USDT, in whole lots
        lots = order["qty"] / 0.00001
        assert abs(lots - round(lots)) < 1e-6, order
        assert 0.0161 < order["qty"] < 0.0163, order
    positions = pq.read_table(run.out_dir / "decisions.parquet")["position"].to_pylist()
    assert 0.0 < max(abs(p) for p in positions) < 3000.0 / 61_000  # max_inventory_notional


def test_queue_models_change_the_fills_and_the_touch_rule_never_fills_at_the_best(goog_runs):
    n_fills = {name: int(str(run.summary["n_fills"])) for name, run in goog_runs.items()}
    assert n_fills["none"] == 0  # quotes at the best: the opposite side never crosses them
    assert n_fills["prob_power"] != n_fills["risk_averse"]
    assert n_fills["l3_fifo"] > 0
    digests = {run.manifest["digest"] for name, run in goog_runs.items() if name != "again"}
    assert len(digests) == 4


def test_l3_fifo_without_order_level_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"l3_fifo' needs order-level data: add \"orders\""):
        _replay(tmp_path, "x", 'venue.queue="l3_fifo"')


def _quotes_at(times: list[int]) -> pa.Table:
    """Quotes at the given µs offsets; sizes grow so that no row repeats the one before."""
    ts = pa.array([T0 + t * 1_000 for t in times], pa.int64())
    n = len(times)
    return pa.table(
        {
            "ts_event": ts,
            "ts_recv": ts,
            "bid_px": [100.0] * n,
            "bid_sz": [float(i + 1) for i in range(n)],
            "ask_px": [100.01] * n,
            "ask_sz": [1.0] * n,
        }
    )


@pytest.mark.parametrize(
    ("decide", "expected"),
    [("event", [1, 1, 1, 1, 1, 1]), ("timestamp", [0, 1, 1, 0, 0, 1])],
)
def test_decisions_once_per_timestamp_come_after_every_row_sharing_it(tmp_path, decide, expected):
    path = write(_quotes_at([1, 1, 2, 3, 3, 3]), tmp_path / "ties.parquet")
    session = resolve_session(str(path), tmp_path)
    run = _replay(
        tmp_path, decide, f'strategy.decide="{decide}"', strategy="obi_rule", session=session
    )
    p = pq.read_table(run.out_dir / "decisions.parquet").column("p").to_pylist()
    assert [0 if math.isnan(v) else 1 for v in p] == expected


def test_ties_are_found_across_small_batches(tmp_path):
    """The last event of each timestamp is known whatever the batch size of the sources."""
    from simulator.engine import _quiet_ties, _with_next_ts
    from simulator.sources.merge import merge
    from simulator.sources.recorded import ParquetSource

    path = write(_quotes_at([1, 1, 2, 3, 3, 3, 4]), tmp_path / "ties.parquet")
    decides: list[bool] = []
    for merged, next_ts in _with_next_ts(merge([ParquetSource(path, batch_rows=2)])):
        parts = [(0, part.columns["ts_recv"], *([None] * 6), True) for part in merged.parts]
        all_parts, remapped = _quiet_ties(parts, merged, next_ts)
        decides += [all_parts[index][8] for index in remapped.order_part]
    assert decides == [False, True, True, False, False, True, True]


def test_obi_maker_quotes_nothing_when_its_notional_buys_less_than_one_lot(tmp_path):
    """100 USD per quote is under one GOOG share (~570): no order, not a zero-size one."""
    run = _replay(tmp_path, "tiny", "policy.notional=100.0")
    assert run.summary["n_orders"] == 0
    assert run.summary["rejections_by_reason"] == {}
