"""Order stage: the simulated venue and the order-leg latency models (re-exports only)."""

from __future__ import annotations

from simulator.execution.latency import FixedLatency, LatencyModel, ZeroLatency
from simulator.execution.sim_venue import NoteKind, SimVenue, VenueNote

__all__ = ["FixedLatency", "LatencyModel", "NoteKind", "SimVenue", "VenueNote", "ZeroLatency"]
