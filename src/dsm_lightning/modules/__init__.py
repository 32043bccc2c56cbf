"""LightningModules: pretraining (DSM / DSM-triplet / MoCo), fine-tuning, retrieval.

Imported lazily (PEP 562) so that a module's dependencies load only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DSMLightningModule": "dsm_lightning.modules.pretrain",
    "FinetuneModule": "dsm_lightning.modules.finetune",
    "RetrievalModule": "dsm_lightning.modules.retrieval",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a module's class on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsm_lightning.modules' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
