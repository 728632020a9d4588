"""ONNX Runtime model runner: one thread, deterministic, IO-bound buffers allocated once.

The session's input and output are bound to numpy arrays through OrtValues that share their
memory, so a prediction is: cast the float64 features into the bound float32 input (the model's
input dtype; one preallocated array), `run_with_iobinding`, cast the bound float32 outputs into
the float64 output vector. Nothing is allocated per call, on either side. The compiled
`_step.OnnxStep` does those three steps in one C call when it is built (`predict` is then its
method: no Python frame per event); `_predict_python` is its twin, same bits.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from simulator.errors import ModelError, did_you_mean

try:
    from simulator.models._step import OnnxStep
except ImportError:  # not built: _predict_python runs (same results, slower)
    OnnxStep = None  # type: ignore[assignment,misc]

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
        "_flat",
        "_input",
        "_input_value",
        "_out",
        "_out_view",
        "_output_values",
        "_outputs",
        "_result",
        "_run",
        "_session",
        "_single",
        "name",
        "output_names",
        "path",
        "predict",
        "window",
    )

    stateless: ClassVar[bool] = True
    """`predict` depends on its input only: a live run may call it on a scratch copy while
    idle to keep its code and data warm (live/session.py `SymbolRun.dry_pass`)."""

    predict: Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.float64]]
    """The output vector for a feature vector (the last W, flat, for a window model): the
    compiled step when built, else `_predict_python` (same bits)."""

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
        self._flat = self._input.reshape(-1)  # what predict() casts into (a window: W * n)
        # OrtValues over CPU numpy arrays share their memory: the binding reads and writes
        # the arrays in place; they are kept referenced for the binding's life.
        self._input_value = ort.OrtValue.ortvalue_from_numpy(self._input)
        self._binding = self._session.io_binding()
        self._binding.bind_ortvalue_input(inputs[0].name, self._input_value)
        # every selected output is bound to its slice of one float32 array, in order, so the
        # copy into the float64 output vector is one cast of the whole array
        widths = [width for _, width in chosen]
        self._outputs = np.zeros(sum(widths), dtype=np.float32)
        offsets = np.cumsum([0, *widths])
        self._output_values = [
            ort.OrtValue.ortvalue_from_numpy(self._outputs[start:end].reshape(1, -1))
            for start, end in itertools.pairwise(offsets)
        ]
        for (arg, _), value in zip(chosen, self._output_values, strict=True):
            self._binding.bind_ortvalue_output(arg.name, value)
        self._run = _raw_run(self._session, self._binding)
        self._result = self._outputs.data  # the outputs as a flat float memoryview
        self._out = np.zeros(len(self._outputs), dtype=np.float64)
        self._out_view: Any = self._out.data  # typeshed: memoryview items are int only
        self._single = len(self._out) == 1
        if OnnxStep is None:
            self.predict = self._predict_python
        else:
            self.predict = OnnxStep(self._flat, self._run, self._outputs, self._out).predict

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
        self._flat.fill(0.0)
        for _ in range(WARM_UP_CALLS):
            self._session.run_with_iobinding(self._binding)

    def _predict_python(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        """OnnxStep.predict's twin: `features` (a window's last W vectors flat, oldest first:
        features.window) cast into the float32 input, the model run, its outputs cast back."""
        self._flat[...] = features  # the cast to the model's float32 input, in place
        self._run()
        if self._single:  # one probability: the usual case, one item copy
            self._out_view[0] = self._result[0]
        else:
            self._out[...] = self._outputs  # float32 -> float64: exact
        return self._out

    def reset(self) -> None:
        """Stateless: nothing to clear."""
