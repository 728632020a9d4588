"""The one exception hierarchy of ticktape.

    SimulatorError
    ├── ConfigError
    │   └── ScenarioError
    ├── DataError            bad input: names file, row (or message number) and problem
    │   └── RecorderOverflow the live recorder fell behind; the recording would have a gap
    ├── ModelError
    ├── VenueError
    ├── FeedError            the live feed refuses us (HTTP 451, a bad REST request); not retried
    ├── OutputError          an output path (--out, -o) cannot be written; found before any work
    └── InvariantViolation   a broken internal invariant; stops the run

The CLI maps every SimulatorError to one red line and exit code 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SimulatorError(Exception):
    """Base of every error ticktape raises on purpose."""


class ConfigError(SimulatorError):
    """A configuration value, option or file is wrong."""


class ScenarioError(ConfigError):
    """A stress scenario file is wrong."""


class DataError(SimulatorError):
    """Recorded data is missing, malformed or violates the data contract."""


class RecorderOverflow(DataError):
    """The live recorder fell behind: rows would be lost, so the session is no good for parity."""


class ModelError(SimulatorError):
    """A model file cannot be loaded or run."""


class VenueError(SimulatorError):
    """The venue cannot accept or process an order."""


class FeedError(SimulatorError):
    """A live market-data feed cannot be used, and retrying will not help."""


class OutputError(SimulatorError):
    """An output path cannot be written (read-only, under a regular file, wrong kind)."""


class InvariantViolation(SimulatorError):
    """An invariant that must always hold was broken (e.g. time going backwards)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
