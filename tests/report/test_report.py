"""The HTML run report: its data equals the run's own numbers, it fails clearly on a broken run
dir, and, in a real browser, it draws every chart offline and shows the manifest's figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from simulator.config import load_strategy
from simulator.errors import DataError
from simulator.recording import STAGES
from simulator.report import batches, build_report_html, load_report_data, write_report
from simulator.report.downsample import FiniteSpan, M4Stream, m4_indices, window_ns
from simulator.report.format import count, local_time, money, utc_offset, value
from simulator.report.plotting import local_ms, time_axis_title
from simulator.report.pnl import Line, drawdown, fill_markers, round_trips
from simulator.report.tables import PERCENTILE_COLUMNS
from simulator.runtime import replay
from simulator.session import resolve_session
from tests.conftest import BUNDLED_DATA

AAPL = "nasdaq/AAPL/2012-06-21"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One obi_rule replay of the bundled AAPL day (~3 s), shared by the module's tests."""
    out = tmp_path_factory.mktemp("report") / "run"
    replay(resolve_session(AAPL, BUNDLED_DATA), load_strategy("obi_rule"), out_dir=out)
    return out


@pytest.fixture(scope="module")
def manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def report(run_dir):
    return load_report_data(run_dir)


def _copy(run_dir, tmp_path):
    return Path(
        shutil.copytree(run_dir, tmp_path / "copy", ignore=shutil.ignore_patterns("*.html"))
    )


# downsampling ---------------------------------------------------------------------------------


def _m4_reference(ts, values, buckets):
    """Slow, obvious M4: per bucket, the first, last, argmin and argmax of finite points."""
    finite = [i for i in range(len(values)) if np.isfinite(values[i])]
    first, span = ts[finite[0]], ts[finite[-1]] - ts[finite[0]]
    groups: dict[int, list[int]] = {}
    for i in finite:
        b = int((ts[i] - first) * buckets // (span + 1))
        groups.setdefault(b, []).append(i)
    keep = set()
    for members in groups.values():
        vals = [values[i] for i in members]
        keep |= {members[0], members[-1], members[int(np.argmin(vals))],
                 members[int(np.argmax(vals))]}  # fmt: skip
    return sorted(keep)


@pytest.mark.parametrize("seed", range(5))
def test_m4_keeps_first_last_min_and_max_of_every_bucket(seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 10**9, 5_000)).astype(np.int64)
    values = np.cumsum(rng.normal(size=ts.size))
    values[rng.integers(0, ts.size, 50)] = np.nan
    values[7] = values[8] = np.nanmin(values) - 1  # a tie: the first of the two is kept
    kept = m4_indices(ts, values, buckets=100)
    assert kept.tolist() == _m4_reference(ts, values, 100)
    finite = np.flatnonzero(np.isfinite(values))
    assert {finite[0], finite[-1], 7, int(np.nanargmax(values))} <= set(kept.tolist())
    assert len(kept) <= 400


def test_m4_keeps_every_finite_point_of_a_short_series():
    ts = np.arange(10, dtype=np.int64)
    values = np.array([1.0, np.nan, 3, 4, 5, 6, 7, 8, 9, 10])
    assert m4_indices(ts, values, buckets=100).tolist() == [0, 2, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("span_s", "max_windows", "expected_s"),
    [(100, 2_000, 1), (23_400, 2_000, 15), (23_400, 300, 120), (86_400 * 900, 300, 86_400 * 4)],
)
def test_window_ns_picks_the_shortest_round_window(span_s, max_windows, expected_s):
    assert window_ns(span_s * 10**9, max_windows) == expected_s * 10**9


# times and formats -----------------------------------------------------------------------------


def test_times_are_the_exchange_wall_clock_across_a_dst_change():
    # 2012-03-11 06:59:59 UTC is 01:59:59 EST; one second later it is 03:00:00 EDT
    ts = np.array([1331449199, 1331449200], dtype=np.int64) * 10**9
    wall_ms = local_ms(ts, "America/New_York")
    assert (wall_ms - ts / 1e6).tolist() == [-5 * 3_600_000, -4 * 3_600_000]
    zone = ZoneInfo("America/New_York")
    assert [utc_offset(int(t), zone) for t in ts] == ["EST, UTC-05:00", "EDT, UTC-04:00"]
    assert local_time(int(ts[1]) + 15_105, zone) == "2012-03-11 03:00:00.000015 EDT"
    assert time_axis_title(int(ts[0]), "UTC") == "time, UTC"


