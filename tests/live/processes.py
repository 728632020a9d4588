"""`ticktape feed serve` and `ticktape live` as real processes, as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

TICKTAPE = Path(sys.executable).parent / "ticktape"


def live_against_feed(
    feed_args: Sequence[str], live_args: Callable[[str, str], Sequence[str]]
) -> subprocess.CompletedProcess[str]:
    """Start `ticktape feed serve FEED_ARGS`, run `ticktape live` with the arguments
    `live_args(ws_url, rest_url)` builds from the URLs the server prints, stop the server
    (SIGINT); the live process's result."""
    feed = subprocess.Popen(
        [str(TICKTAPE), "feed", "serve", *feed_args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert feed.stdout is not None
        words = feed.stdout.readline().split()  # feed: <ws url>  rest: <rest url>
        return subprocess.run(
            [str(TICKTAPE), "live", *live_args(words[1], words[3])],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        feed.send_signal(signal.SIGINT)
        feed.communicate(timeout=20)
