"""Parameter and latency sweeps: many independent replays (cells) on one executor."""

from simulator.sweep.executors import Executor, PoolExecutor, RayExecutor, SerialExecutor
from simulator.sweep.grid import GridAxis, parse_grid, parse_scales
from simulator.sweep.run import Sweep, SweepOutcome, SweepSpec

__all__ = [
    "Executor",
    "GridAxis",
    "PoolExecutor",
    "RayExecutor",
    "SerialExecutor",
    "Sweep",
    "SweepOutcome",
    "SweepSpec",
    "parse_grid",
    "parse_scales",
]
