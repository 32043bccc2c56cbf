"""The backbone contract for any network: ``BackboneWrapper``, ``as_backbone``, ``infer_feature_dim``.

A backbone maps a clip batch ``(B, C, T, H, W)`` to pooled features ``(B, D)`` and exposes
``feature_dim = D`` (docs/architecture.md, "Encoder contract"). The wrapped network is stored
as ``BackboneWrapper.model``, so a backbone's state-dict keys are the network's keys
prefixed with ``model.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BackboneWrapper", "as_backbone", "infer_feature_dim"]


@torch.no_grad()
def infer_feature_dim(
    module: nn.Module, input_shape: Sequence[int] = (1, 3, 8, 64, 64)
) -> int:
    """Find a module's pooled feature dimension by one forward pass in eval mode.

    Args:
        module: network returning a feature map ``(B, D, ...)`` or a vector ``(B, D)``.
        input_shape: dry-run input shape ``(B, C, T, H, W)``.

    Returns:
        ``D``.
    """
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        out = module(torch.zeros(*input_shape, device=device, dtype=dtype))
    finally:
        module.train(was_training)
    return int(out.shape[1])


class BackboneWrapper(nn.Module):
    """Make any network conform to the backbone contract ``(B, C, T, H, W) -> (B, D)``.

    Outputs with more than two dimensions (e.g. a feature map ``(B, D, T', H', W')``) are
    globally average-pooled over every dimension after the channel one.

    Args:
        model: the network (stored as ``self.model``).
        feature_dim: ``D``; found by a dry run on ``dry_run_shape`` when None.
        dry_run_shape: input shape ``(B, C, T, H, W)`` of that dry run.
    """

    def __init__(
        self,
        model: nn.Module,
        feature_dim: int | None = None,
        dry_run_shape: Sequence[int] = (1, 3, 8, 64, 64),
    ) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = int(feature_dim) if feature_dim is not None else -1
        if feature_dim is None:
            self.feature_dim = infer_feature_dim(self, dry_run_shape)

    def model_input(self, video: Tensor) -> Any:
        """What ``self.model`` is called with: the clip itself (subclasses may split it)."""
        return video

    def forward(self, video: Tensor) -> Tensor:
        """Pooled features.

        Args:
            video: ``(B, C, T, H, W)``.

        Returns:
            ``(B, feature_dim)``.
        """
        features = self.model(self.model_input(video))
        if features.ndim > 2:
            features = features.flatten(2).mean(dim=2)
        return features


def as_backbone(module: nn.Module, feature_dim: int | None = None) -> BackboneWrapper:
    """A user's network as a backbone: wrapped in :class:`BackboneWrapper` unless it is one.

    The one rule for user modules everywhere (pretraining, ``load_encoder``,
    ``FinetuneModule``, ``RetrievalModule``): a bare module is wrapped, so its weights carry
    the ``model.`` prefix in ``encoder.pt`` files and checkpoints.

    Args:
        module: a ``BackboneWrapper`` (returned as is) or a network returning a feature map
            ``(B, D, ...)`` or a vector ``(B, D)``.
        feature_dim: ``D`` when known (e.g. from an ``encoder.pt``); otherwise the module's
            own ``feature_dim`` attribute, else a dry run finds it.

    Returns:
        The backbone (``(B, C, T, H, W) -> (B, D)``, attribute ``feature_dim``).
    """
    if isinstance(module, BackboneWrapper):
        return module
    own = getattr(module, "feature_dim", None)
    dim = own if isinstance(own, int) and own > 0 else feature_dim
    return BackboneWrapper(module, dim if dim is not None and dim > 0 else None)
