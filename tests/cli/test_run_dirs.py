"""Run directories through the CLI: nothing is created for a run that fails, a directory
holding something else is refused unless --force, and a replaced run leaves no stale file."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from cli import main
from tests.factories import quotes, with_value, write


@pytest.fixture
def session(tmp_path):
    return write(quotes(3_000), tmp_path / "quotes.parquet")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The working directory, where the default reports/ folder goes."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _run_threads():
    """Threads a run starts (read-ahead, recorder writer): none may outlive a failed run."""
    return [t for t in threading.enumerate() if t.name.startswith("ticktape-") and t.is_alive()]


def replay(session, *extra):
    args = ["replay", str(session), "--strategy", "obi_rule", "--no-report", *extra]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--latency", "bogus"], "bogus"),
        (["--set", "venue.latency=bogus"], "venue.latency"),
    ],
)
def test_a_bad_setting_creates_no_run_directory(session, workdir, extra, message):
    for _ in range(2):
        result = replay(session, *extra)
        assert result.exit_code == 1, result.output
        assert message in result.output
    assert list(workdir.iterdir()) == []  # not even reports/
    assert _run_threads() == []


def test_bad_rows_found_while_reading_leave_no_run_directory(tmp_path, workdir):
    bad = write(with_value(quotes(3_000), "bid_px", 2_500, -1.0), tmp_path / "bad.parquet")
    result = replay(bad)
    assert result.exit_code == 1
    assert "row 2500" in result.output
    assert list(workdir.iterdir()) == []
    assert _run_threads() == []


def test_a_failed_run_into_an_existing_run_keeps_that_run(tmp_path, session):
    out = tmp_path / "run"
    assert replay(session, "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write(with_value(quotes(3_000), "bid_px", 2_500, -1.0), tmp_path / "bad.parquet")
    assert replay(bad, "--out", str(out)).exit_code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unrelated_non_empty_directory_is_refused_unless_forced(tmp_path, session):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = replay(session, "--out", str(out))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ConfigError: --out {out}: not empty and is not a run directory, not a replay run; "
        "choose another directory or pass --force to clear it"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    result = replay(session, "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "notes.txt").exists()
    assert (out / "manifest.json").exists()


def test_a_file_as_out_is_refused(tmp_path, session):
    out = tmp_path / "file"
    out.write_text("x")
    result = replay(session, "--out", str(out))
    assert result.exit_code in (1, 2)
    assert out.read_text() == "x"


def test_replacing_a_run_leaves_none_of_its_files(tmp_path, session):
    out = tmp_path / "run"
    args = ["replay", str(session), "--strategy", "obi_rule", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0  # with report.html
    assert (out / "report.html").exists()
    (out / "stale.txt").write_text("from before")
    result = replay(session, "--out", str(out), "--set", "policy.threshold=0.9")
    assert result.exit_code == 0, result.output
    assert not (out / "report.html").exists()
    assert not (out / "stale.txt").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["policy"]["threshold"] == 0.9


def test_a_replay_refuses_a_stress_directory(tmp_path, session):
    out = tmp_path / "stress"
    out.mkdir()
    write(quotes(2), out / "comparison.parquet")
    result = replay(session, "--out", str(out))
    assert result.exit_code == 1
    assert "holds a stress run, not a replay run" in result.output


def test_a_multi_session_replay_that_fails_leaves_nothing(tmp_path, session, workdir):
    bad = write(with_value(quotes(3_000), "bid_px", 2_500, -1.0), tmp_path / "bad.parquet")
    args = ["replay", str(session), str(bad), "--strategy", "obi_rule", "--no-report"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "row 2500" in result.output
    assert list(workdir.iterdir()) == []


def test_a_multi_session_replay_refuses_an_unrelated_directory(tmp_path, session):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["replay", str(session), str(session), "--strategy", "obi_rule", "--no-report",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "not empty and is not a run directory" in result.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
