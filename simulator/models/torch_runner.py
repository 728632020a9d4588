"""TorchScript model runners: frozen, optimised for inference, one thread, preallocated input.

The input tensor is `torch.from_numpy` over a preallocated float32 array, so a prediction casts
the float64 features into that array (no tensor is built per call) and runs the frozen graph.
The cast rounds each value to the nearest float32, as the feature stage itself did when its
vector was float32: the shipped models see the same inputs they were trained on.
`StatefulTorchRunner` carries a recurrent hidden state from event to event within a session.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from simulator.errors import ModelError

WARM_UP_CALLS: Final = 16


@contextmanager
def torchscript_warnings_silenced() -> Iterator[None]:
    """torch >= 2.10 marks every torch.jit call deprecated; TorchScript is still this project's
    serving format, so exactly those warnings are silenced around the (cold) load/save calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def load_frozen(path: Path, *inputs: torch.Tensor) -> tuple[torch.jit.ScriptModule, object]:
    """A TorchScript module frozen and optimised for CPU inference, and its output on `inputs`.

    The dry run happens on the module as loaded: once optimised, the graph may run prepacked
    kernels that skip shape checks (a wrong input width crashed the process in testing).
    """
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    # One intra-op thread: faster for tiny models and deterministic. This is process-wide.
    torch.set_num_threads(1)
    try:
        with torchscript_warnings_silenced():
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except RuntimeError as e:
        raise ModelError(f"{path}: not a loadable TorchScript model: {e}") from e
    output = _dry_run(path, module.eval(), *inputs)
    try:
        with torchscript_warnings_silenced():
            return torch.jit.optimize_for_inference(module), output
    except RuntimeError as e:
        raise ModelError(f"{path}: cannot freeze the model for inference: {e}") from e


def _dry_run(path: Path, module: torch.jit.ScriptModule, *inputs: torch.Tensor) -> object:
    """Forward zeros once at load so a wrong input width fails here, not on event 0."""
    try:
        with torch.inference_mode():
            return module(*inputs)
    except RuntimeError as e:
        shapes = [list(t.shape) for t in inputs]
        raise ModelError(f"{path}: forward fails on inputs of shape {shapes}: {e}") from e


def _check_probability(path: Path, output: object) -> None:
    if not isinstance(output, torch.Tensor) or output.numel() != 1:
        found = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(f"{path}: the model returns {found}; expected one probability [1, 1]")
    if not output.dtype.is_floating_point:
        raise ModelError(f"{path}: the model returns {output.dtype}; expected a float tensor")


class TorchRunner:
    """P(mid goes up) from a TorchScript `forward(x: [1, n_features]) -> [1, 1]`."""

    __slots__ = ("_input", "_module", "_out", "_out_view", "_row", "name", "path")

    def __init__(self, path: str | Path, n_features: int) -> None:
        self.path = Path(path)
        self.name = f"torch:{self.path.name}"
        buffer = np.zeros((1, n_features), dtype=np.float32)
        self._row = buffer[0]
        self._out = np.zeros(1, dtype=np.float64)  # the runner's output vector: [p]
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only
        self._input = torch.from_numpy(buffer)  # shares memory with self._row
        self._module, output = load_frozen(self.path, self._input)
        _check_probability(self.path, output)

    def warm_up(self) -> None:
        # The first calls of a frozen graph run the profiling executor; keep them off event 0.
        self._row.fill(0.0)
        with torch.inference_mode():
            for _ in range(WARM_UP_CALLS):
                self._module(self._input)

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        self._row[...] = features  # the cast to float32, in place; faster than np.copyto
        with torch.inference_mode():
            self._out_view[0] = self._module(self._input).item()
        return self._out

    def reset(self) -> None:
        """Stateless: nothing to clear."""


class StatefulTorchRunner:
    """A recurrent cell `forward(x: [1, n], h: [1, hidden]) -> (p: [1, 1], h_new: [1, hidden])`.

    The hidden state lives in one preallocated tensor, overwritten after every event and zeroed
    by `reset()` at the start of each session.
    """

    __slots__ = (
        "_hidden",
        "_input",
        "_module",
        "_out",
        "_out_view",
        "_row",
        "_scratch",
        "name",
        "path",
    )

    def __init__(self, path: str | Path, n_features: int, hidden_size: int) -> None:
        self.path = Path(path)
        self.name = f"torch-stateful:{self.path.name}"
        buffer = np.zeros((1, n_features), dtype=np.float32)
        self._row = buffer[0]
        self._out = np.zeros(1, dtype=np.float64)  # the runner's output vector: [p]
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only
        self._input = torch.from_numpy(buffer)
        self._hidden = torch.zeros((1, hidden_size), dtype=torch.float32)
        self._scratch = torch.zeros((1, hidden_size), dtype=torch.float32)  # warm-up only
        self._module, output = load_frozen(self.path, self._input, self._hidden)
        self._check_output(output, hidden_size)

    def _check_output(self, output: object, hidden_size: int) -> None:
        if not isinstance(output, tuple) or len(output) != 2:
            raise ModelError(
                f"{self.path}: the model returns {type(output).__name__}; "
                "expected a tuple (p [1, 1], h_new [1, hidden_size])"
            )
        _check_probability(self.path, output[0])
        h_new = output[1]
        if not isinstance(h_new, torch.Tensor) or tuple(h_new.shape) != (1, hidden_size):
            found = list(h_new.shape) if isinstance(h_new, torch.Tensor) else type(h_new)
            raise ModelError(
                f"{self.path}: the new hidden state is {found}; expected [1, {hidden_size}]"
            )

    @property
    def hidden(self) -> torch.Tensor:
        """The current hidden state (read-only view for inspection)."""
        return self._hidden

    def warm_up(self) -> None:
        # Runs on a scratch state, so warming up never changes the session's hidden state.
        self._row.fill(0.0)
        with torch.inference_mode():
            for _ in range(WARM_UP_CALLS):
                self._scratch.zero_()
                self._module(self._input, self._scratch)

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        self._row[...] = features  # the cast to float32, in place; faster than np.copyto
        with torch.inference_mode():
            p, h_new = self._module(self._input, self._hidden)
            self._hidden.copy_(h_new)
            self._out_view[0] = p.item()
        return self._out

    def reset(self) -> None:
        self._hidden.zero_()