@pytest.mark.parametrize(
    ("kind", "number", "text"),
    [("money", -3891.7940719998, "-3,891.79"), ("money", -0.001, "0.00"),
     ("micros", 10218.678, "10,218.678"), ("count", 159594.0, "159,594"),
     ("quantity", 2.0, "2"), ("quantity", 0.125, "0.125"), ("percent", 0.0043, "0.4%")],
)  # fmt: skip
def test_values_read_the_same_everywhere(kind, number, text):
    assert value(kind, number) == text


# PnL and latency data equal the run's own numbers -------------------------------------------


def test_percentile_table_equals_the_manifest_latency_exactly(report, manifest):
    shown = {h.stage: h.summary for h in report.latency.stages}
    assert list(shown) == list(STAGES)
    assert shown == manifest["latency_us"]  # floats compared exactly, not approximately


def test_pnl_statistics_equal_the_manifest_summary(report, manifest):
    summary = manifest["summary"]
    from_manifest = {s.key: s.value for s in report.pnl.stats if s.source.startswith("manifest")}
    assert from_manifest == {k: float(summary[k]) for k in from_manifest}
    assert len(from_manifest) == 11
    assert next(iter(from_manifest)) == "net_pnl"  # the headline: PnL after fees
    assert from_manifest["net_pnl"] == pytest.approx(summary["final_equity"], abs=1e-9)
    assert float(report.pnl.drawdown.values.max()) == summary["max_drawdown"]
    assert report.pnl.equity.values[-1] == summary["final_equity"]
    assert report.pnl.buys.total + report.pnl.sells.total == summary["n_fills"]


def test_round_trips_add_up_to_the_realized_pnl_net_of_fees(run_dir, manifest):
    fills = pl.read_parquet(run_dir / "fills.parquet")
    position = (fills["side"].cast(pl.Float64) * fills["qty"]).cum_sum()
    last_flat = int(np.flatnonzero(position.to_numpy() == 0.0)[-1])
    open_fees = fills["fee"][last_flat + 1 :].sum()  # fees of the position still open
    summary = manifest["summary"]
    assert round_trips(fills).sum() == pytest.approx(
        summary["realized_pnl"] - summary["fees"] + open_fees, abs=1e-6
    )


def test_round_trips_and_hit_rate_by_hand():
    fills = pl.DataFrame(
        {"side": [1, -1, -1, 1, 1], "qty": [2.0, 2.0, 1.0, 1.0, 3.0],
         "px": [10.0, 11.0, 20.0, 21.0, 5.0], "fee": [0.1, 0.1, 0.0, 0.0, 0.0]}
    )  # fmt: skip
    # long 2 @10 -> flat @11 (+2 - 0.2); short 1 @20 -> flat @21 (-1); long 3 still open
    assert round_trips(fills).tolist() == pytest.approx([1.8, -1.0])


def test_drawdown_starts_from_a_zero_peak_like_the_engine():
    equity = np.array([0.0, -1.0, 2.0, 1.5, 3.0, -0.5])
    assert drawdown(equity).tolist() == [0.0, 1.0, 0.0, 0.5, 0.0, 3.5]


def test_fill_markers_merge_into_vwap_windows_above_the_limit():
    n = np.arange(3_000)
    fills = pl.DataFrame(
        {"side": np.ones(3_000, np.int8), "px": 100.0 + n % 7, "qty": 1.0 + n % 3, "fee": 0.01,
         "ts_recv": n * 10**8}  # one fill every 0.1 s
    )  # fmt: skip
    markers = fill_markers(fills, 1, max_markers=100)
    assert markers.window_ns == 5 * 10**9
    assert markers.total == markers.n_fills.sum() == 3_000
    assert markers.qty.sum() == fills["qty"].sum()
    first = fills.head(50)  # the first 5 s window
    vwap = float((first["px"] * first["qty"]).sum()) / float(first["qty"].sum())
    assert markers.price[0] == pytest.approx(vwap)
    assert fill_markers(fills, 1, max_markers=5_000).window_ns is None


# errors ---------------------------------------------------------------------------------------


def test_missing_run_dir_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such run directory"):
        build_report_html(tmp_path / "nope")


def test_incomplete_run_dir_names_every_missing_file(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    (copy / "fills.parquet").unlink()
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"incomplete run directory, missing manifest.json, "
                       r"fills.parquet; replay the session again"):  # fmt: skip
        build_report_html(copy)


