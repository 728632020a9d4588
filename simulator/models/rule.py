"""A rule as a runner: order-book imbalance mapped to a probability. The default fallback."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from simulator.errors import ModelError

try:
    from simulator.models._step import RuleStep
except ImportError:  # not built: the Python predict below runs (same results, slower)
    RuleStep = None  # type: ignore[assignment,misc]

SIGNAL_OUTPUT: Final = 1
"""Index of the rule's signal in its output vector (output 0 is p)."""


class RuleRunner:
    """Outputs [p, signal]: signal = features[feature_index] * scale (float64, unclipped; NaN
    stays NaN) and p = (1 + clip(signal, -1, 1)) / 2.

    With the L1 order-book imbalance (in [-1, 1]) as the feature and scale 1, p runs from 0
    (all size on the ask) to 1 (all size on the bid). A NaN feature gives 0.5: no view.
    The signal is there for rules on the imbalance itself (the obi_rule policy): p cannot give
    it back exactly (1 + obi rounds away the last bits of obi).
    """

    __slots__ = (
        "_array", "_out", "_out_view", "_view", "feature_index", "name", "predict", "scale",
    )  # fmt: skip

    stateless: ClassVar[bool] = True  # predict reads its input only (see OnnxRunner)

    predict: Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.float64]]
    """The output vector for a feature vector (picked once: [p, signal] or [p, NaN...]; the
    compiled `_step.RuleStep` when built: same arithmetic, no Python frame per event)."""

    def __init__(self, feature_index: int, scale: float = 1.0, *, width: int | None = None) -> None:
        """`width`: as a circuit breaker's fallback, answer with the primary model's output
        width instead: [p, NaN, ...] (its other outputs have no rule counterpart)."""
        if feature_index < 0:
            raise ModelError(f"rule: feature_index is {feature_index}; expected >= 0")
        if not math.isfinite(scale) or scale == 0.0:
            raise ModelError(f"rule: scale is {scale}; expected a finite, non-zero number")
        self.feature_index = feature_index
        self.scale = scale
        self.name = f"rule:feature[{feature_index}]*{scale:g}"
        # a memoryview of the (reused) feature vector reads a Python float ~3x faster than
        # indexing the numpy array; rebuilt only if a different array is passed
        self._array: npt.NDArray[np.float64] | None = None
        self._view: memoryview = memoryview(b"")
        self._out = np.zeros(2, dtype=np.float64)  # the output vector: [p, signal]
        self.predict = self._predict
        if width is not None:
            self._out = np.full(max(width, 1), np.nan)
            self.predict = self._predict_p
        self._out_view: Any = self._out.data  # item stores ~3x faster than numpy
        if RuleStep is not None:
            signal = width is None
            self.predict = RuleStep(feature_index, scale, self._out, signal).predict

    def warm_up(self) -> None:
        """Nothing to warm."""

    def _predict(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        if features is not self._array:
            self._array, self._view = features, features.data
        x = self._view[self.feature_index] * self.scale
        if x != x:  # NaN, without a function call
            p = 0.5
        elif x >= 1.0:
            p = 1.0
        elif x <= -1.0:
            p = 0.0
        else:
            p = (1.0 + x) * 0.5
        out = self._out_view
        out[0] = p
        out[1] = x
        return self._out

    def _predict_p(
        self, features: npt.NDArray[np.float64], event_index: int
    ) -> npt.NDArray[np.float64]:
        """As a fallback: p alone, the primary's other outputs NaN."""
        if features is not self._array:
            self._array, self._view = features, features.data
        x = self._view[self.feature_index] * self.scale
        self._out_view[0] = (
            0.5 if x != x else (1.0 if x >= 1.0 else (0.0 if x <= -1.0 else (1.0 + x) * 0.5))
        )
        return self._out

    def reset(self) -> None:
        """Stateless."""
