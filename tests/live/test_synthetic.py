"""The synthetic feed: a consistent Binance book from a seed, lazy and bounded in memory, and
live mode runs on it with replay parity."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from websockets.sync.client import connect

from cli import main
from simulator.feedsim.server import serving
from simulator.feedsim.synthetic import CHUNK, PATTERN, SyntheticTexts, synthetic_tape
from tests.live.test_parity import _config, _live, _replay_digest


def test_synthetic_tape_chains_update_ids_and_is_the_same_when_read_again():
    tape = synthetic_tape(3 * CHUNK, seed=5)
    last_u = tape.snapshots[0].last_update_id
    trade_id = 0
    for i in range(len(tape)):
        message = orjson.loads(tape.texts[i])
        data = message["data"]
        assert message["stream"] == tape.streams[i] == f"btcusdt@{PATTERN[i % len(PATTERN)]}"
        if "U" in data:  # a diff continues the chain
            assert data["U"] == last_u + 1
            assert data["u"] >= data["U"]
            last_u = data["u"]
        elif "t" in data:
            assert data["t"] == trade_id + 1
            assert data["T"] == tape.ts_recv[i] // 1_000_000
            trade_id = data["t"]
        else:  # bookTicker: the id of the book it shows
            assert data["u"] == last_u
            assert float(data["b"]) < float(data["a"])
    texts = tape.texts
    assert isinstance(texts, SyntheticTexts)
    assert texts.chunks_kept <= 2  # only the latest chunks are kept
    again = synthetic_tape(3 * CHUNK, seed=5)
    assert [again.texts[i] for i in (5, CHUNK + 7, 3 * CHUNK - 1)] == [
        texts[5],  # far back: regenerated from the seed, the same bytes
        texts[CHUNK + 7],
        texts[3 * CHUNK - 1],
    ]
    assert synthetic_tape(10, seed=6).texts[0] != synthetic_tape(10, seed=5).texts[0]


def test_live_on_the_synthetic_feed_keeps_its_book_and_replays_to_the_same_digest(tmp_path):
    config = _config()
    with serving(synthetic_tape(15_000, seed=1), speed=None) as server:
        result = _live(tmp_path, server, config)
    ((name, digest),) = result.digests.items()
    normalizer: Any = result.live_facts[name]["normalizer"]
    assert normalizer["gaps"] == 0
    assert normalizer["diffs_applied"] > 2_500
    orders: Any = result.summaries[name]["n_orders"]
    assert orders > 0
    assert _replay_digest(tmp_path, result.sessions[name], config) == digest


def test_feed_serve_synthetic_serves_a_consistent_book_and_refuses_sessions_with_it():
    command = [str(Path(sys.executable).with_name("ticktape")), "feed", "serve", "--synthetic",
               "2000", "--seed", "3", "--speed", "max"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        with connect(f"{url}?streams=btcusdt@depth@100ms/btcusdt@trade") as ws:
            messages = [orjson.loads(m)["data"] for m in ws]  # until the tape ends
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    diffs = [m for m in messages if "U" in m]
    assert len(diffs) == 400  # every fifth of the 2,000 messages
    assert len(messages) == 400 + 800
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(diffs))
    assert out.startswith("feed done (end of recording): 2,000 messages, 1,200 frames sent")
    result = CliRunner().invoke(main, ["feed", "serve", "binance/BTCUSDT/2024-08-08",
                                       "--synthetic", "10"])  # fmt: skip
    assert result.exit_code == 1
    assert "give SESSIONs or --synthetic, not both" in result.output
