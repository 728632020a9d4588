"""Shared fixtures: where the repository's bundled data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_DATA = REPO / "data"
ORIGINALS = BUNDLED_DATA / "originals"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory for a test to import into."""
    path = tmp_path / "data"
    path.mkdir()
    return path
