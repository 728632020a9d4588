"""The same sweep on a real local Ray instance (started here, stopped after): every cell's
digest equals the serial run's. One module, one Ray start: starting Ray takes seconds."""

from __future__ import annotations

import pytest

from simulator.config import load_strategy
from simulator.sweep import GridAxis, RayExecutor, SerialExecutor, Sweep, SweepSpec
from tests.sweep.conftest import SESSIONS

ray = pytest.importorskip("ray", reason="pip install 'ticktape[ray]' (make test installs it)")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


def test_ray_gives_every_cell_the_serial_digest(ray_instance, small_spec, tmp_path):
    expected = Sweep(small_spec, tmp_path / "serial").run(SerialExecutor())
    executor = RayExecutor("auto")  # joins the instance started above, leaves it running
    outcome = Sweep(small_spec, tmp_path / "ray").run(executor)
    assert executor.workers == 2
    assert [r["digest"] for r in outcome.rows] == [r["digest"] for r in expected.rows]
    assert [r["cell"] for r in outcome.rows] == [r["cell"] for r in expected.rows]
    assert all(r["status"] == "ok" for r in outcome.rows)


def test_a_failing_cell_comes_back_from_ray_as_its_row(ray_instance, sweep_data, tmp_path):
    spec = SweepSpec(
        sessions=SESSIONS[:1], data_dir=sweep_data, config=load_strategy("obi_rule"),
        axes=(GridAxis("model.feature", ("l1_imbalance", "nope")),),
    )  # fmt: skip
    rows = Sweep(spec, tmp_path).run(RayExecutor("auto")).rows
    assert rows[0]["status"] == "ok"
    assert str(rows[1]["status"]).startswith("failed: ConfigError: model.feature 'nope'")


def test_the_sweep_command_runs_on_ray(ray_instance, sweep_data, tmp_path):
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "sweep"
    args = ["sweep", SESSIONS[0], "--strategy", "obi_rule", "--grid", "policy.threshold=0.3,0.6",
            "--ray", "auto", "--out", str(out), "--data-dir", str(sweep_data)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 cells: 2 run, 0 resumed, 0 failed" in result.output
    assert pq.read_table(out / "results.parquet").column("status").to_pylist() == ["ok", "ok"]
