"""TorchScript model runners: frozen, optimised for inference, one thread, preallocated input.

`TorchRunner` takes [1, n] or a window [1, W, n] (`model.window`) and returns any number of
float outputs (`model.outputs` picks them by name) in one preallocated float64 vector.

The input tensor is `torch.from_numpy` over a preallocated float32 array, so a prediction casts
the float64 features into that array (no tensor is built per call) and runs the frozen graph.
The cast rounds each value to the nearest float32, as the feature stage itself did when its
vector was float32: the shipped models see the same inputs they were trained on.
`StatefulTorchRunner` carries a recurrent hidden state from event to event within a session.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import torch

from simulator.errors import ModelError, did_you_mean

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


def load_frozen(
    path: Path, *inputs: torch.Tensor, window: int = 0
) -> tuple[torch.jit.ScriptModule, object]:
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
    output = _dry_run(path, module.eval(), *inputs, window=window)
    try:
        with torchscript_warnings_silenced():
            return torch.jit.optimize_for_inference(module), output
    except RuntimeError as e:
        raise ModelError(f"{path}: cannot freeze the model for inference: {e}") from e


def _dry_run(
    path: Path, module: torch.jit.ScriptModule, *inputs: torch.Tensor, window: int = 0
) -> object:
    """Forward zeros once at load so a wrong input width fails here, not on event 0."""
    try:
        with torch.inference_mode():
            return module(*inputs)
    except RuntimeError as e:
        shapes = [list(t.shape) for t in inputs]
        why = f" (a window: model.window is {window})" if window else ""
        # TorchScript errors carry both tracebacks; the last line says what failed
        last = [line for line in str(e).splitlines() if line.strip()][-1:] or [repr(e)]
        raise ModelError(f"{path}: forward fails on inputs of shape {shapes}{why}: "
                         f"{last[0].strip()}") from e  # fmt: skip


def _check_probability(path: Path, output: object) -> None:
    if not isinstance(output, torch.Tensor) or output.numel() != 1:
        found = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(f"{path}: the model returns {found}; expected one probability [1, 1]")
    if not output.dtype.is_floating_point:
        raise ModelError(f"{path}: the model returns {output.dtype}; expected a float tensor")


def _output_parts(result: object) -> list[tuple[str, int | str | None, torch.Tensor]]:
    """The forward's outputs as (name, key, tensor): a tensor is "output_0" (key None), a
    tuple's items "output_0", "output_1", ... (key: the index), a dict's items their keys."""
    if isinstance(result, torch.Tensor):
        return [("output_0", None, result)]
    if isinstance(result, tuple | list):
        return [(f"output_{i}", i, t) for i, t in enumerate(result)]
    if isinstance(result, dict):
        return [(str(k), str(k), t) for k, t in result.items()]
    return []


def _width(path: Path, name: str, output: object, window: int) -> int:
    """k of a float output [1, k] (or [1], or a scalar: k = 1)."""
    if not isinstance(output, torch.Tensor):
        found = type(output).__name__
    elif (
        not output.dtype.is_floating_point
        or output.dim() > 2
        or (output.dim() >= 1 and output.shape[0] != 1)
    ):
        found = f"{output.dtype} of shape {list(output.shape)}"
    else:
        return int(output.shape[-1]) if output.dim() == 2 else 1
    why = f" (its input is a window: model.window is {window})" if window else ""
    raise ModelError(f"{path}: output '{name}' is {found}; expected a float tensor [1, k]{why}")


def _select(
    path: Path, result: object, names: Sequence[str], window: int
) -> list[tuple[str, int | str | None, int]]:
    """The outputs `names` picks (all, in order, when empty): (name, key, width)."""
    parts = _output_parts(result)
    if not parts:
        raise ModelError(
            f"{path}: the model returns {type(result).__name__}; expected a float tensor [1, k], "
            "a tuple of them, or a dict of them by output name"
        )
    available = {name: (key, tensor) for name, key, tensor in parts}
    chosen = []
    for name in names or list(available):
        if name not in available:
            hint = did_you_mean(name, available)
            raise ModelError(
                f"{path}: model.outputs names '{name}', but the model has no such output{hint} "
                f"(its outputs: {', '.join(available)})"
            )
        key, tensor = available[name]
        chosen.append((name, key, _width(path, name, tensor, window)))
    return chosen


class TorchRunner:
    """A TorchScript `forward(x)` with x one float input, [1, n_features] or, with `window`,
    the last W feature vectors [1, W, n_features] (then `predict` takes them flat, oldest
    first: what `features.window.WindowedFeatures` computes). It returns a float tensor [1, k],
    a tuple of them or a dict of them by name; `predict` returns the outputs side by side in
    one preallocated float64 vector (`outputs` picks and orders them by name: "output_0", ...
    for a tensor or tuple, the keys for a dict; all, in order, by default). The shipped models
    return one probability [1, 1]."""

    __slots__ = (
        "_flat", "_input", "_module", "_out", "_out_view", "_picks", "_row", "_single", "name",
        "output_names", "path", "window",
    )  # fmt: skip

    stateless: ClassVar[bool] = True  # predict reads its input only (see OnnxRunner)

    def __init__(
        self,
        path: str | Path,
        n_features: int,
        *,
        outputs: Sequence[str] = (),
        window: int = 0,
    ) -> None:
        self.path = Path(path)
        self.name = f"torch:{self.path.name}"
        self.window = window
        shape = (1, window, n_features) if window else (1, n_features)
        buffer = np.zeros(shape, dtype=np.float32)
        self._row = buffer.reshape(-1, n_features)[-1]  # where predict() casts into
        self._flat = buffer.reshape(-1)  # a window's W * n values, oldest first
        self._input = torch.from_numpy(buffer)  # shares memory with self._row / self._flat
        self._module, output = load_frozen(self.path, self._input, window=window)
        chosen = _select(self.path, output, outputs, window)
        self.output_names = tuple(name for name, _, _ in chosen)
        self._out = np.zeros(sum(width for _, _, width in chosen), dtype=np.float64)
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only
        # one unselected tensor of one value: the hot case (the shipped models), one .item()
        self._single = len(chosen) == 1 and chosen[0][1] is None and len(self._out) == 1
        target = torch.from_numpy(self._out)  # copy_ casts float32 -> float64 in place
        offsets = np.cumsum([0] + [width for _, _, width in chosen]).tolist()
        self._picks = tuple(
            (target[start:end], key)
            for start, end, (_, key, _) in zip(offsets[:-1], offsets[1:], chosen, strict=True)
        )

    @property
    def n_outputs(self) -> int:
        """The length of the output vector (the selected outputs' widths, summed)."""
        return len(self._out)

    def warm_up(self) -> None:
        # The first calls of a frozen graph run the profiling executor; keep them off event 0.
        self._flat.fill(0.0)
        with torch.inference_mode():
            for _ in range(WARM_UP_CALLS):
                self._module(self._input)

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        if self.window:
            self._flat[...] = features  # the last W vectors, flat and oldest first
        else:
            self._row[...] = features  # the cast to float32, in place; faster than np.copyto
        with torch.inference_mode():
            result = self._module(self._input)
            if self._single:
                self._out_view[0] = result.item()
            else:
                for target, key in self._picks:
                    source = result if key is None else result[key]
                    target.copy_(source.reshape(-1))
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

    stateless: ClassVar[bool] = False  # predict moves the hidden state: never called idle

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
