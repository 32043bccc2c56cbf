"""dsm-lightning: self-supervised video representation learning that uses motion, not scene.

Implements DSM (Wang et al., AAAI 2021, "Decoupling the Scene and the Motion") on PyTorch
Lightning. Public names are imported lazily so that ``import dsm_lightning`` stays fast and
makes no network call; touching ``dsm_lightning.DSMLightningModule`` imports Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsm_lightning._lazy import lazy_getattr

__version__ = "0.3.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ContrastiveModule": "dsm_lightning.modules.base",
    "MoCoModule": "dsm_lightning.modules.moco",
    "DSMLightningModule": "dsm_lightning.modules.dsm",
    "DSMIntraModule": "dsm_lightning.modules.dsm_intra",
    "DSMTripletModule": "dsm_lightning.modules.dsm_triplet",
    "BEModule": "dsm_lightning.modules.be",
    "FAMEModule": "dsm_lightning.modules.fame",
    "BackgroundErasingBuilder": "dsm_lightning.disturb.background_erasing",
    "FAMEBuilder": "dsm_lightning.disturb.fame",
    "FinetuneModule": "dsm_lightning.modules.finetune",
    "RetrievalModule": "dsm_lightning.modules.retrieval",
    "VideoDataModule": "dsm_lightning.data.datamodule",
    "TripletBuilder": "dsm_lightning.disturb.triplet",
    "create_backbone": "dsm_lightning.models.registry",
    "register_backbone": "dsm_lightning.models.registry",
    "list_backbones": "dsm_lightning.models.registry",
    "ProjectionHead": "dsm_lightning.models.heads",
    "KeyQueue": "dsm_lightning.queue",
    "load_encoder": "dsm_lightning.models.encoder_io",
    "save_encoder": "dsm_lightning.models.encoder_io",
    "EncoderLoadError": "dsm_lightning.models.encoder_io",
    "KNNMonitor": "dsm_lightning.callbacks.knn",
    "TripletMediaLogger": "dsm_lightning.callbacks.media",
    "EncoderExport": "dsm_lightning.callbacks.export",
    "LineProgressBar": "dsm_lightning.callbacks.progress",
}

__all__ = [
    "BEModule",
    "BackgroundErasingBuilder",
    "FAMEBuilder",
    "FAMEModule",
    "ContrastiveModule",
    "DSMIntraModule",
    "DSMLightningModule",
    "DSMTripletModule",
    "EncoderExport",
    "LineProgressBar",
    "MoCoModule",
    "EncoderLoadError",
    "FinetuneModule",
    "KNNMonitor",
    "KeyQueue",
    "ProjectionHead",
    "RetrievalModule",
    "TripletBuilder",
    "TripletMediaLogger",
    "VideoDataModule",
    "__version__",
    "create_backbone",
    "list_backbones",
    "load_encoder",
    "register_backbone",
    "save_encoder",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from dsm_lightning.callbacks.export import EncoderExport
    from dsm_lightning.callbacks.knn import KNNMonitor
    from dsm_lightning.callbacks.media import TripletMediaLogger
    from dsm_lightning.callbacks.progress import LineProgressBar
    from dsm_lightning.data.datamodule import VideoDataModule
    from dsm_lightning.disturb.background_erasing import BackgroundErasingBuilder
    from dsm_lightning.disturb.fame import FAMEBuilder
    from dsm_lightning.disturb.triplet import TripletBuilder
    from dsm_lightning.models.encoder_io import EncoderLoadError, load_encoder, save_encoder
    from dsm_lightning.models.heads import ProjectionHead
    from dsm_lightning.models.registry import create_backbone, list_backbones, register_backbone
    from dsm_lightning.modules.base import ContrastiveModule
    from dsm_lightning.modules.be import BEModule
    from dsm_lightning.modules.dsm import DSMLightningModule
    from dsm_lightning.modules.dsm_intra import DSMIntraModule
    from dsm_lightning.modules.dsm_triplet import DSMTripletModule
    from dsm_lightning.modules.fame import FAMEModule
    from dsm_lightning.modules.finetune import FinetuneModule
    from dsm_lightning.modules.moco import MoCoModule
    from dsm_lightning.modules.retrieval import RetrievalModule
    from dsm_lightning.queue import KeyQueue


_lazy_import = lazy_getattr(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and cache it in the module."""
    value = _lazy_import(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names (for tab completion)."""
    return __all__
