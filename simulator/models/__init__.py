"""Inference stage: model runners, the circuit breaker, and training/export of their models."""

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
