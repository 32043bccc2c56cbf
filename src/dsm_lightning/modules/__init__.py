"""LightningModules: pretraining (DSM / DSM-triplet / MoCo), fine-tuning, retrieval.

Imported lazily (PEP 562) so that a module's dependencies load only when it is used.
"""

from __future__ import annotations

from dsm_lightning._lazy import lazy_getattr

_EXPORTS = {
    "DSMLightningModule": "dsm_lightning.modules.pretrain",
    "FinetuneModule": "dsm_lightning.modules.finetune",
    "RetrievalModule": "dsm_lightning.modules.retrieval",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
