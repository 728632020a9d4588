"""A small data directory for sweeps: two synthetic sessions of one symbol."""

from __future__ import annotations

import pytest

from simulator.config import apply_overrides, load_strategy
from simulator.sources.synthetic import write_synthetic_session
from simulator.sweep import GridAxis, SweepSpec

SESSIONS = ("synth/AAA/2024-01-02", "synth/AAA/2024-01-03")


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("sweep-data")
    for seed, name in enumerate(SESSIONS):
        write_synthetic_session(data / name, 3_000, seed=seed)
    return data


@pytest.fixture(scope="session")
def small_spec(sweep_data):
    """2 sessions x 2 thresholds x 2 latency scales of obi_mlp (ONNX): 8 cells."""
    config = apply_overrides(load_strategy("obi_mlp"), sets=["latency.model=fixed:inference=40"])
    return SweepSpec(
        sessions=SESSIONS,
        data_dir=sweep_data,
        config=config,
        axes=(GridAxis("policy.threshold", ("0.05", "0.1")),),
        scales=(1.0, 4.0),
        seed=3,
    )
