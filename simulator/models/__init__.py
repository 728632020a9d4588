"""Inference stage: model runners, the circuit breaker, and training/export of their models.

Names are imported on first use (PEP 562): a replay that runs a rule or an ONNX model never
pays for importing torch (~1 s and ~300 MB).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.models.breaker import (
        BreakerCounts,
        BreakerState,
        BreakerSwitch,
        CircuitBreaker,
        TimeSource,
    )
    from simulator.models.export import export_gru, export_mlp
    from simulator.models.networks import GruCellServing, GruModel, MlpModel, MlpServing
    from simulator.models.onnx_runner import OnnxRunner
    from simulator.models.precomputed import PrecomputedRunner
    from simulator.models.rule import RuleRunner
    from simulator.models.torch_runner import StatefulTorchRunner, TorchRunner
    from simulator.models.train import SplitMetrics, TrainResult, roc_auc, train_gru, train_mlp

_HOME = {
    "breaker": ("BreakerCounts", "BreakerState", "BreakerSwitch", "CircuitBreaker", "TimeSource"),
    "export": ("export_gru", "export_mlp"),
    "networks": ("GruCellServing", "GruModel", "MlpModel", "MlpServing"),
    "onnx_runner": ("OnnxRunner",),
    "precomputed": ("PrecomputedRunner",),
    "rule": ("RuleRunner",),
    "torch_runner": ("StatefulTorchRunner", "TorchRunner"),
    "train": ("SplitMetrics", "TrainResult", "roc_auc", "train_gru", "train_mlp"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "BreakerCounts",
    "BreakerState",
    "BreakerSwitch",
    "CircuitBreaker",
    "GruCellServing",
    "GruModel",
    "MlpModel",
    "MlpServing",
    "OnnxRunner",
    "PrecomputedRunner",
    "RuleRunner",
    "SplitMetrics",
    "StatefulTorchRunner",
    "TimeSource",
    "TorchRunner",
    "TrainResult",
    "export_gru",
    "export_mlp",
    "roc_auc",
    "train_gru",
    "train_mlp",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator.models' has no attribute '{name}'")
    return getattr(importlib.import_module(f"simulator.models.{module}"), name)
