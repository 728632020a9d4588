"""`ticktape data check --repair`: without --out nothing is written (and it says so, exit 1);
with --out the whole session is written, repaired, and replay accepts it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from tests.factories import quotes, trades, with_value, write


@pytest.fixture
def session(tmp_path):
    """A session directory: quotes with one bad row, clean trades, meta.json, a raw file."""
    directory = tmp_path / "venue" / "SYM" / "2024-01-02"
    directory.mkdir(parents=True)
    write(with_value(quotes(3_000), "ask_px", 40, 1.0), directory / "quotes.parquet")
    write(trades(2_000), directory / "trades.parquet")
    meta = {"session": "venue/SYM/2024-01-02", "time_zone": "UTC", "rows": {"quotes": 3_000,
            "trades": 2_000}}  # fmt: skip
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "raw.jsonl").write_text('{"kept": true}\n')
    return directory


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_repair_without_out_says_nothing_was_written_and_fails(session):
    before = sorted(p.name for p in session.parent.rglob("*"))
    result = invoke("data", "check", session, "--repair", "drop")
    assert result.exit_code == 1
    assert "quotes: would repair 1 rows dropped" in result.output
    assert result.output.strip().splitlines()[-1] == (
        "nothing was written: pass --out DIR to write the repaired session"
    )
    assert sorted(p.name for p in session.parent.rglob("*")) == before


def test_repair_with_out_writes_a_complete_session_that_replays(session, tmp_path):
    out = tmp_path / "fixed"
    result = invoke("data", "check", session, "--repair", "drop", "--out", out)
    assert result.exit_code == 0, result.output
    assert "quotes: repaired 1 rows dropped" in result.output
    assert f"repaired session written to {out} (quotes, trades)" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "quotes.parquet", "raw.jsonl", "trades.parquet"
    ]  # fmt: skip
    assert (out / "raw.jsonl").read_text() == '{"kept": true}\n'
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rows"] == {"quotes": 2_999, "trades": 2_000}
    assert meta["repaired"] == {"quotes": {"dropped": 1}, "trades": {}}
    assert meta["time_zone"] == "UTC"
    assert invoke("data", "check", out).exit_code == 0
    replay = invoke("replay", out, "--strategy", "obi_rule", "--no-report", "--out",
                    tmp_path / "run")  # fmt: skip
    assert replay.exit_code == 0, replay.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["summary"]["n_events"] == 2_999  # obi_rule reads the quotes


def test_repair_refuses_a_non_empty_out(session, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    result = invoke("data", "check", session, "--repair", "drop", "--out", out)
    assert result.exit_code == 1
    assert f"--out {out}: exists and is not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
