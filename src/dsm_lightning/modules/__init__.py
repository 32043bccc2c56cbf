"""LightningModules: pretraining methods on one base class, fine-tuning, retrieval.

Imported lazily (PEP 562) so that a module's dependencies load only when it is used.
"""

from __future__ import annotations

from dsm_lightning._lazy import lazy_getattr

_EXPORTS = {
    "ContrastiveModule": "dsm_lightning.modules.base",
    "MoCoModule": "dsm_lightning.modules.moco",
    "DSMLightningModule": "dsm_lightning.modules.dsm",
    "DSMIntraModule": "dsm_lightning.modules.dsm_intra",
    "DSMTripletModule": "dsm_lightning.modules.dsm_triplet",
    "BEModule": "dsm_lightning.modules.be",
    "FAMEModule": "dsm_lightning.modules.fame",
    "FinetuneModule": "dsm_lightning.modules.finetune",
    "RetrievalModule": "dsm_lightning.modules.retrieval",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
