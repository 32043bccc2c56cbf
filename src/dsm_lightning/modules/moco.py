"""``MoCoModule``: the MoCo baseline (momentum key encoder + FIFO queue of keys)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dsm_lightning._checks import check_choice, check_positive
from dsm_lightning.distributed import gather_no_grad
from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.modules.base import ContrastiveModule
from dsm_lightning.queue import KeyQueue
from dsm_lightning.schedules import MOMENTUM_SCHEDULES, momentum_at

__all__ = ["MoCoModule"]


class MoCoModule(ContrastiveModule):
    """MoCo (He et al. 2020) on video clips: the baseline every DSM comparison uses.

    ``q = f(query view)``, ``k+ = g(key view)`` with ``g`` the EMA copy of ``f`` (encoder and
    head); InfoNCE over ``[q.k+ | q.queue] / tau``; the keys are then enqueued (gathered from
    every rank first). With a ``TripletBuilder.moco()`` view builder the positive is an
    independent simple augmentation of the clip (docs/method.md, "MoCo baseline").

    Args:
        temperature: InfoNCE temperature ``tau``.
        queue_size: number of past keys ``K`` (may exceed the dataset: only keys seen so far
            are used, see ``KeyQueue``; the public DSM scripts pass 3569).
        momentum: EMA momentum of the key encoder.
        momentum_schedule: ``"constant"`` or ``"cosine"`` (from ``momentum`` to 1.0).
        exclude_same_video: ignore queue keys of the query's own video (by the batch's
            ``index``): with a queue larger than the dataset they are stale copies of the
            positive, i.e. false negatives.
        **kwargs: ``ContrastiveModule`` arguments (backbone, optimiser, ...).

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    method_name: ClassVar[str] = "moco"

    def __init__(
        self,
        temperature: float = 0.07,
        queue_size: int = 16384,
        momentum: float = 0.999,
        momentum_schedule: str = "constant",
        exclude_same_video: bool = True,
        **kwargs: Any,
    ) -> None:
        check_positive("temperature", temperature)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        check_choice("momentum_schedule", momentum_schedule, MOMENTUM_SCHEDULES)
        super().__init__(**kwargs)
        self.momentum_encoder = copy.deepcopy(self.encoder)
        self.momentum_projector = copy.deepcopy(self.projector)
        for _, ema in self.momentum_pairs():
            ema.requires_grad_(False)
        self.queue = KeyQueue(queue_size, self.hparams.proj_dim)

    @classmethod
    def paper_settings(cls) -> dict[str, Any]:
        """The public code's settings plus its queue: tau 0.07, 3569 keys (what every public
        script passes; the option's default is 16384), EMA 0.999, no same-video mask."""
        return {**super().paper_settings(), "temperature": 0.07, "queue_size": 3569,
                "momentum": 0.999, "momentum_schedule": "constant",
                "exclude_same_video": False}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The encoder and the head with their EMA copies."""
        return [(self.encoder, self.momentum_encoder), (self.projector, self.momentum_projector)]

    def current_momentum(self) -> float:
        """EMA momentum at the current global step (constant or cosine to 1.0)."""
        total = float(self.trainer.estimated_stepping_batches) if self._trainer else 0.0
        return momentum_at(self.hparams.momentum, self.global_step, total,
                           self.hparams.momentum_schedule)

    @torch.no_grad()
    def encode_key(self, video: Tensor) -> Tensor:
        """``g`` (momentum encoder, no gradient): ``(B, C, T, H, W) -> (B, proj_dim)``."""
        return self.momentum_projector(self.momentum_encoder(video))

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``query = f(query view)``, ``key = g(key view)``, plus :meth:`embed_negatives`."""
        outputs = {"query": self.encode_query(views["query"]),
                   "key": self.encode_key(views["key"])}
        outputs.update(self.embed_negatives(views))
        return outputs

    def embed_negatives(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Extra embeddings of the hard-negative views (none for MoCo; DSM's hook)."""
        return {}

    def queue_negatives(self, views: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """The queue's keys (a copy) and the ``(B, K)`` mask of the query's own video's keys."""
        queue = self.queue.valid_keys().clone()  # the buffer changes in place before backward
        mask = None
        if self.hparams.exclude_same_video and views.get("index") is not None:
            ids = self.queue.valid_ids()
            mask = (ids[None, :] == views["index"][:, None]) & (ids[None, :] >= 0)
        return queue, mask

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE over ``[q.k+ | q.queue] / tau`` (``losses.dsm_infonce_loss``, no hard negative)."""
        queue, mask = self.queue_negatives(views)
        return dsm_infonce_loss(outputs["query"], outputs["key"], queue, None,
                                temperature=self.hparams.temperature, queue_mask=mask)

    def update_state(self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> None:
        """Enqueue this step's keys (and video ids), gathered from every rank."""
        ids = views.get("index")
        self.queue.enqueue(gather_no_grad(outputs["key"]),
                           None if ids is None else gather_no_grad(ids))
