"""Callbacks: online kNN monitor, triplet media logger (and throughput / export callbacks).

Names are imported lazily (PEP 562) so a missing or heavy sibling does not break import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KNNMonitor": "dsm_lightning.callbacks.knn",
    "weighted_knn_predict": "dsm_lightning.callbacks.knn",
    "TripletMediaLogger": "dsm_lightning.callbacks.media",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a callback on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsm_lightning.callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
