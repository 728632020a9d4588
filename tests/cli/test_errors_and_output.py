"""Issue 13 (items 7-10, 18-21): one red line instead of tracebacks, usage errors, help texts,
piped output at 80 columns and `--json`, through click's runner and real subprocesses."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import cli
from cli import main
from tests.conftest import BUNDLED_DATA, REPO
from tests.factories import quotes, with_value, write

AAPL = "nasdaq/AAPL/2012-06-21"
AAPL_QUOTES = BUNDLED_DATA / "nasdaq" / "AAPL" / "2012-06-21" / "quotes.parquet"


def _data_dir(args):
    """--data-dir for the commands that read sessions (report and calibrate read a run)."""
    return [] if args[0] in ("report", "calibrate") else ["--data-dir", str(BUNDLED_DATA)]


def _invoke(*args, env=None):
    return CliRunner(env=env).invoke(main, [*args, *_data_dir(args)])


def _run(*args, cwd, prefix=()):
    """The real command line in a subprocess, piped (not a terminal), 80 columns."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    env.pop("FORCE_COLOR", None)
    command = [*prefix, sys.executable, "-m", "cli", *args, *_data_dir(args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One small replay (a generated quote file) for the commands that read a run."""
    root = tmp_path_factory.mktemp("run")
    path = write(quotes(300), root / "q.parquet")
    out = root / "run"
    result = CliRunner().invoke(
        main, ["replay", str(path), "--strategy", "obi_rule", "--out", str(out), "--no-report"]
    )
    assert result.exit_code == 0, result.output
    return out


def _one_red_line(result, start):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(start), lines[0]
    return lines[0]


# --- 7: bench errors --------------------------------------------------------------------------


def test_bench_with_a_missing_session_names_it_in_one_line():
    result = _invoke("bench", "--data", "nasdaq/AAPL/2012-06-22", "--strategy", "obi_rule")
    line = _one_red_line(result, "DataError: no session nasdaq/AAPL/2012-06-22 under")
    assert result.output.strip() == line  # the one line is all that is printed


def test_bench_with_an_unknown_strategy_names_it_in_one_line():
    result = _invoke("bench", "--data", str(AAPL_QUOTES), "--strategy", "nope")
    line = _one_red_line(result, "ConfigError: unknown strategy 'nope'")
    assert result.output.strip() == line  # the one line is all that is printed


def test_bench_with_a_file_that_is_not_parquet_names_it(tmp_path):
    path = tmp_path / "q.parquet"
    path.write_bytes(b"not parquet")
    result = _invoke("bench", "--data", str(path), "--strategy", "obi_rule")
    line = _one_red_line(result, f"DataError: {path}: not a readable Parquet file")
    assert result.output.strip() == line  # the one line is all that is printed


def test_bench_shows_the_case_subprocess_error_as_its_own_line(tmp_path):
    """The file opens fine in the parent; the case subprocess finds the bad row."""
    path = write(with_value(quotes(50), "bid_px", 7, -1.0), tmp_path / "q.parquet")
    result = _invoke("bench", "--data", str(path), "--strategy", "obi_rule")
    line = _one_red_line(result, f"DataError: {path} row 7: ")
    assert "CalledProcessError" not in line


@pytest.mark.parametrize("size", ["0", "-5"])
def test_bench_size_below_one_is_a_usage_error(size):
    result = _invoke("bench", "--size", size)
    assert result.exit_code == 2
    assert f"Invalid value for '--size': {size} is not in the range x>=1" in result.output


# --- 8: outputs that cannot be written --------------------------------------------------------


def _out_commands(run_dir, bad_file, target):
    return {
        "replay": ["replay", AAPL, "--strategy", "obi_rule", "--out", str(target)],
        "report": ["report", str(run_dir), "-o", str(target / "r.html")],
        "calibrate": ["calibrate", str(run_dir), "-o", str(target / "c.parquet")],
        "stress": [
            *("stress", AAPL, "--strategy", "obi_rule", "--scenario", "dirty_feed"),
            *("--out", str(target)),
        ],
        "data check": [
            *("data", "check", str(bad_file), "--repair", "drop"),
            *("--out", str(target / "fixed.parquet")),
        ],
    }


@pytest.mark.parametrize("command", ["replay", "report", "calibrate", "stress", "data check"])
def test_an_output_under_a_regular_file_is_one_red_line(command, run_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = write(with_value(quotes(20), "ask_px", 4, 1.0), tmp_path / "bad.parquet")
    args = _out_commands(run_dir, bad, blocker / "out")[command]
    line = _one_red_line(_invoke(*args), "OutputError: ")
    assert f"{blocker} is a file, not a directory" in line


@pytest.fixture(scope="module")
def unprivileged():
    """The prefix that runs a command without root's right to write anywhere: none for a
    normal user; as root, setpriv to uid/gid 65534 (nobody), if that user can run the CLI."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import cli"],
        capture_output=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("uid 65534 cannot read this checkout or its interpreter")
    return prefix


@pytest.mark.parametrize("command", ["replay", "report", "calibrate", "stress", "data check"])
def test_an_output_in_a_read_only_directory_is_one_red_line(command, run_dir, unprivileged):
    """A real permission check: as root, the command runs as uid 65534 (setpriv)."""
    prefix = unprivileged
    with tempfile.TemporaryDirectory() as tmp:  # under /tmp: `nobody` can reach it
        root = Path(tmp)
        root.chmod(0o755)
        runs = shutil.copytree(run_dir, root / "run")
        bad = write(with_value(quotes(20), "ask_px", 4, 1.0), root / "bad.parquet")
        for path in (runs, *runs.iterdir(), bad):
            path.chmod(0o755 if path.is_dir() else 0o644)
        read_only = root / "read-only"
        read_only.mkdir(mode=0o555)
        read_only.chmod(0o555)
        args = _out_commands(runs, bad, read_only / "out")[command]
        done = _run(*args, cwd=root, prefix=prefix)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("OutputError: "), lines[0]
        assert f"{read_only} is not writable (permission denied)" in lines[0]
        assert list(read_only.iterdir()) == []


# --- 9 / 10: validation before anything runs ---------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--latency", "bogus"], "ConfigError: latency model 'bogus' unknown"),
        (["--set", 'venue.latency="bogus"'], "ConfigError: venue.latency must be one of zero"),
        (["--set", "strategy.timer_ms=-5"], "ConfigError: strategy.timer_ms must be a finite"),
    ],
)
def test_stress_validates_settings_before_any_worker_starts(extra, message, tmp_path):
    out = tmp_path / "out"
    args = ["stress", str(AAPL_QUOTES), "--strategy", "obi_rule", "--scenario", "dirty_feed",
            "--out", str(out), *extra]  # fmt: skip
    _one_red_line(_invoke(*args), message)
    assert not out.exists()


