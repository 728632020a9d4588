# Types of the compiled model-runner step (_step.c); see onnx_runner.py and rule.py.
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

class OnnxStep:
    def __init__(
        self,
        input: npt.NDArray[np.float32],
        run: Callable[[], object],
        output: npt.NDArray[np.float32],
        out: npt.NDArray[np.float64],
    ) -> None: ...
    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]: ...

class RuleStep:
    def __init__(
        self, feature_index: int, scale: float, out: npt.NDArray[np.float64], signal: bool
    ) -> None: ...
    def predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]: ...
