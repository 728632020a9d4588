"""Sweeps: cells and their rows, the same digests on every local executor, resuming by content
key, failing cells recorded, results.parquet as specified."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.errors import ConfigError
from simulator.sweep import GridAxis, PoolExecutor, SerialExecutor, Sweep, SweepSpec
from simulator.sweep.cell import CELL_FILE
from tests.sweep.conftest import SESSIONS


@pytest.fixture(scope="module")
def serial(small_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, Sweep(small_spec, out).run(SerialExecutor())


def test_cells_are_sessions_times_grid_times_scales_in_order(serial):
    _, outcome = serial
    labels = [(r["session"], r["policy.threshold"], r["latency_scale"]) for r in outcome.rows]
    assert labels == [(s, t, f) for s in SESSIONS for t in (0.05, 0.1) for f in (1.0, 4.0)]
    assert all(r["status"] == "ok" for r in outcome.rows)
    assert len({r["digest"] for r in outcome.rows}) == 8  # every cell trades differently


def test_each_cell_is_a_normal_run_with_its_effective_config(serial):
    out, outcome = serial
    row = outcome.rows[3]  # session 1, threshold 0.1, latency x4
    manifest = json.loads((out / "cells" / row["cell"] / "manifest.json").read_text())
    assert manifest["digest"] == row["digest"]
    assert manifest["seed"] == 3
    assert manifest["config"]["policy"]["threshold"] == 0.1
    assert manifest["config"]["latency"]["model"] == "fixed:inference=160.0"  # 40 µs x 4
    assert manifest["summary"]["n_fills"] == row["n_fills"]
    assert not (out / "cells" / row["cell"] / "report.html").exists()


def test_results_parquet_has_one_typed_row_per_cell(serial):
    out, outcome = serial
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 8
    assert table.column_names[:3] == ["session", "policy.threshold", "latency_scale"]
    assert str(table.schema.field("policy.threshold").type) == "double"
    for name in ("n_events", "n_orders", "n_fills", "net_pnl", "realized_pnl", "fees",
                 "final_equity",
                 "max_drawdown", "tick_to_trade_p50_us", "tick_to_trade_p99_us", "digest",
                 "status", "wall_s"):  # fmt: skip
        assert name in table.column_names, name
    assert table.column("digest").to_pylist() == [r["digest"] for r in outcome.rows]
    query = (f"SELECT count(*), sum(n_fills) FROM '{out / 'results.parquet'}' "
             "WHERE \"policy.threshold\" = 0.1")  # fmt: skip
    [(n, fills)] = duckdb.execute(query).fetchall()
    assert (n, fills) == (4, sum(r["n_fills"] for r in outcome.rows[2:4] + outcome.rows[6:8]))


def test_two_local_workers_give_every_cell_the_serial_digest(small_spec, serial, tmp_path):
    _, expected = serial
    outcome = Sweep(small_spec, tmp_path).run(PoolExecutor(2))
    assert [r["digest"] for r in outcome.rows] == [r["digest"] for r in expected.rows]
    assert [r["cell"] for r in outcome.rows] == [r["cell"] for r in expected.rows]


def test_the_same_sweep_again_skips_the_cells_done_and_force_reruns(small_spec, tmp_path):
    spec = SweepSpec(**{**_fields(small_spec), "scales": (1.0,)})
    first = Sweep(spec, tmp_path).run(SerialExecutor())
    again = Sweep(spec, tmp_path).run(SerialExecutor())
    assert (again.n_run, again.n_resumed) == (0, 4)
    assert again.rows == first.rows
    wider = SweepSpec(**{**_fields(spec), "axes": (GridAxis("policy.threshold", ("0.05", "0.2")),)})
    widened = Sweep(wider, tmp_path).run(SerialExecutor())
    assert (widened.n_run, widened.n_resumed) == (2, 2)  # only threshold 0.2 is new
    forced = Sweep(SweepSpec(**{**_fields(spec), "force": True}), tmp_path).run(SerialExecutor())
    assert (forced.n_run, forced.n_resumed) == (4, 0)
    assert [r["digest"] for r in forced.rows] == [r["digest"] for r in first.rows]


def test_a_changed_seed_or_an_interrupted_cell_runs_again(small_spec, tmp_path):
    spec = SweepSpec(**{**_fields(small_spec), "scales": (), "axes": ()})
    first = Sweep(spec, tmp_path).run(SerialExecutor())
    (tmp_path / "cells" / first.rows[0]["cell"] / CELL_FILE).unlink()  # as if cut mid-cell
    again = Sweep(spec, tmp_path).run(SerialExecutor())
    assert (again.n_run, again.n_resumed) == (1, 1)
    assert again.rows[0]["digest"] == first.rows[0]["digest"]
    reseeded = Sweep(SweepSpec(**{**_fields(spec), "seed": 4}), tmp_path).run(SerialExecutor())
    assert reseeded.n_resumed == 0


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(sweep_data, tmp_path):
    spec = SweepSpec(
        sessions=SESSIONS[:1], data_dir=sweep_data, config=load_strategy("obi_rule"),
        axes=(GridAxis("model.feature", ("l1_imbalance", "no_such_feature")),),
    )  # fmt: skip
    outcome = Sweep(spec, tmp_path).run(SerialExecutor())
    ok, bad = outcome.rows
    assert ok["status"] == "ok"
    assert outcome.n_failed == 1
    assert str(bad["status"]).startswith("failed: ConfigError: model.feature 'no_such_feature'")
    assert bad.get("digest") is None
    table = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [r["status"] for r in table] == [ok["status"], bad["status"]]
    again = Sweep(spec, tmp_path).run(SerialExecutor())
    assert (again.n_run, again.n_resumed) == (1, 1)  # a failed cell is not done


def test_grid_values_are_checked_before_any_cell_runs(sweep_data, tmp_path):
    config = load_strategy("obi_rule")
    spec = SweepSpec(sessions=SESSIONS, data_dir=sweep_data, config=config,
                     axes=(GridAxis("policy.treshold", ("0.1",)),))  # fmt: skip
    with pytest.raises(ConfigError, match=r"did you mean 'policy\.threshold'"):
        Sweep(spec, tmp_path)
    assert not (tmp_path / "cells").exists()


def test_latency_scale_with_the_zero_model_is_an_error(sweep_data, tmp_path):
    spec = SweepSpec(sessions=SESSIONS, data_dir=sweep_data, config=load_strategy("obi_rule"),
                     scales=(1.0, 2.0))  # fmt: skip
    with pytest.raises(ConfigError, match="--latency-scale needs a non-zero latency model"):
        Sweep(spec, tmp_path)


def test_latency_scale_multiplies_stage_feed_and_order_latency(sweep_data, tmp_path):
    sets = ["latency.model=fixed:features=2,inference=30", "latency.feed_us=5",
            "venue.latency=fixed", "venue.entry_us=100", "venue.response_us=50"]  # fmt: skip
    config = apply_overrides(load_strategy("obi_rule"), sets=sets)
    spec = SweepSpec(sessions=SESSIONS[:1], data_dir=sweep_data, config=config, scales=(0.5,))
    plan = Sweep(spec, tmp_path)
    scaled = plan.config(plan.cells[0])
    assert scaled.latency.model == "fixed:features=1.0,inference=15.0"
    assert scaled.latency.feed_us == 2.5
    assert (scaled.venue.entry_us, scaled.venue.response_us) == (50.0, 25.0)


def test_a_calibrated_model_is_scaled_through_a_rewritten_file(sweep_data, tmp_path):
    from simulator.timing import read_calibration

    calibration = tmp_path / "cal.parquet"
    shutil.copy(_calibration(sweep_data, tmp_path), calibration)
    config = apply_overrides(load_strategy("obi_rule"),
                             sets=[f'latency.model="calibrated:{calibration}"'])  # fmt: skip
    spec = SweepSpec(sessions=SESSIONS[:1], data_dir=sweep_data, config=config, scales=(1.0, 3.0))
    outcome = Sweep(spec, tmp_path / "sweep").run(SerialExecutor())
    assert [r["status"] for r in outcome.rows] == ["ok", "ok"]
    tripled = sorted((tmp_path / "sweep" / "latency").glob("*-x3.parquet"))
    original = read_calibration(calibration).column("upper_ns").to_pylist()
    assert read_calibration(tripled[0]).column("upper_ns").to_pylist() == [3 * v for v in original]


def _calibration(sweep_data, tmp_path):
    from simulator.runtime import replay
    from simulator.session import resolve_session
    from simulator.timing import calibrate

    run = tmp_path / "measured"
    config = apply_overrides(load_strategy("obi_rule"), sets=["latency.model=measured"])
    replay(resolve_session(SESSIONS[0], sweep_data), config, out_dir=run)
    return calibrate(run, tmp_path / "measured.parquet")


def _fields(spec):
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def test_a_sweep_never_writes_into_a_directory_holding_something_else(small_spec, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty and holds no sweep \(sweep\.json\)"):
        Sweep(small_spec, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_plug_in_strategy_sweeps_the_same_on_workers(sweep_data, tmp_path):
    """The user's feature class is loaded by path in each spawned worker: same digests."""
    from simulator.config import load_strategy as load
    from tests.plugins.strategy_files import write_strategy

    features = 'names = ["l1_imbalance", "spread_bps"]\nplugins = ["features.py:SpreadBps"]'
    toml = write_strategy(tmp_path / "mine", features)
    spec = SweepSpec(sessions=SESSIONS[:1], data_dir=sweep_data, config=load(str(toml)),
                     axes=(GridAxis("policy.threshold", ("0.3", "0.6")),))  # fmt: skip
    serial = Sweep(spec, tmp_path / "serial").run(SerialExecutor())
    pooled = Sweep(spec, tmp_path / "pool").run(PoolExecutor(2))
    assert [r["status"] for r in pooled.rows] == ["ok", "ok"]
    assert [r["digest"] for r in pooled.rows] == [r["digest"] for r in serial.rows]
    (tmp_path / "mine" / "features.py").write_text(
        (tmp_path / "mine" / "features.py").read_text().replace("2e4", "1e4")
    )
    edited = Sweep(spec, tmp_path / "serial").run(SerialExecutor())
    assert edited.n_resumed == 0  # the user's code changed: every cell runs again
