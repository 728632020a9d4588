"""ONNX Runtime model runner: one thread, deterministic, IO-bound buffers allocated once.

The session's input and output are bound to numpy arrays through OrtValues that share their
memory, so a prediction is: cast the float64 features into the bound float32 input (the model's
input dtype; one preallocated array), `run_with_iobinding`, read the bound output. Nothing is
allocated per call, on either side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from simulator.errors import ModelError, did_you_mean

WARM_UP_CALLS: Final = 16

# ONNX Runtime raises pybind exceptions with no common base below Exception.
_LOAD_ERRORS: Final = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoModel,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def session_options() -> ort.SessionOptions:
    """Single-threaded, sequential, fully optimised: the deterministic settings of the project."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.use_deterministic_compute = True
    return options


def _raw_run(session: ort.InferenceSession, binding: ort.IOBinding) -> Callable[[], None]:
    """The binding's run, skipping the Python wrapper's per-call WebGPU capture checks.

    That wrapper costs ~2 µs of a ~10 µs call on the CPU. It relies on onnxruntime's private
    `_sess`/`_iobinding` attributes, so it falls back to the public call when they are gone.
    """
    raw_session = getattr(session, "_sess", None)
    raw_binding = getattr(binding, "_iobinding", None)
    if (
        raw_session is None
        or raw_binding is None
        or session.get_providers() != ["CPUExecutionProvider"]
    ):
        return lambda: session.run_with_iobinding(binding)
    # A RunOptions made once: passing None makes ONNX Runtime build a default one per call
    # (~1.5 µs here); its log level is the session's, so nothing per run is logged.
    run_options = ort.RunOptions()
    run_options.log_severity_level = 3
    return functools.partial(raw_session.run_with_iobinding, raw_binding, run_options)


