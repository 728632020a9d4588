"""The logistic ONNX model written from weights: outputs, values and stable bytes."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from simulator.errors import ConfigError
from simulator.models.tiny import logistic_onnx


def test_logistic_model_gives_p_up_and_p_down_in_the_order_asked():
    model = logistic_onnx([0.5, -1.0], 0.25, ("p_down", "p_up"))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["p_down", "p_up"]
    assert session.get_inputs()[0].shape == [1, 2]
    p_down, p_up = session.run(None, {"features": np.array([[1.0, 2.0]], dtype=np.float32)})
    expected = 1.0 / (1.0 + math.exp(-(0.5 - 2.0 + 0.25)))
    assert p_up[0, 0] == pytest.approx(expected, rel=1e-6)
    assert p_up[0, 0] + p_down[0, 0] == pytest.approx(1.0, rel=1e-6)


def test_same_weights_give_the_same_bytes_and_unknown_outputs_are_refused():
    assert logistic_onnx([0.1, 0.2], 0.0) == logistic_onnx([0.1, 0.2], 0.0)
    with pytest.raises(ConfigError, match="outputs must be among"):
        logistic_onnx([0.1], 0.0, ("p_flat",))
