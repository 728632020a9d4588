"""The cyclic collector during a live run and while `feed serve` serves: what was built before
stays frozen out of its sight (a full collection walking it stalls the reader or the sender for
tens of ms), and the freeze is undone after."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading

from simulator.config import apply_overrides, load_strategy
from simulator.feedsim.server import FeedServer, serve_until_signal, serving
from simulator.live.run import LiveOptions, LiveView, run_live
from tests.live.test_keep_warm import CRYPTO


def test_a_live_run_freezes_what_it_built_and_unfreezes_after(tmp_path, tape):
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    def on_view(view: LiveView) -> None:
        seen.append(gc.get_freeze_count())

    config = apply_overrides(load_strategy("obi_rule"), sets=CRYPTO)
    with serving(tape.slice(0, 3_000), speed=20.0) as server:
        options = LiveOptions(
            symbols=("btcusdt",),
            data_dir=tmp_path / "data",
            out_root=tmp_path / "reports",
            url=server.ws_url,
            rest_url=server.rest_url,
            until_idle_s=0.5,
        )
        run_live(config, options, stop=threading.Event(), on_view=on_view)
    assert seen
    assert min(seen) > 10_000  # the modules, the pipeline, the model: frozen during the run
    assert gc.get_freeze_count() == 0


def test_feed_serve_freezes_its_tape_while_serving_and_unfreezes_after(tape):
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    def on_started(ws_url: str, rest_url: str) -> None:
        seen.append(gc.get_freeze_count())
        os.kill(os.getpid(), signal.SIGTERM)  # stops serving (the CLI's Ctrl-C / SIGTERM)

    server = FeedServer(tape.slice(0, 100), speed=None)
    assert asyncio.run(serve_until_signal(server, on_started)) == "stopped"
    assert seen[0] > 10_000
    assert gc.get_freeze_count() == 0