def test_manifest_without_a_key_names_it(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["latency_us"], manifest["summary"]["fees"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest.json: missing latency_us, summary.fees$"):
        build_report_html(copy)


def test_decisions_without_a_column_names_it(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    pl.read_parquet(copy / "decisions.parquet").drop("equity").write_parquet(
        copy / "decisions.parquet"
    )
    with pytest.raises(DataError, match=r"decisions.parquet: missing column\(s\) equity$"):
        build_report_html(copy)


def test_tables_of_another_run_are_refused(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    pl.read_parquet(copy / "fills.parquet").head(3).write_parquet(copy / "fills.parquet")
    with pytest.raises(DataError, match=r"fills.parquet has 3 rows but manifest.json summary"):
        build_report_html(copy)


def test_a_changed_data_file_gives_no_mid_price_and_says_why(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["data_files"] = dict.fromkeys(manifest["data_files"], "0" * 64)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    data = load_report_data(copy)
    assert data.pnl.mid is None
    assert data.pnl.mid_note.startswith("no mid price: no verified quotes or book file")
    assert "quotes.parquet: sha256 differs" in data.pnl.mid_note
    assert [f.status for f in data.info.data_files] == ["sha256 differs"]


# the page -------------------------------------------------------------------------------------


def _figures(html):
    blocks = re.findall(r'<script type="application/json" id="figure-([^"]+)">(.*?)</script>', html)
    return {name: json.loads(text) for name, text in blocks}


def test_report_is_deterministic_and_offline_by_policy(run_dir, tmp_path):
    html = build_report_html(run_dir)
    assert build_report_html(run_dir) == html
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    assert write_report(run_dir, tmp_path / "r.html").read_text() == html
    assert set(_figures(html)) == {"pnl", "histograms", "latency-over-time"}  # no rejections
    assert 'id="stress"' not in html
    assert "Queueing delay</b>: not measured" in html


def test_every_figure_is_valid_plotly(run_dir):
    go = pytest.importorskip("plotly.graph_objects")
    for name, figure in _figures(build_report_html(run_dir)).items():
        assert go.Figure(figure).data, name  # raises ValueError on an unknown property


def test_stress_comparison_and_queueing_show_once_recorded(run_dir, tmp_path):
    copy = _copy(run_dir, tmp_path)
    pl.DataFrame({"scenario": ["baseline", "gap_5s"], "pnl": [1.5, -2.25], "fills": [10, 8]}
                 ).write_parquet(copy / "comparison.parquet")  # fmt: skip
    html = build_report_html(copy)
    assert f'<td class="num neg" data-value="-2.25">{money(-2.25)}</td>' in html
    assert "queue" not in _figures(html)  # a zero-latency run: nothing ever queued


def test_a_simulated_time_run_shows_its_queueing_and_skips(tmp_path):
    from simulator.config import apply_overrides

    sets = ('latency.model="fixed:features=20,inference=20"', 'latency.conflation="latest"')
    config = apply_overrides(load_strategy("obi_rule"), sets=sets)
    run = replay(resolve_session(AAPL, BUNDLED_DATA), config, out_dir=tmp_path / "timed")
    html = build_report_html(run.out_dir)
    assert "queue" in _figures(html)  # zero waits must not break the log axis
    skipped = run.summary["n_skipped"]
    assert isinstance(skipped, int)
    assert skipped > 0
    assert f"Skipped events: <b>{count(skipped)}</b>" in html


# in a real browser ----------------------------------------------------------------------------


READ_PAGE = """() => ({
  charts: [...document.querySelectorAll("[data-figure]")].map(
    div => [div.id, div.querySelectorAll("svg.main-svg *").length]),
  latency: [...document.querySelectorAll("#latency-table td[data-key]")].map(
    td => [td.closest("tr").dataset.stage, td.dataset.key, td.textContent]),
  pnl: [...document.querySelectorAll("#pnl-stats td[data-key]")].map(
    td => [td.dataset.key, td.textContent]),
})"""


def _browse(url, profile, read=READ_PAGE):
    """Open `url` in headless Chromium; what the page shows (the `read` script's answer), its
    console errors, its requests. The sweep report's test uses it too."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 900},
        )  # fmt: skip
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            page.wait_for_selector("body[data-charts-rendered]", state="attached", timeout=30_000)
            shown = page.evaluate(read)
        finally:
            context.close()
    return shown, errors, requests


def test_report_in_a_browser_draws_every_chart_offline_with_the_manifest_numbers(
    run_dir, manifest, tmp_path
):
    url = write_report(run_dir, tmp_path / "report.html").resolve().as_uri()
    shown, errors, requests = _browse(url, tmp_path / "profile")
    assert errors == []
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    assert len(shown["charts"]) == 3, shown["charts"]
    assert all(n_drawn > 0 for _, n_drawn in shown["charts"]), shown["charts"]
    kinds = {key: kind for key, _, kind in PERCENTILE_COLUMNS}
    assert len(shown["latency"]) == len(STAGES) * len(kinds)
    for stage, key, text in shown["latency"]:
        assert text == value(kinds[key], manifest["latency_us"][stage][key]), (stage, key)
    stat_kinds = {s.key: s.kind for s in load_report_data(run_dir).pnl.stats}
    pnl = {key: text for key, text in shown["pnl"] if key in manifest["summary"]}
    assert len(pnl) == 11
    for key, text in pnl.items():
        assert text == value(stat_kinds[key], manifest["summary"][key]), key


# bounded memory: batch by batch equals whole tables ------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_m4_stream_over_any_batches_equals_m4_on_the_whole_series(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 3_000))
    ts = np.sort(rng.integers(0, 10**6, n)).astype(np.int64)  # repeated timestamps too
    values = np.round(np.cumsum(rng.normal(size=n)), 1).astype(np.float64)  # ties across batches
    values[rng.integers(0, n, n // 20)] = np.nan
    buckets = int(rng.choice([5, 40, 1_000]))  # 1,000: every finite point is kept
    cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, 30)), replace=False))
    parts = list(zip(np.split(ts, cuts), np.split(values, cuts), strict=True))
    span = FiniteSpan()
    for part_ts, part in parts:
        span.add(part_ts, part)
    stream = M4Stream(span, buckets=buckets)
    for part_ts, part in parts:
        stream.add(part_ts, part)
    kept = m4_indices(ts, values, buckets=buckets)
    got_ts, got = stream.result()
    assert got_ts.tolist() == ts[kept].tolist()
    assert got.tolist() == values[kept].tolist()


def _over_time_reference(decisions, columns, window):
    """The whole-table version: per window, sorted samples and the higher-rank quantiles."""
    windows = decisions.get_column("ts_recv").to_numpy() // window * window
    reference = {}
    for stage, column in columns.items():
        values = decisions.get_column(column).to_numpy()
        rows = []
        for start in np.unique(windows):
            ran = np.sort(values[(windows == start) & (values >= 0)])
            if ran.size:
                p50, p99 = (ran[int(np.ceil(q * (ran.size - 1)))] / 1e3 for q in (0.5, 0.99))
                rows.append((start, p50, p99, ran.size))
        reference[stage] = rows
    return reference


def test_report_read_in_tiny_batches_equals_the_whole_table_figures(run_dir, monkeypatch):
    decisions = pl.read_parquet(run_dir / "decisions.parquet")
    monkeypatch.setattr(batches, "BATCH_ROWS", 997)  # batch edges mid-window, mid-bucket
    small = load_report_data(run_dir)
    ts = decisions.get_column("ts_recv").to_numpy()
    equity = decisions.get_column("equity").to_numpy()
    position = decisions.get_column("position").to_numpy()
    expected = {"equity": Line.downsampled(ts, equity),
                "drawdown": Line.downsampled(ts, drawdown(equity)),
                "position": Line.downsampled(ts, position)}  # fmt: skip
    quotes_path = small.info.data_files[0].path
    assert quotes_path is not None
    quotes = pl.read_parquet(quotes_path).filter(pl.col("bid_px") > 0, pl.col("ask_px") > 0)
    expected["mid"] = Line.downsampled(
        quotes.get_column("ts_recv").to_numpy(),
        ((quotes.get_column("bid_px") + quotes.get_column("ask_px")) / 2).to_numpy(),
    )
    got = {name: getattr(small.pnl, name) for name in expected}
    for name, line in expected.items():
        assert got[name].ts.tolist() == line.ts.tolist(), name
        assert got[name].values.tolist() == line.values.tolist(), name
    stages = {s.stage: s for s in small.latency.over_time}
    window = small.latency.window_ns
    reference = _over_time_reference(decisions, {s: f"{s}_ns" for s in stages}, window)
    for stage, rows in reference.items():
        own = stages[stage]
        assert list(zip(own.ts, own.p50_us, own.p99_us, own.samples, strict=True)) == rows
    monkeypatch.undo()
    assert build_report_html(run_dir) == _html_in_batches(run_dir, monkeypatch, 997)


def _html_in_batches(run_dir, monkeypatch, rows):
    monkeypatch.setattr(batches, "BATCH_ROWS", rows)
    return build_report_html(run_dir)
