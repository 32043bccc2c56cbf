"""Linear probes on frozen features: multinomial logistic regression, plain torch.

A frozen-encoder linear probe trained on cached features gives the same classifier as a
probe trained through the (frozen, BatchNorm-in-eval) encoder, at a fraction of the cost:
the encoder runs once per clip instead of once per clip per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class LinearProbe:
    """A fitted linear classifier on standardised features.

    Attributes:
        mean: Feature mean of the training set, shape (D,).
        std: Feature standard deviation of the training set, shape (D,).
        linear: The classifier, ``D -> num_classes``.
    """

    mean: Tensor
    std: Tensor
    linear: nn.Linear

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        """Class logits (N, K) for features (N, D)."""
        return self.linear((features.float() - self.mean) / self.std)

    def predict(self, features: Tensor) -> Tensor:
        """Predicted class indices (N,) for features (N, D)."""
        return self.logits(features).argmax(dim=1)

    def accuracy(self, features: Tensor, labels: Tensor) -> float:
        """Top-1 accuracy in [0, 1] of the probe on (features (N, D), labels (N,))."""
        if len(labels) == 0:
            raise ValueError("accuracy needs at least one labelled sample")
        return (self.predict(features) == labels).float().mean().item()


def fit_linear_probe(
    features: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    weight_decay: float = 1e-3,
    max_iter: int = 300,
    seed: int = 0,
) -> LinearProbe:
    """Fit a multinomial logistic regression on frozen features with L-BFGS.

    Args:
        features: Training features (N, D).
        labels: Integer class labels (N,), values in ``[0, num_classes)``.
        num_classes: Number of classes; defaults to ``labels.max() + 1``.
        weight_decay: L2 penalty on the weights (on standardised features).
        max_iter: L-BFGS iterations.
        seed: Seed of the (zero-mean, tiny) weight initialisation.

    Returns:
        The fitted :class:`LinearProbe`.

    Raises:
        ValueError: On empty or mismatched inputs, or labels outside the class range.
    """
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise ValueError("fit_linear_probe needs at least one training sample")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    k = int(labels.max().item()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got [{labels.min()}, {labels.max()}]")
    x = features.detach().float()
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(x.shape[1], k)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) * 1e-3)
        linear.bias.zero_()
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe")
    y = labels.long()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(linear(x), y)
        loss = loss + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    linear.requires_grad_(False)
    return LinearProbe(mean=mean, std=std, linear=linear)
