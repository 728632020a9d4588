"""The live tests' feed tape, for the example's live run."""

from tests.live.conftest import tape

__all__ = ["tape"]