def test_data_show_with_negative_rows_is_a_usage_error():
    result = _invoke("data", "show", AAPL, "--rows", "-3")
    assert result.exit_code == 2
    assert "Invalid value for '--rows': -3 is not in the range x>=0" in result.output


def test_replay_refuses_a_negative_timer_interval(tmp_path):
    out = tmp_path / "r"
    args = ["replay", str(AAPL_QUOTES), "--strategy", "obi_rule", "--set", "strategy.timer_ms=-5"]
    line = _one_red_line(_invoke(*args, "--out", str(out)), "ConfigError: ")
    assert line == (
        "ConfigError: strategy.timer_ms must be a finite number >= 0 (0 = no timer); found -5.0"
    )
    assert not out.exists()


# --- 13: one PnL, after fees -------------------------------------------------------------------


def test_the_readme_crypto_example_prints_the_manifests_net_pnl(tmp_path):
    """README: size obi_mlp for crypto on the Binance session; the console's PnL is the
    manifest's net_pnl (after fees) and equals the final equity."""
    out = tmp_path / "run"
    sets = ("policy.max_position=0.1", "policy.lot=0.001", "risk.max_position=0.1")
    args = ["replay", "binance/BTCUSDT/2024-08-08", "--strategy", "obi_mlp", "--no-report"]
    result = _invoke(*args, *(x for s in sets for x in ("--set", s)), "--out", str(out))
    assert result.exit_code == 0, result.output
    s = json.loads((out / "manifest.json").read_text())["summary"]
    assert s["fees"] > 0
    assert s["net_pnl"] == pytest.approx(s["final_equity"], abs=1e-9)
    assert s["net_pnl"] == s["realized_pnl"] + s["unrealized_pnl"] - s["fees"]
    assert (
        f"  PnL {s['net_pnl']:,.4f} after fees (realised {s['realized_pnl']:,.4f}, "
        f"unrealised {s['unrealized_pnl']:,.4f}, fees {s['fees']:,.4f})\n"
    ) in result.output


# --- 18: help and flags ------------------------------------------------------------------------


def test_replay_latency_help_lists_every_model():
    result = _invoke("replay", "--help")
    text = " ".join(result.output.split())
    assert "zero | fixed:STAGE=US,... | measured | calibrated:FILE | recorded" in text


