"""``FAMEModule``: FAME on MoCo (Ding et al., CVPR 2022, arXiv 2109.15130)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dsm_lightning.distributed import gather_no_grad
from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.modules.moco import MoCoModule

__all__ = ["FAMEModule"]


class FAMEModule(MoCoModule):
    """FAME's MoCo objective, as the public code trains it (``moco/builder.py``, ``train.py``).

    The disturbance is the view builder's (``FAMEBuilder``): the ``positive`` view is the
    clip's moving foreground on another video's background, the ``anchor`` another clip of
    the same video. The loss is MoCo's InfoNCE, *symmetrised*: ``(L(f(positive), g(anchor)) +
    L(f(anchor), g(positive))) / 2`` (``MoCo.forward`` calls ``forward_once`` both ways and
    ``train.py`` averages the two cross-entropies); both key sets are then enqueued. Both
    directions read the queue as it was before this step (the public code enqueues the first
    direction's keys before the second direction reads the queue, which puts each clip's own
    key among its negatives; the library does not).

    Public-code values (``train.py``): ``tau = 0.1`` (``--moco_t``), EMA momentum 0.999,
    queue 65536 (Kinetics-400; 2048 on UCF101), linear head for I3D and an MLP head for
    R(2+1)D (``--mlp``), SGD lr 0.01 with a cosine schedule over 200 epochs (README command),
    momentum 0.9, weight decay 1e-4.

    Args:
        symmetric: the symmetrised loss (public code); False = one direction, ``q = f(positive)``.
        temperature: InfoNCE temperature (``--moco_t`` 0.1).
        queue_size: number of past keys (65536, the Kinetics-400 setting).
        **kwargs: ``MoCoModule`` / ``ContrastiveModule`` arguments.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    method_name: ClassVar[str] = "fame"

    def __init__(
        self, symmetric: bool = True, temperature: float = 0.1, queue_size: int = 65536,
        **kwargs: Any,
    ) -> None:
        super().__init__(temperature=temperature, queue_size=queue_size, **kwargs)

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``query = f(q view)``, ``key = g(k view)``; symmetric: also ``f(k view)``, ``g(q view)``."""
        outputs = super().forward_views(views)
        if self.hparams.symmetric:
            outputs["query_2"] = self.encode_query(views["key"])
            outputs["key_2"] = self.encode_key(views["query"])
        return outputs

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE over ``[q.k+ | q.queue] / tau``, averaged over both directions."""
        queue, mask = self.queue_negatives(views)
        loss, stats = dsm_infonce_loss(outputs["query"], outputs["key"], queue, None,
                                       temperature=self.hparams.temperature, queue_mask=mask)
        if not self.hparams.symmetric:
            return loss, stats
        loss_2, _ = dsm_infonce_loss(outputs["query_2"], outputs["key_2"], queue, None,
                                     temperature=self.hparams.temperature, queue_mask=mask)
        return (loss + loss_2) / 2, stats

    def update_state(self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> None:
        """Enqueue this step's keys (both directions' when symmetric), gathered from every rank."""
        keys = [outputs["key"], *([outputs["key_2"]] if self.hparams.symmetric else [])]
        ids = views.get("index")
        self.queue.enqueue(gather_no_grad(torch.cat(keys)),
                           None if ids is None else gather_no_grad(ids.repeat(len(keys))))
