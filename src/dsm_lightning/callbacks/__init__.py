"""Callbacks: ``knn.py`` (``KNNMonitor``, online kNN accuracy of the encoder) and ``media.py``
(``TripletMediaLogger``, labelled pictures of the training triplets).

Names are imported lazily (PEP 562) so a missing or heavy sibling does not break import.
"""

from __future__ import annotations

from dsm_lightning._lazy import lazy_getattr

_EXPORTS = {
    "KNNMonitor": "dsm_lightning.callbacks.knn",
    "weighted_knn_predict": "dsm_lightning.callbacks.knn",
    "TripletMediaLogger": "dsm_lightning.callbacks.media",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