def test_data_check_help_says_session_or_path():
    result = CliRunner().invoke(main, ["data", "check", "--help"])
    assert "Usage: main data check [OPTIONS] SESSION|PATH" in result.output


def test_readme_bench_line_has_size():
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("ticktape bench "))
    assert "[--size N]" in line
    assert "--size" in _invoke("bench", "--help").output


@pytest.mark.parametrize("group", [[], ["data"], ["data", "import"], ["feed"]])
def test_command_descriptions_are_never_cut(group):
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, [*group, "-h"])
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    assert "…" not in commands


def test_h_is_help_everywhere():
    assert _invoke("replay", "-h").output.startswith("Usage: main replay [OPTIONS] SESSION")
    assert CliRunner().invoke(main, ["-h"]).output.startswith("Usage: main [OPTIONS] COMMAND")


def test_debug_is_accepted_after_the_command_too(tmp_path):
    path = tmp_path / "q.parquet"
    path.write_bytes(b"not parquet")
    result = CliRunner().invoke(main, ["data", "check", str(path), "--debug"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "DataError"


# --- 19: piped output --------------------------------------------------------------------------


def test_data_show_piped_at_80_columns_never_cuts_a_value(tmp_path):
    done = _run("data", "show", "binance/BTCUSDT/2024-08-08", "--rows", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "…" not in done.stdout
    assert "23:54:14.087891268" in done.stdout  # the first quote's ts_recv, to the nanosecond
    assert "61837.63" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines() if "│" in line) <= 80


def test_bench_piped_at_80_columns_never_cuts_a_number(tmp_path):
    done = _run("bench", "--data", str(AAPL_QUOTES), "--strategy", "obi_rule", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "…" not in done.stdout
    rows = [line for line in done.stdout.splitlines() if "107,165" in line]
    assert len(rows) == 3  # data, features, pipeline: every events count whole
    for row in rows:
        cells = [c.strip() for c in row.split("│")]
        assert all(c.replace(",", "").replace(".", "").isdigit() for c in cells[-4:]), row


def test_replay_writes_nothing_to_stderr_and_a_late_error_is_one_line(tmp_path):
    good = write(quotes(5000), tmp_path / "good.parquet")
    done = _run("replay", str(good), "--strategy", "obi_rule", "--out", "ok", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    late = write(with_value(quotes(5000), "bid_px", 4990, -1.0), tmp_path / "late.parquet")
    done = _run("replay", str(late), "--strategy", "obi_rule", "--out", "bad", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"DataError: {late} row 4990: ")
    assert done.stderr.count("\n") == 1


# --- 20: suggestions and settings without effect -----------------------------------------------


def test_a_typo_in_a_session_symbol_gets_a_suggestion():
    result = _invoke("data", "show", "nasdaq/GOG/2012-06-21")
    line = _one_red_line(result, "DataError: no session nasdaq/GOG/2012-06-21 under")
    assert "(did you mean nasdaq/GOOG/2012-06-21?)" in line


def test_another_symbol_gets_no_suggestion():
    line = _one_red_line(_invoke("data", "show", "nasdaq/MSFT/2012-06-21"), "DataError: ")
    assert "did you mean" not in line


def test_a_setting_without_effect_is_warned(tmp_path):
    path = write(quotes(500), tmp_path / "q.parquet")
    args = ["replay", str(path), "--strategy", "obi_rule", "--no-report", "--json"]
    done = _run(*args, "--set", "venue.entry_us=250", "--out", "a", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "warning: --set venue.entry_us=250 has no effect while venue.latency is 'zero' "
        "(add --set venue.latency=fixed)\n"
    )
    both = ("--set", 'venue.latency="fixed"', "--set", "venue.entry_us=250")
    done = _run(*args, *both, "--out", "b", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# --- 21: --json and the progress bar -----------------------------------------------------------


def test_replay_json_is_one_object_with_summary_paths_and_digest(tmp_path):
    out = tmp_path / "run"
    args = ("replay", str(AAPL_QUOTES), "--strategy", "obi_rule", "--out", str(out), "--json")
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert found["summary"] == manifest["summary"]
    assert found["digest"] == manifest["digest"]
    assert found["paths"] == {
        "run_dir": str(out),
        "manifest": str(out / "manifest.json"),
        "report": str(out / "report.html"),
    }
    assert (out / "report.html").exists()


def test_the_progress_bar_shows_an_eta(tmp_path, monkeypatch):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(cli, "err_console", terminal)
    args = ("replay", AAPL, "--strategy", "obi_rule", "--out", str(tmp_path / "r"), "--no-report")
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "replaying nasdaq/AAPL/2012-06-21" in screen.getvalue()
    assert "ETA" in screen.getvalue()