def load_session(path: Path) -> ort.InferenceSession:
    """An InferenceSession on the CPU, or ModelError naming the file."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        return ort.InferenceSession(
            str(path), session_options(), providers=["CPUExecutionProvider"]
        )
    except _LOAD_ERRORS as e:
        raise ModelError(f"{path}: ONNX Runtime cannot load the model: {e}") from e


def _check_input(path: Path, arg: ort.NodeArg, n_features: int, window: int) -> int:
    """The input must be float32 [1, n] or a window [1, W, n]; returns W (0: no window). A
    symbolic batch axis is allowed; W comes from the model or, when symbolic, `window`."""
    found = list(arg.shape)
    batch_ok = bool(found) and (found[0] == 1 or not isinstance(found[0], int))
    rank_ok = len(found) in (2, 3) and found[-1] == n_features
    if arg.type != "tensor(float)" or not batch_ok or not rank_ok:
        raise ModelError(
            f"{path}: input '{arg.name}' is {arg.type} of shape {found}; expected tensor(float) "
            f"of shape [1, {n_features}] (or a window [1, W, {n_features}]): features.names "
            f"lists {n_features} features"
        )
    if len(found) == 2:
        return 0
    steps = found[1]
    if isinstance(steps, int) and window and steps != window:
        raise ModelError(f"{path}: input '{arg.name}' takes a window of {steps}; model.window is "
                         f"{window}")  # fmt: skip
    if not isinstance(steps, int) and not window:
        raise ModelError(f"{path}: input '{arg.name}' has a symbolic window axis ({steps}); "
                         "set model.window")  # fmt: skip
    return steps if isinstance(steps, int) else window


def _select_outputs(
    path: Path, session: ort.InferenceSession, names: Sequence[str]
) -> list[tuple[ort.NodeArg, int]]:
    """The outputs named (all, in graph order, when none are), each float32 [1, k] or [1]:
    (output, k)."""
    available = {arg.name: arg for arg in session.get_outputs()}
    chosen = []
    for name in names or list(available):
        if name not in available:
            hint = did_you_mean(name, available)
            raise ModelError(
                f"{path}: the model has no output '{name}'{hint} (its outputs: "
                f"{', '.join(available)})"
            )
        arg = available[name]
        shape = list(arg.shape)
        width = shape[1] if len(shape) == 2 else 1
        batch_ok = bool(shape) and (shape[0] == 1 or not isinstance(shape[0], int))
        if (
            arg.type != "tensor(float)"
            or not batch_ok
            or len(shape) > 2
            or not isinstance(width, int)
        ):
            raise ModelError(f"{path}: output '{name}' is {arg.type} of shape {shape}; "
                             "expected tensor(float) of shape [1, k]")  # fmt: skip
        chosen.append((arg, width))
    return chosen


class OnnxRunner:
    """An ONNX model with one float input, [1, n_features] or a window [1, W, n_features] of
    the last W feature vectors (then `predict` takes them flat, oldest first: what
    `features.window.WindowedFeatures` computes), and any number of float outputs [1, k]:
    `predict` returns them side by side in one preallocated float64 vector (`outputs` picks and
    orders them by name; all, in graph order, by default)."""

    __slots__ = (
        "_binding",
        "_copies",
        "_flat",
        "_input",
        "_input_value",
        "_out",
        "_out_view",
        "_output",
        "_output_values",
        "_result",
        "_row",
        "_run",
        "_session",
        "_single",
        "name",
        "output_names",
        "path",
        "window",
    )

    def __init__(
        self,
        path: str | Path,
        n_features: int,
        *,
        outputs: Sequence[str] = (),
        window: int = 0,
    ) -> None:
        self.path = Path(path)
        self.name = f"onnx:{self.path.name}"
        self._session = load_session(self.path)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            found = self._session.get_outputs()
            raise ModelError(
                f"{self.path}: the model has {len(inputs)} inputs and {len(found)} outputs "
                f"({[a.name for a in inputs]} -> {[a.name for a in found]}); expected one "
                f"float input [1, {n_features}] or a window [1, W, {n_features}]"
            )
        self.window = _check_input(self.path, inputs[0], n_features, window)
        chosen = _select_outputs(self.path, self._session, outputs)
        self.output_names = tuple(arg.name for arg, _ in chosen)
        shape = (1, self.window, n_features) if self.window else (1, n_features)
        self._input = np.zeros(shape, dtype=np.float32)
        self._row = self._input.reshape(-1, n_features)[-1]  # where predict() casts into
        self._flat = self._input.reshape(-1)  # a window's W * n values, oldest first
        # OrtValues over CPU numpy arrays share their memory: the binding reads and writes
        # the arrays in place; they are kept referenced for the binding's life.
        self._input_value = ort.OrtValue.ortvalue_from_numpy(self._input)
        self._binding = self._session.io_binding()
        self._binding.bind_ortvalue_input(inputs[0].name, self._input_value)
        arrays = [np.zeros((1, width), dtype=np.float32) for _, width in chosen]
        self._output_values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
        for (arg, _), value in zip(chosen, self._output_values, strict=True):
            self._binding.bind_ortvalue_output(arg.name, value)
        self._output = arrays[0]
        self._run = _raw_run(self._session, self._binding)
        self._result = self._output.data.cast("B").cast("f")  # a flat float view of output 0
        self._out = np.zeros(sum(width for _, width in chosen), dtype=np.float64)
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only
        self._single = len(self._out) == 1
        offsets = np.cumsum([0] + [width for _, width in chosen])
        self._copies = tuple(
            (self._out[int(start) : int(end)], a[0]) for start, end, a in
            zip(offsets[:-1], offsets[1:], arrays, strict=True)
        )  # fmt: skip

    @property
    def n_outputs(self) -> int:
        """The length of the output vector (the selected outputs' widths, summed)."""
        return len(self._out)

    @property
    def session(self) -> ort.InferenceSession:
        return self._session

    @property
    def binding(self) -> ort.IOBinding:
        """The bound IO (for benchmarks comparing against a bare `run_with_iobinding`)."""
        return self._binding

    def warm_up(self) -> None:
        # The first runs allocate ONNX Runtime's arena and pick kernels; keep that off event 0.
        self._row.fill(0.0)
        for _ in range(WARM_UP_CALLS):
            self._session.run_with_iobinding(self._binding)

    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        if self.window:
            return self._predict_window(features)
        # The cast to the model's float32 input, in place into the bound array (~0.1 µs for
        # 16 features; faster than np.copyto for short vectors).
        self._row[...] = features
        self._run()
        if self._single:  # one probability: the hot case, one item copy
            self._out_view[0] = self._result[0]
        else:
            for target, source in self._copies:
                target[...] = source
        return self._out

    def _predict_window(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """`features`: the last W vectors, flat and oldest first (features.window)."""
        self._flat[...] = features
        self._run()
        for target, source in self._copies:
            target[...] = source
        return self._out

    def reset(self) -> None:
        """Stateless: nothing to clear."""
