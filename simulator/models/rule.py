"""A rule as a runner: order-book imbalance mapped to a probability. The default fallback."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.errors import ModelError


class RuleRunner:
    """p = (1 + clip(features[feature_index] * scale, -1, 1)) / 2.

    With the L1 order-book imbalance (in [-1, 1]) as the feature and scale 1, p runs from 0
    (all size on the ask) to 1 (all size on the bid). A NaN feature gives 0.5: no view.
    """

    __slots__ = ("_array", "_out", "_out_view", "_view", "feature_index", "name", "scale")

    def __init__(self, feature_index: int, scale: float = 1.0, *, width: int = 1) -> None:
        """`width`: the length of the output vector (a fallback answers with its primary's
        width: p first, NaN after it)."""
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
        self._out = np.full(max(width, 1), np.nan)  # the output vector: [p, NaN...]
        self._out_view: Any = self._out.data  # item stores ~3x faster than numpy

    def warm_up(self) -> None:
        """Nothing to warm."""

    def predict(
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
        self._out_view[0] = p
        return self._out

    def reset(self) -> None:
        """Stateless."""
