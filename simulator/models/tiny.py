"""Small ONNX models written from their weights, without torch: the logistic model that
`ticktape new strategy` and the examples ship.

`logistic_onnx(weights, bias, outputs)` is one Gemm and a Sigmoid per output: input
"features" [1, n] float32 -> "p_up" = sigmoid(w.x + b) [1, 1], and when asked
"p_down" = sigmoid(-(w.x + b)) = 1 - p_up. Deterministic bytes for the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from simulator.errors import ConfigError

OPSET = 17
OUTPUTS = ("p_up", "p_down")


def logistic_onnx(
    weights: Sequence[float], bias: float, outputs: Sequence[str] = ("p_up",)
) -> bytes:
    """The serialised model (outputs among "p_up", "p_down", in the order given)."""
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown or not outputs:
        raise ConfigError(f"logistic_onnx: outputs must be among {OUTPUTS}; found {outputs}")
    n = len(weights)
    w = numpy_helper.from_array(np.asarray([weights], dtype=np.float32), "weight")
    b = numpy_helper.from_array(np.asarray([bias], dtype=np.float32), "bias")
    nodes = [helper.make_node("Gemm", ["features", "weight", "bias"], ["logit"], transB=1)]
    if "p_up" in outputs:
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["p_up"]))
    if "p_down" in outputs:
        nodes.append(helper.make_node("Neg", ["logit"], ["neg_logit"]))
        nodes.append(helper.make_node("Sigmoid", ["neg_logit"], ["p_down"]))
    graph = helper.make_graph(
        nodes,
        "ticktape_logistic",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1]) for name in outputs],
        initializer=[w, b],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ticktape"
    )
    model.ir_version = 8  # readable by every onnxruntime the project supports
    onnx.checker.check_model(model)
    serialised: bytes = model.SerializeToString()
    return serialised


def write_logistic(
    path: Path, weights: Sequence[float], bias: float, outputs: Sequence[str] = ("p_up",)
) -> Path:
    path.write_bytes(logistic_onnx(weights, bias, outputs))
    return path
