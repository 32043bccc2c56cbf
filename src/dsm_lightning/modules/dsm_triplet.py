"""``DSMTripletModule``: DSM's triplet form (one encoder, triplet margin loss)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dsm_lightning.losses import dsm_triplet_loss
from dsm_lightning.modules.base import ContrastiveModule
from dsm_lightning.modules.dsm import embed_clips

__all__ = ["DSMTripletModule"]


class DSMTripletModule(ContrastiveModule):
    """DSM (triplet): ``TripletMarginLoss(margin, p=2)`` on ``(q, k+, n)`` plus the same loss
    with another video's negative (inter-video term); one encoder ``f``, no momentum copy,
    no queue.

    Args:
        margin: triplet margin (0.5 in the public code).
        inter_video: add the inter-video term (the negative of the next clip in the batch).
        shared_pass: embed query, key and negatives in one forward pass (one set of BatchNorm
            statistics; a library option). False (default) runs three passes as the public
            code does.
        **kwargs: ``ContrastiveModule`` arguments.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    method_name: ClassVar[str] = "dsm_triplet"
    needs_negative: ClassVar[bool] = True

    def __init__(
        self, margin: float = 0.5, inter_video: bool = True, shared_pass: bool = False,
        **kwargs: Any,
    ) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        super().__init__(**kwargs)

    @classmethod
    def paper_settings(cls) -> dict[str, Any]:
        """The public optimiser settings plus margin 0.5 (p = 2), the inter-video term and
        three separate forward passes (docs/method-fidelity.md)."""
        return {**super().paper_settings(), "margin": 0.5, "inter_video": True,
                "shared_pass": False}

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``query``, ``key`` and ``negative`` all through ``f`` with gradient."""
        query, key, negative = views["query"], views["key"], views["negative"]
        if not self.hparams.shared_pass:
            return {"query": self.encode_query(query), "key": self.encode_query(key),
                    "negative": embed_clips(self.encode_query, negative)}
        flat = negative.flatten(0, 1) if negative.ndim == 6 else negative
        embedded = self.encode_query(torch.cat([query, key, flat]))
        q, k, n = embedded.split([query.shape[0], key.shape[0], flat.shape[0]])
        if negative.ndim == 6:
            n = n.unflatten(0, negative.shape[:2])
        return {"query": q, "key": k, "negative": n}

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Intra- plus inter-video triplet margin loss (``losses.dsm_triplet_loss``)."""
        return dsm_triplet_loss(outputs["query"], outputs["key"], outputs["negative"],
                                margin=self.hparams.margin,
                                inter_video=self.hparams.inter_video)
