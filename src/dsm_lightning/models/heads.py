"""Projection heads."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear or MLP projection of pooled features, L2-normalised (DSM / MoCo v1-v2 head).

    With ``hidden_dim=None`` the head is one linear layer; otherwise ``num_layers`` linear
    layers with (optional BatchNorm1d and) ReLU between them.

    Args:
        input_dim: backbone feature dimension ``D``.
        hidden_dim: width of the hidden layers, or None for a linear head.
        output_dim: embedding dimension (128 in the paper).
        num_layers: number of linear layers when ``hidden_dim`` is set (>= 2).
        batch_norm: BatchNorm1d after each hidden linear layer.
        normalize: L2-normalise the output.

    Raises:
        ValueError: a dimension < 1 or ``num_layers < 2`` with a hidden layer.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int | None = None,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if hidden_dim is not None and (hidden_dim < 1 or num_layers < 2):
            raise ValueError(
                f"an MLP head needs hidden_dim >= 1 and num_layers >= 2, got "
                f"hidden_dim={hidden_dim}, num_layers={num_layers}"
            )
        self.input_dim, self.hidden_dim, self.output_dim = input_dim, hidden_dim, output_dim
        self.normalize = normalize
        if hidden_dim is None:
            self.layers = nn.Sequential(nn.Linear(input_dim, output_dim))
        else:
            layers: list[nn.Module] = []
            dims = [input_dim] + [hidden_dim] * (num_layers - 1)
            for d_in, d_out in zip(dims[:-1], dims[1:]):
                layers.append(nn.Linear(d_in, d_out, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(hidden_dim, output_dim))
            self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, input_dim) -> (B, output_dim)`` (unit norm when ``normalize``)."""
        out = self.layers(features)
        return F.normalize(out, dim=1) if self.normalize else out
