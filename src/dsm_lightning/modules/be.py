"""``BEModule``: Background Erasing on MoCo (Wang et al., CVPR 2021, arXiv 2009.05769)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.modules.dsm import embed_clips
from dsm_lightning.modules.moco import MoCoModule

__all__ = ["BEModule"]


class BEModule(MoCoModule):
    """Background Erasing with MoCo, as the public code trains it (``src/Contrastive/pt.py``,
    ``train_be``).

    The disturbance is the view builder's (``BackgroundErasingBuilder``): the *query* is the
    distracting clip, ``q = f(BE(clip))`` (the ``positive`` view, ``query_view="positive"``),
    the key ``k+ = g(clip)`` another simple augmentation of the same frames through the
    momentum encoder; InfoNCE over ``[q.k+ | q.queue] / tau`` pulls the distracting clip's
    feature to the original's, and the keys are enqueued. No extra loss term: the public
    ``train_be`` computes only this contrastive loss (its temporal-consistency term ``tcr`` is
    commented out). When the batch carries a ``negative`` (e.g. BE on top of a DSM triplet,
    or the public BE script's temporally shifted clip of the same video,
    ``data/dataset.py`` ``get_be_items``), it is embedded by ``f`` with gradient and added as a
    last column, ``[q.k+ | q.queue | q.n]``, as the public ``MemoryMoCo`` does.

    Paper / public-code values (``src/Contrastive/option.py`` and the scripts): ``tau``
    0.07, EMA momentum 0.999, SGD lr 0.003 (momentum 0.9, weight decay 1e-4, x0.1 at epochs
    120/160/200), queue 3569 (UCF101 script) or 65536 (Kinetics script).

    Args:
        **kwargs: ``MoCoModule`` / ``ContrastiveModule`` arguments.
    """

    method_name: ClassVar[str] = "be"

    def embed_negatives(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``negative = f(negative)`` when the batch has one (BE on DSM's views)."""
        if views.get("negative") is None:
            return {}
        return {"negative": embed_clips(self.encode_query, views["negative"])}

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE over ``[q.k+ | q.queue (| q.n)] / tau`` (``losses.dsm_infonce_loss``)."""
        queue, mask = self.queue_negatives(views)
        return dsm_infonce_loss(outputs["query"], outputs["key"], queue, outputs.get("negative"),
                                temperature=self.hparams.temperature, queue_mask=mask)
