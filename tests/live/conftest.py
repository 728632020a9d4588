"""Fixtures of the live tests."""

from __future__ import annotations

import pytest

from simulator.feedsim.tape import FeedTape, load_tape
from tests.conftest import REPO

TAPE_MESSAGES = 12_000


@pytest.fixture(scope="session")
def tape() -> FeedTape:
    """The first 12,000 messages of the bundled BTCUSDT recording, as the feed server's tape."""
    return load_tape(["binance/BTCUSDT/2024-08-08"], REPO / "data").slice(0, TAPE_MESSAGES)
