"""The networks `train` fits and `export` writes, each standardising its raw input first.

Standardisation (mean/std of the training split) is a layer of the model, so an exported
model takes raw features and no scaler has to travel beside it.

No `from __future__ import annotations` here: TorchScript reads the class-level buffer
annotations and cannot resolve them as strings.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F


class Standardize(nn.Module):
    """(x - mean) / std, with the statistics stored as buffers (exported, never trained)."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, mean: npt.NDArray[np.float32], std: npt.NDArray[np.float32]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.tensor(1.0 / std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


class MlpModel(nn.Module):
    """Standardise -> (Linear -> ReLU) per hidden width -> Linear -> sigmoid: P(up)."""

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int],
        mean: npt.NDArray[np.float32],
        std: npt.NDArray[np.float32],
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.standardize = Standardize(mean, std)
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardize(x))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.body if isinstance(m, nn.Linear)]

    def serving(self) -> "MlpServing":
        return MlpServing(self)


class GruModel(nn.Module):
    """Standardise -> GRU -> Linear -> sigmoid. Trained over sequences, served one step at a
    time as a `GruCellServing` with the same weights."""

    def __init__(
        self,
        n_features: int,
        hidden_size: int,
        mean: npt.NDArray[np.float32],
        std: npt.NDArray[np.float32],
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden_size = hidden_size
        self.standardize = Standardize(mean, std)
        self.gru = nn.GRU(n_features, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def sequence_logits(
        self, x: torch.Tensor, h0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, time, features], h0 [1, batch, hidden] -> logits [batch, time], h_T."""
        out, h_last = self.gru(self.standardize(x), h0)
        return self.head(out).squeeze(-1), h_last

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x [batch, features], h [batch, hidden] -> (p [batch, 1], h_new)."""
        logits, h_new = self.sequence_logits(x.unsqueeze(1), h.unsqueeze(0))
        return torch.sigmoid(logits), h_new.squeeze(0)

    def serving(self) -> "GruCellServing":
        return GruCellServing(self)


# The serving networks below hold plain tensors instead of nn.Linear / nn.GRUCell: those carry
# shape constants that TorchScript writes in set order (varying with PYTHONHASHSEED) and into
# per-shape types (renamed by export history), so exported files would not be byte-reproducible.
# These classes have one TorchScript type whatever the shapes, and freezing unrolls their loops
# into the same graph nn.Linear would give.


class MlpServing(nn.Module):
    """What `export_mlp` writes: `forward(x [1, n]) -> p [1, 1]`, MlpModel's weights copied."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, model: MlpModel) -> None:
        super().__init__()
        self.register_buffer("mean", model.standardize.mean.detach().clone())
        self.register_buffer("inv_std", model.standardize.inv_std.detach().clone())
        linears = model.linears()
        self.weights = [layer.weight.detach().clone() for layer in linears]
        self.biases = [layer.bias.detach().clone() for layer in linears]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.inv_std
        last = len(self.weights) - 1
        for i in range(last + 1):
            x = F.linear(x, self.weights[i], self.biases[i])
            if i < last:
                x = torch.relu(x)
        return torch.sigmoid(x)


class GruCellServing(nn.Module):
    """What `export_gru` writes: `forward(x [1, n], h [1, hidden]) -> (p [1, 1], h_new)`.

    One GRU step with GruModel's weights: torch's gru_cell uses nn.GRU's layout (gates r, z, n).
    """

    mean: torch.Tensor
    inv_std: torch.Tensor
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: torch.Tensor
    bias_hh: torch.Tensor
    head_weight: torch.Tensor
    head_bias: torch.Tensor

    def __init__(self, model: GruModel) -> None:
        super().__init__()
        gru = dict(model.gru.named_parameters())
        tensors = {
            "mean": model.standardize.mean,
            "inv_std": model.standardize.inv_std,
            "weight_ih": gru["weight_ih_l0"],
            "weight_hh": gru["weight_hh_l0"],
            "bias_ih": gru["bias_ih_l0"],
            "bias_hh": gru["bias_hh_l0"],
            "head_weight": model.head.weight,
            "head_bias": model.head.bias,
        }
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.detach().clone())

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - self.mean) * self.inv_std
        h_new = torch.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return torch.sigmoid(F.linear(h_new, self.head_weight, self.head_bias)), h_new
