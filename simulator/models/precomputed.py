"""Signals computed in batch beforehand (the fast path), served by event index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from simulator.errors import ModelError


class PrecomputedRunner:
    """Serves `signals[event_index]`: one probability per event of the session, in order."""

    __slots__ = ("_out", "_out_view", "_signals", "name", "size")

    def __init__(self, signals: npt.NDArray[np.float64], *, name: str = "precomputed") -> None:
        values = np.asarray(signals, dtype=np.float64)
        if values.ndim != 1:
            raise ModelError(f"{name}: signals have shape {values.shape}; expected one column")
        bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))  # also catches NaN
        if bad.size:
            raise ModelError(
                f"{name}: signal {bad[0]} is {values[bad[0]]}; probabilities must lie in [0, 1] "
                f"({bad.size} such values)"
            )
        self.name = name
        self.size = int(values.size)
        # A list of Python floats: indexing it returns an existing object, nothing is boxed.
        self._signals: list[float] = values.tolist()
        self._out = np.zeros(1, dtype=np.float64)  # the output vector: [p]
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only

    @classmethod
    def from_file(cls, path: str | Path, column: str | None = None) -> PrecomputedRunner:
        """Signals from a `.npy` array or a Parquet column (the only column when not named)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: signal file not found")
        if path.suffix == ".npy":
            return cls(np.load(path, allow_pickle=False), name=f"precomputed:{path.name}")
        if path.suffix != ".parquet":
            raise ModelError(f"{path}: unknown signal file type; expected .npy or .parquet")
        names = pq.read_schema(path).names
        if column is None and len(names) != 1:
            raise ModelError(f"{path}: {len(names)} columns {names}; name the signal column")
        column = names[0] if column is None else column
        if column not in names:
            raise ModelError(f"{path}: no column '{column}'; columns are {names}")
        values = pq.read_table(path, columns=[column]).column(0).to_numpy()
        return cls(values.astype(np.float64), name=f"precomputed:{path.name}:{column}")

    def warm_up(self) -> None:
        """Nothing to warm: the signals are already in memory."""

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        if 0 <= event_index < self.size:
            self._out_view[0] = self._signals[event_index]
            return self._out
        raise ModelError(
            f"{self.name}: no signal for event {event_index}; the cache holds events "
            f"0..{self.size - 1} (recompute the signals for this session)"
        )

    def reset(self) -> None:
        """Stateless: the event index says where the session is."""
