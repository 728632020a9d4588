"""Write trained networks as TorchScript and ONNX files for the runners.

The ONNX graphs are built node by node from the weights with `onnx.helper` rather than by
`torch.onnx.export`: the TorchScript-based exporter is deprecated and the dynamo one needs
onnxscript; a hand-built graph of a few standard ops is byte-for-byte reproducible and needs
neither. Tests check each ONNX file against the TorchScript file of the same model.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from simulator.errors import ModelError
from simulator.models.networks import GruModel, MlpModel
from simulator.models.torch_runner import torchscript_warnings_silenced

OPSET: Final = 17
IR_VERSION: Final = 9  # readable by every onnxruntime this project supports (>= 1.18)
INPUT: Final = "features"
OUTPUT: Final = "p"
HIDDEN_INPUT: Final = "h"
HIDDEN_OUTPUT: Final = "h_new"


def export_mlp(
    model: MlpModel, n_features: int, onnx_path: str | Path, torchscript_path: str | Path
) -> None:
    """ONNX (input "features" [1, n_features] float32 -> output "p" [1, 1]) and TorchScript."""
    _check_width(model.n_features, n_features)
    serving = model.serving()
    _save_torchscript(serving, torchscript_path)
    graph = _GraphBuilder()
    # The standardisation is folded into the first layer: each ONNX node costs ~1 µs of
    # dispatch at batch size 1, more than its arithmetic (agrees with TorchScript to ~1e-6).
    weights, biases = list(serving.weights), list(serving.biases)
    weights[0], biases[0] = _fold_standardisation(
        weights[0], biases[0], serving.mean, serving.inv_std
    )
    x = INPUT
    last = len(weights) - 1
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        x = graph.gemm(x, weight, bias, f"dense{i}")
        if i < last:
            x = graph.node("Relu", [x], f"relu{i}")
    graph.node("Sigmoid", [x], OUTPUT)
    inputs = [_float_input(INPUT, n_features)]
    outputs = [_float_input(OUTPUT, 1)]
    _save_onnx(graph.model("ticktape_mlp", inputs, outputs), onnx_path)


def export_gru(
    model: GruModel,
    n_features: int,
    torchscript_path: str | Path,
    onnx_path: str | Path | None = None,
) -> None:
    """The one-step cell `(features [1, n], h [1, hidden]) -> (p [1, 1], h_new [1, hidden])`
    as TorchScript for `StatefulTorchRunner`, and as ONNX when a path is given."""
    _check_width(model.n_features, n_features)
    cell = model.serving()
    _save_torchscript(cell, torchscript_path)
    if onnx_path is None:
        return
    graph = _GraphBuilder()
    x = graph.standardize(INPUT, cell.mean, cell.inv_std)
    size = model.hidden_size
    sizes = graph.constant("gate_sizes", np.array([size, size, size], dtype=np.int64))
    gi = graph.gemm(x, cell.weight_ih, cell.bias_ih, "gates_input")
    gh = graph.gemm(HIDDEN_INPUT, cell.weight_hh, cell.bias_hh, "gates_hidden")
    # torch's gate order is reset, update, new; n uses r * (W_hn h + b_hn) ("linear before reset")
    i_r, i_z, i_n = graph.split(gi, sizes, "gi")
    h_r, h_z, h_n = graph.split(gh, sizes, "gh")
    r = graph.node("Sigmoid", [graph.node("Add", [i_r, h_r], "r_sum")], "r")
    z = graph.node("Sigmoid", [graph.node("Add", [i_z, h_z], "z_sum")], "z")
    n_in = graph.node("Add", [i_n, graph.node("Mul", [r, h_n], "r_hn")], "n_sum")
    n = graph.node("Tanh", [n_in], "n")
    # h_new = (1 - z) * n + z * h, written as n + z * (h - n)
    dh = graph.node("Mul", [z, graph.node("Sub", [HIDDEN_INPUT, n], "h_minus_n")], "z_dh")
    graph.node("Add", [n, dh], HIDDEN_OUTPUT)
    logit = graph.gemm(HIDDEN_OUTPUT, cell.head_weight, cell.head_bias, "head")
    graph.node("Sigmoid", [logit], OUTPUT)
    inputs = [_float_input(INPUT, n_features), _float_input(HIDDEN_INPUT, size)]
    outputs = [_float_input(OUTPUT, 1), _float_input(HIDDEN_OUTPUT, size)]
    _save_onnx(graph.model("ticktape_gru_cell", inputs, outputs), onnx_path)


def _check_width(model_width: int, n_features: int) -> None:
    if model_width != n_features:
        raise ModelError(
            f"export: the model takes {model_width} features; n_features is {n_features}"
        )


def _save_torchscript(model: torch.nn.Module, path: str | Path) -> None:
    # Scripted, not traced: each trace makes a new TorchScript type, renamed (___torch_mangle_N)
    # when one was traced before in the process, so files would depend on export history.
    with torchscript_warnings_silenced():
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(model.eval()), buffer)
    Path(path).write_bytes(_without_debug_info(buffer.getvalue()))


def _without_debug_info(archive: bytes) -> bytes:
    """Drop the optional `*.debug_pkl` entries: they embed the absolute path of the source
    file that defined the model, which would tie the file to the machine that exported it."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as zin,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zout,
    ):
        for info in zin.infolist():
            if not info.filename.endswith(".debug_pkl"):
                zout.writestr(info, zin.read(info.filename))
    return out.getvalue()


def _fold_standardisation(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """W ((x - m) * s) + b == (W * s) x + (b - (W * s) m), computed in float64."""
    w = weight.detach().double() * inv_std.detach().double().reshape(1, -1)
    b = bias.detach().double() - w @ mean.detach().double().reshape(-1)
    return w.float(), b.float()


def _float_input(name: str, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, width])


def _save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    onnx.checker.check_model(model, full_check=True)
    Path(path).write_bytes(model.SerializeToString(deterministic=True))


class _GraphBuilder:
    """Collects nodes and float32 initialisers; every value is named after the node making it."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: npt.NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, tensor: torch.Tensor) -> str:
        return self.constant(name, tensor.detach().cpu().numpy().astype(np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attrs: int) -> str:
        node = helper.make_node(op, inputs, [output], name=output)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return output

    def standardize(self, x: str, mean: torch.Tensor, inv_std: torch.Tensor) -> str:
        centred = self.node("Sub", [x, self.weight("mean", mean)], "centred")
        return self.node("Mul", [centred, self.weight("inv_std", inv_std)], "standardized")

    def gemm(self, x: str, weight: torch.Tensor, bias: torch.Tensor, name: str) -> str:
        w = self.weight(f"{name}.weight", weight)
        b = self.weight(f"{name}.bias", bias)
        return self.node("Gemm", [x, w, b], name, transB=1)  # x @ W^T + b, as F.linear

    def split(self, x: str, sizes: str, name: str) -> tuple[str, str, str]:
        outputs = [f"{name}_r", f"{name}_z", f"{name}_n"]
        self.nodes.append(helper.make_node("Split", [x, sizes], outputs, name=name, axis=1))
        return outputs[0], outputs[1], outputs[2]

    def model(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ticktape"
        )
        model.ir_version = IR_VERSION
        return model
