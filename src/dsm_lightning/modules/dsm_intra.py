"""``DSMIntraModule``: the library's intra-video DSM variant (not the paper's objective)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from dsm_lightning._checks import check_positive
from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.modules.dsm import embed_together
from dsm_lightning.modules.moco import MoCoModule

__all__ = ["DSMIntraModule"]


class DSMIntraModule(MoCoModule):
    """DSM variant with an intra-video term: a MoCo term plus the hard negatives contrasted
    against the anchor inside the query encoder. A variant of this library, not the paper's.

    Loss = ``moco([q.g(a) | q.queue])`` + ``intra_weight`` x
    ``-log softmax([q.f(a) | q.f(n_1..M)] / tau)[0]``, where the anchor ``a`` (the key view)
    and its ``M`` disturbed copies ``n_m`` are embedded by ``f`` in one forward pass (one set
    of BatchNorm statistics, gradient through all of them).

    What it changes from :class:`~dsm_lightning.DSMLightningModule` (the paper): the hard
    negatives are compared with ``f(a)``, not with ``g(a)``, in a term of their own. Why: in
    the paper's form ``q.n`` is an f-against-f similarity and ``q.k+`` an f-against-g one;
    at small batches, short budgets or fast learning rates ``f`` drifts from ``g`` and the
    hard negative wins whatever the content (measured in docs/method-fidelity.md). Inside one
    encoder, what the anchor and its negatives share (the scene) cancels in the gradient and
    what differs (the motion) gets all of it. When: small data or batches, CPU budgets, AdamW
    or fast schedules; use the paper's module to reproduce the paper.

    Args:
        intra_weight: weight of the intra-video term.
        **kwargs: ``MoCoModule`` / ``ContrastiveModule`` arguments.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    method_name: ClassVar[str] = "dsm_intra"
    needs_negative: ClassVar[bool] = True

    def __init__(self, intra_weight: float = 10.0, **kwargs: Any) -> None:
        check_positive("intra_weight", intra_weight)
        super().__init__(**kwargs)

    def embed_negatives(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``online_key = f(a)`` and ``negative = f(n)`` in one pass of ``f``."""
        anchor, negative = embed_together(self.encode_query, views["key"], views["negative"])
        return {"online_key": anchor, "negative": negative}

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """MoCo term + ``intra_weight`` x intra-video term; logs ``intra_loss`` and ``hn_acc``."""
        loss, stats = super().compute_loss(views, outputs)
        intra, intra_stats = dsm_infonce_loss(
            outputs["query"], outputs["online_key"], None, outputs["negative"],
            temperature=self.hparams.temperature,
        )
        stats = dict(stats, intra_loss=intra.detach(), neg_logit=intra_stats["neg_logit"],
                     hard_negative_accuracy=intra_stats["hard_negative_accuracy"])
        return loss + self.hparams.intra_weight * intra, stats
