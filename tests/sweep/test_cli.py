"""`ticktape replay` of several sessions and `ticktape sweep` from the command line: output,
files, exit codes, and Ctrl-C (a real subprocess and a real signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from cli import main
from simulator.batch import INDEPENDENCE
from tests.conftest import REPO
from tests.sweep.conftest import SESSIONS


def _invoke(data, *args):
    return CliRunner().invoke(main, [*args, "--data-dir", str(data)])


def test_replay_of_a_pattern_runs_each_session_on_its_own(sweep_data, tmp_path):
    out = tmp_path / "multi"
    args = ("replay", "synth/AAA/*", "--strategy", "obi_rule", "--out", str(out), "--no-report")
    result = _invoke(sweep_data, *args)
    assert result.exit_code == 0, result.output
    assert f"2 sessions: {INDEPENDENCE}" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [row["session"] for row in summary["sessions"]] == list(SESSIONS)
    for row in summary["sessions"]:
        manifest = json.loads((Path(row["run_dir"]) / "manifest.json").read_text())
        assert manifest["digest"] == row["digest"]
        assert manifest["summary"]["n_fills"] == row["n_fills"]
        assert row["digest"][:8] in result.output
    totals = summary["totals"]
    assert totals["n_fills"] == sum(row["n_fills"] for row in summary["sessions"])
    assert totals["final_equity"] == sum(row["final_equity"] for row in summary["sessions"])
    assert "total (2)" in result.output


def test_replay_of_one_session_alone_equals_its_run_inside_a_pattern(sweep_data, tmp_path):
    """Nothing carries over: the second session's digest is the same replayed alone."""
    many = _invoke(sweep_data, "replay", *SESSIONS, "--strategy", "obi_rule", "--json",
                   "--no-report", "--out", str(tmp_path / "many"))  # fmt: skip
    one = _invoke(sweep_data, "replay", SESSIONS[1], "--strategy", "obi_rule", "--json",
                  "--no-report", "--out", str(tmp_path / "one"))  # fmt: skip
    assert many.exit_code == one.exit_code == 0, many.output + one.output
    aggregate = json.loads(many.output)
    assert aggregate["independent"] == INDEPENDENCE
    assert aggregate["sessions"][1]["digest"] == json.loads(one.output)["digest"]


def test_a_pattern_matching_nothing_is_one_red_line_with_close_matches(sweep_data, tmp_path):
    result = _invoke(sweep_data, "replay", "synth/aaa/*", "--strategy", "obi_rule")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("DataError: pattern 'synth/aaa/*' matches none of the 2")
    assert "close matches: synth/AAA/2024-01-02, synth/AAA/2024-01-03" in result.output


def test_sweep_writes_cells_results_and_report_and_exits_1_on_a_failed_cell(sweep_data, tmp_path):
    out = tmp_path / "sweep"
    args = ("sweep", "synth/AAA/*", "--strategy", "obi_rule", "--grid",
            "model.feature=l1_imbalance,nope", "--workers", "1", "--out", str(out))  # fmt: skip
    result = _invoke(sweep_data, *args)
    assert result.exit_code == 1, result.output
    assert "4 cells: 4 run, 0 resumed, 2 failed" in result.output
    assert "SweepError: 2 of 4 cells failed" in result.output
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert [row["model.feature"] for row in table] == ["l1_imbalance", "nope"] * 2
    assert [row["status"] == "ok" for row in table] == [True, False] * 2
    assert (out / "sweep.html").exists()
    again = _invoke(sweep_data, *args)
    assert "resuming: 2 of 4 cells already done" in again.output
    assert again.exit_code == 1


def test_sweep_option_errors_are_usage_errors(sweep_data, tmp_path):
    out = ("--out", str(tmp_path / "s"))
    bad_grid = _invoke(sweep_data, "sweep", SESSIONS[0], "--strategy", "obi_rule", "--grid",
                       "policy.threshold", *out)  # fmt: skip
    assert bad_grid.exit_code == 2
    assert "expected KEY=V1,V2,..." in bad_grid.output
    bad_scale = _invoke(sweep_data, "sweep", SESSIONS[0], "--strategy", "obi_rule",
                        "--latency-scale", "1,x", *out)  # fmt: skip
    assert bad_scale.exit_code == 2
    zero = _invoke(sweep_data, "sweep", SESSIONS[0], "--strategy", "obi_rule",
                   "--latency-scale", "1,2", *out)  # fmt: skip
    assert zero.exit_code == 1
    assert "--latency-scale needs a non-zero latency model" in zero.output


def test_sweep_without_ray_installed_says_how_to_install(sweep_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    result = _invoke(sweep_data, "sweep", SESSIONS[0], "--strategy", "obi_rule", "--ray",
                     "local", "--out", str(tmp_path / "s"))  # fmt: skip
    assert result.exit_code == 1
    assert result.output == (
        "ConfigError: --ray needs Ray: pip install 'ticktape[ray]' (or pip install ray)\n"
    )


def _workers(pid):
    """Pool workers of process `pid` (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        command = (stat.parent / "cmdline").read_bytes()
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def test_ctrl_c_stops_the_workers_and_keeps_finished_cells(tmp_path, sweep_data):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "cli", "sweep", *SESSIONS, "--strategy", "obi_mlp",
           "--grid", "policy.threshold=0.02,0.04,0.06,0.08",
           "--workers", "2", "--out", str(out), "--data-dir", str(sweep_data)]  # fmt: skip
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(out.glob("cells/*/cell.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _workers(process.pid)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted: workers stopped;" in stderr
    assert "run the same command to resume" in stderr
    assert workers
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []
    rows = pq.read_table(out / "results.parquet").to_pylist()
    statuses = [row["status"] for row in rows]
    assert len(rows) == 8
    assert "ok" in statuses
    assert "not run" in statuses, "the sweep finished before Ctrl-C: make the cells longer"
    kept = statuses.count("ok")
    assert len(list(out.glob("cells/*/cell.json"))) == kept
    assert f"{kept} of 8 cells done" in stderr
    cmd[cmd.index("--workers") + 1] = "1"  # the same sweep (the executor is not in the key)
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming: {kept} of 8 cells already done" in resumed.stdout


def test_data_show_takes_a_pattern_and_shows_each_session(sweep_data):
    result = _invoke(sweep_data, "data", "show", "synth/*/*", "--rows", "1")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines() if line.startswith("synth")] == (
        list(SESSIONS)
    )


def test_a_one_session_command_takes_a_pattern_matching_one_and_refuses_several(sweep_data):
    one = _invoke(sweep_data, "data", "check", "synth/AAA/*-02")
    assert one.exit_code == 0, one.output
    assert "quotes.parquet: 3,000 rows checked: OK" in one.output
    several = _invoke(sweep_data, "data", "check", "synth/AAA/*")
    assert several.exit_code == 2
    assert "SESSION 'synth/AAA/*' matches 2 sessions" in several.output
