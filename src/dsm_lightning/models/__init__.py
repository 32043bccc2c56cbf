"""Backbones (registry by name), projection heads and encoder files.

Importing this package registers the built-in backbones (``backbones`` imports the leaf
``registry`` and registers into it); ``encoder_io`` builds registry backbones by name.
"""

from dsm_lightning.models import backbones as backbones  # registers the built-in backbones
from dsm_lightning.models.backbones import (
    C3D,
    BackboneWrapper,
    Tiny3D,
    as_backbone,
    infer_feature_dim,
)
from dsm_lightning.models.encoder_io import (
    EncoderLoadError,
    load_backbone_weights,
    load_encoder,
    save_encoder,
)
from dsm_lightning.models.heads import ProjectionHead
from dsm_lightning.models.registry import create_backbone, list_backbones, register_backbone

__all__ = [
    "BackboneWrapper",
    "C3D",
    "EncoderLoadError",
    "ProjectionHead",
    "Tiny3D",
    "as_backbone",
    "create_backbone",
    "infer_feature_dim",
    "list_backbones",
    "load_backbone_weights",
    "load_encoder",
    "register_backbone",
    "save_encoder",
]
