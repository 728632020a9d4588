"""sweep.html in headless Chromium: offline, every chart drawn, the cells table and the
heatmap showing results.parquet's numbers."""

from __future__ import annotations

import polars as pl
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import DataError
from simulator.report.format import money
from simulator.report.sweep import build_sweep_html, write_sweep_report
from simulator.sweep import GridAxis, SerialExecutor, Sweep, SweepSpec
from tests.report.test_report import _browse
from tests.sweep.conftest import SESSIONS

READ_SWEEP = """() => ({
  charts: [...document.querySelectorAll("[data-figure]")].map(
    div => [div.id, div.querySelectorAll("svg.main-svg *").length]),
  pnl: [...document.querySelectorAll("#cells-table td[data-key=net_pnl]")].map(
    td => [Number(td.dataset.value), td.textContent]),
  status: [...document.querySelectorAll("#cells-table td[data-key=status]")].map(
    td => td.textContent),
  heatmap: [...document.querySelectorAll("table.heatmap tbody tr")].map(
    tr => [...tr.querySelectorAll("td")].map(td => Number(td.dataset.value))),
  legend: [...document.querySelectorAll("#chart-latency-curve .legendtext")].map(
    t => t.textContent),
})"""


@pytest.fixture(scope="module")
def sweep_dir(sweep_data, tmp_path_factory):
    """2 sessions x 2 x 2 grid values x 2 latency scales of obi_rule (16 short cells)."""
    sets = ["latency.model=fixed:features=20", "venue.latency=fixed", "venue.entry_us=500"]
    spec = SweepSpec(
        sessions=SESSIONS, data_dir=sweep_data,
        config=apply_overrides(load_strategy("obi_rule"), sets=sets),
        axes=(GridAxis("policy.threshold", ("0.1", "0.3")),
              GridAxis("venue.taker_fee_bps", ("0", "2"))),
        scales=(1.0, 8.0),
    )  # fmt: skip
    out = tmp_path_factory.mktemp("sweep-report")
    Sweep(spec, out).run(SerialExecutor())
    write_sweep_report(out)
    return out


def test_sweep_report_in_a_browser_draws_every_chart_with_the_results(sweep_dir, tmp_path):
    url = (sweep_dir / "sweep.html").resolve().as_uri()
    shown, errors, requests = _browse(url, tmp_path / "profile", read=READ_SWEEP)
    assert errors == []
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    names = [name for name, _ in shown["charts"]]
    assert names == ["chart-key-policy-threshold", "chart-key-venue-taker-fee-bps",
                     "chart-latency-curve"]  # fmt: skip
    assert all(n_drawn > 0 for _, n_drawn in shown["charts"]), shown["charts"]
    results = pl.read_parquet(sweep_dir / "results.parquet")
    assert [value for value, _ in shown["pnl"]] == results["net_pnl"].to_list()
    assert [text for _, text in shown["pnl"]] == [money(v) for v in results["net_pnl"]]
    assert shown["status"] == ["ok"] * 16
    means = results.group_by("policy.threshold", "venue.taker_fee_bps").agg(
        pl.col("net_pnl").mean()
    )
    expected = [
        means.filter((pl.col("policy.threshold") == t) & (pl.col("venue.taker_fee_bps") == f))
        ["net_pnl"].item() for t in (0.1, 0.3) for f in (0.0, 2.0)
    ]  # fmt: skip
    assert [len(row) for row in shown["heatmap"]] == [2, 2]  # rows: thresholds, columns: fees
    assert [v for row in shown["heatmap"] for v in row] == pytest.approx(expected, rel=1e-12)
    assert len(shown["legend"]) == 8 + 1  # one line per session and grid values, the mean
    assert (
        "synth/AAA/2024-01-02 · policy.threshold=0.1 · venue.taker_fee_bps=0" in (shown["legend"])
    )


def test_latency_changes_the_cells_it_scales(sweep_dir):
    results = pl.read_parquet(sweep_dir / "results.parquet")
    slow, fast = (results.filter(pl.col("latency_scale") == s) for s in (8.0, 1.0))
    assert slow["digest"].to_list() != fast["digest"].to_list()


def test_sweep_report_of_a_directory_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"no results\.parquet; is it a `ticktape sweep`"):
        build_sweep_html(tmp_path)
