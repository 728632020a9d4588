"""The one exception hierarchy of ticktape.

    SimulatorError
    ├── ConfigError
    │   └── ScenarioError
    ├── DataError            bad input: names file, row (or message number) and problem
    ├── ModelError
    ├── VenueError
    └── InvariantViolation   a broken internal invariant; stops the run

The CLI maps every SimulatorError to one red line and exit code 1.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error ticktape raises on purpose."""


class ConfigError(SimulatorError):
    """A configuration value, option or file is wrong."""


class ScenarioError(ConfigError):
    """A stress scenario file is wrong."""


class DataError(SimulatorError):
    """Recorded data is missing, malformed or violates the data contract."""


class ModelError(SimulatorError):
    """A model file cannot be loaded or run."""


class VenueError(SimulatorError):
    """The venue cannot accept or process an order."""


class InvariantViolation(SimulatorError):
    """An invariant that must always hold was broken (e.g. time going backwards)."""
