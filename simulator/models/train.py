"""Deterministic training of the strategies' models: same data + same seed -> same weights.

Determinism: torch is seeded inside a forked RNG (the caller's random state is untouched),
runs one thread with deterministic algorithms, and minibatches are shuffled by a seeded
generator. The validation split is the chronologically last `val_fraction` of the rows, never
shuffled into training (no look-ahead). Standardisation statistics come from the training
split only and are a layer of the returned model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F

from simulator.errors import ConfigError, DataError
from simulator.models.networks import GruModel, MlpModel

ModelT = TypeVar("ModelT", MlpModel, GruModel)
FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[Any]  # 0/1 labels, any numeric dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitMetrics:
    """Scores of the model on one split."""

    n: int
    base_rate: float  # share of label 1: always answering the majority scores max(b, 1 - b)
    loss: float  # mean binary cross-entropy
    accuracy: float  # p > 0.5 taken as "up"
    auc: float  # ROC AUC; NaN when the split holds one class only


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult(Generic[ModelT]):
    model: ModelT
    train: SplitMetrics
    val: SplitMetrics
    seed: int


@dataclass(frozen=True, slots=True)
class _Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: FloatArray
    std: FloatArray


def torch_cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here (e.g. AVX2, AVX512): another
    one may round differently, so the same seed can give other weights on another host."""
    return str(torch.backends.cpu.get_cpu_capability())


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, single-threaded, deterministic torch; the global settings are restored after."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def train_mlp(
    x: FloatArray,
    y: LabelArray,
    /,
    *,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.2,
    batch_size: int = 256,
    weight_decay: float = 0.0,
) -> TrainResult[MlpModel]:
    """Fit an MLP classifier of P(up) with Adam on binary cross-entropy."""
    _check_hyper(epochs=epochs, lr=lr, batch_size=batch_size)
    data = _split(x, y, val_fraction)
    with deterministic(seed):
        model = MlpModel(x.shape[1], hidden, data.mean, data.std)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            shuffled = torch.randperm(len(data.y_train), generator=order)
            for batch in shuffled.split(batch_size):  # type: ignore[no-untyped-call]
                loss = F.binary_cross_entropy_with_logits(
                    model.logits(data.x_train[batch]).squeeze(1), data.y_train[batch]
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        model.eval()
        with torch.no_grad():
            train = _metrics(model.logits(data.x_train).squeeze(1), data.y_train)
            val = _metrics(model.logits(data.x_val).squeeze(1), data.y_val)
    return TrainResult(model=model, train=train, val=val, seed=seed)


def train_gru(
    x: FloatArray,
    y: LabelArray,
    /,
    *,
    hidden_size: int = 32,
    seq_len: int = 32,
    streams: int = 8,
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> TrainResult[GruModel]:
    """Fit a GRU the way the stateful runner serves it: hidden state carried along the series.

    The training split is cut into `streams` contiguous segments run side by side (a batch),
    each from a zero state, trained by truncated back-propagation over `seq_len` steps with the
    state carried (detached) from one chunk to the next. Metrics run each split as one series
    from a zero state, as a session starts.
    """
    _check_hyper(epochs=epochs, lr=lr, batch_size=min(streams, seq_len))
    data = _split(x, y, val_fraction)
    steps = len(data.y_train) // streams
    if steps < 1:
        raise ConfigError(f"train_gru: {len(data.y_train)} training rows for {streams} streams")
    x_streams = data.x_train[: steps * streams].reshape(streams, steps, -1)
    y_streams = data.y_train[: steps * streams].reshape(streams, steps)
    with deterministic(seed):
        model = GruModel(x.shape[1], hidden_size, data.mean, data.std)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            _gru_epoch(model, optimizer, x_streams, y_streams, seq_len)
        model.eval()
        with torch.no_grad():
            train = _metrics(_series_logits(model, data.x_train), data.y_train)
            val = _metrics(_series_logits(model, data.x_val), data.y_val)
    return TrainResult(model=model, train=train, val=val, seed=seed)


def _gru_epoch(
    model: GruModel,
    optimizer: torch.optim.Optimizer,
    x_streams: torch.Tensor,
    y_streams: torch.Tensor,
    seq_len: int,
) -> None:
    """One pass of truncated back-propagation through time over [streams, steps] series."""
    h = torch.zeros(1, x_streams.shape[0], model.hidden_size)
    for start in range(0, x_streams.shape[1], seq_len):
        chunk = slice(start, start + seq_len)
        logits, h = model.sequence_logits(x_streams[:, chunk], h.detach())
        loss = F.binary_cross_entropy_with_logits(logits, y_streams[:, chunk])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def _series_logits(model: GruModel, x: torch.Tensor) -> torch.Tensor:
    logits, _ = model.sequence_logits(x.unsqueeze(0), torch.zeros(1, 1, model.hidden_size))
    return logits.squeeze(0)


def roc_auc(labels: npt.NDArray[Any], scores: npt.NDArray[Any]) -> float:
    """ROC AUC as the Mann-Whitney statistic, tied scores sharing their average rank."""
    labels = np.asarray(labels, dtype=np.float64)
    positives = float(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    average_rank = last_rank - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse] @ labels)
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _metrics(logits: torch.Tensor, labels: torch.Tensor) -> SplitMetrics:
    loss = F.binary_cross_entropy_with_logits(logits, labels).item()
    y = labels.numpy().astype(np.float64)
    score = logits.numpy().astype(np.float64)  # the logit orders like the probability
    return SplitMetrics(
        n=int(y.size),
        base_rate=float(y.mean()),
        loss=loss,
        accuracy=float(((score > 0.0) == (y > 0.5)).mean()),
        auc=roc_auc(y, score),
    )


def _check_hyper(*, epochs: int, lr: float, batch_size: int) -> None:
    if epochs < 1 or not lr > 0.0 or batch_size < 1:
        raise ConfigError(
            f"training: epochs={epochs}, lr={lr}, batch size={batch_size}; "
            "expected epochs >= 1, lr > 0 and batches (streams, seq_len) of at least 1"
        )


def _split(
    x: FloatArray,
    y: LabelArray,
    val_fraction: float,
) -> _Split:
    """Check the data, split it chronologically and take the statistics of the train part."""
    if x.ndim != 2 or x.dtype != np.float32 or y.shape != (x.shape[0],):
        raise DataError(
            f"training data: X is {x.dtype} {x.shape} and y is {y.shape}; "
            "expected float32 X [n, n_features] and y [n]"
        )
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"training labels: found {np.unique(y)[:5]}...; expected only 0 and 1")
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad_rows.size:
        raise DataError(f"training data: row {bad_rows[0]} has a non-finite feature")
    n_val = round(x.shape[0] * val_fraction)
    if not 0.0 < val_fraction < 1.0 or n_val < 1 or n_val >= x.shape[0]:
        raise ConfigError(
            f"val_fraction is {val_fraction} of {x.shape[0]} rows; "
            "expected a fraction leaving at least one row in each split"
        )
    cut = x.shape[0] - n_val
    mean = x[:cut].mean(axis=0, dtype=np.float64).astype(np.float32)
    std = x[:cut].std(axis=0, dtype=np.float64).astype(np.float32)
    std[std == 0.0] = 1.0  # a constant feature stays centred at zero instead of dividing by 0
    features = torch.from_numpy(np.ascontiguousarray(x))
    labels = torch.from_numpy(y.astype(np.float32))
    return _Split(features[:cut], labels[:cut], features[cut:], labels[cut:], mean, std)
