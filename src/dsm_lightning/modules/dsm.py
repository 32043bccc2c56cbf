"""``DSMLightningModule``: the paper's DSM objective (contrastive, the main result)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dsm_lightning._checks import check_positive
from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.modules.moco import MoCoModule

__all__ = ["DSMLightningModule", "embed_clips", "embed_together"]


def embed_clips(encode: Callable[[Tensor], Tensor], clips: Tensor) -> Tensor:
    """Embed ``(B, C, T, H, W)`` -> ``(B, D)`` or ``(B, M, C, T, H, W)`` -> ``(B, M, D)`` in one pass."""
    return embed_together(encode, clips)[0]


def embed_together(encode: Callable[[Tensor], Tensor], *clips: Tensor) -> list[Tensor]:
    """Embed several clip batches in ONE pass of ``encode`` (one set of BatchNorm statistics);
    each ``(B, C, T, H, W)`` -> ``(B, D)``, each ``(B, M, C, T, H, W)`` -> ``(B, M, D)``."""
    flat = [c.flatten(0, 1) if c.ndim == 6 else c for c in clips]
    embedded = encode(torch.cat(flat) if len(flat) > 1 else flat[0])
    parts = embedded.split([f.shape[0] for f in flat])
    return [p.unflatten(0, c.shape[:2]) if c.ndim == 6 else p for p, c in zip(parts, clips)]


class DSMLightningModule(MoCoModule):
    """DSM (Wang et al., AAAI 2021), contrastive form, as the public code computes it.

    ``q = f(query view)`` (the spatially disturbed positive by default), ``k+ = g(key view)``
    (``g`` = EMA copy of ``f``), hard negatives ``n = f(negative)`` with gradient through the
    query encoder in a forward pass of their own; InfoNCE over
    ``[q.k+ | q.queue | q.n] / tau`` with target column 0; the queue holds past ``k+`` only.
    Paper values: ``tau = 0.07``, EMA momentum 0.999, SGD lr 0.003 (momentum 0.9, weight
    decay 1e-4), one hard negative of weight 1 (see docs/method-fidelity.md).

    The way the hard negatives are embedded is :meth:`embed_negatives`; a subclass changes
    it by overriding that one method.

    Args:
        hard_negative_weight: ``w`` counting each hard negative ``w`` times in the InfoNCE
            denominator (``log w`` added to its logits); 1 is the paper's objective.
        **kwargs: ``MoCoModule`` / ``ContrastiveModule`` arguments.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    method_name: ClassVar[str] = "dsm"
    needs_negative: ClassVar[bool] = True

    def __init__(self, hard_negative_weight: float = 1.0, **kwargs: Any) -> None:
        check_positive("hard_negative_weight", hard_negative_weight)
        super().__init__(**kwargs)

    @classmethod
    def paper_settings(cls) -> dict[str, Any]:
        """MoCo's public settings plus one hard negative of weight 1 (docs/method-fidelity.md)."""
        return {**super().paper_settings(), "hard_negative_weight": 1.0}

    def embed_negatives(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{"negative": f(negative)}``: ``(B, D)`` or ``(B, M, D)``, with gradient."""
        return {"negative": embed_clips(self.encode_query, views["negative"])}

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE over ``[q.k+ | q.queue | q.n] / tau`` (``losses.dsm_infonce_loss``)."""
        queue, mask = self.queue_negatives(views)
        return dsm_infonce_loss(
            outputs["query"], outputs["key"], queue, outputs["negative"],
            temperature=self.hparams.temperature,
            negative_weight=self.hparams.hard_negative_weight, queue_mask=mask,
        )
