"""Backbones (registry by name), projection heads and encoder files.

Importing this package registers the built-in backbones: ``backbones`` imports one file per
family (``torchvision_video``, ``pytorchvideo_hub``, ``c3d``, ``tiny3d``, ``i3d_inception``,
``r2plus1d_dsm``), each registering into ``registry``; ``wrappers`` holds the backbone
contract for any network; ``encoder_io`` builds registry backbones by name.
"""

from dsm_lightning.models import backbones as backbones  # registers the built-in backbones
from dsm_lightning.models import i3d_inception as i3d_inception
from dsm_lightning.models import pytorchvideo_hub as pytorchvideo_hub
from dsm_lightning.models import r2plus1d_dsm as r2plus1d_dsm
from dsm_lightning.models.c3d import C3D
from dsm_lightning.models.encoder_io import (
    EncoderLoadError,
    load_backbone_weights,
    load_encoder,
    save_encoder,
)
from dsm_lightning.models.heads import ProjectionHead
from dsm_lightning.models.i3d_inception import InceptionI3D
from dsm_lightning.models.pytorchvideo_hub import (
    TwoPathwayBackbone,
    hub_names,
    strip_pytorchvideo_head,
)
from dsm_lightning.models.r2plus1d_dsm import R2Plus1DNet
from dsm_lightning.models.registry import (
    create_backbone,
    list_backbones,
    register_backbone,
    register_backbone_family,
)
from dsm_lightning.models.tiny3d import Tiny3D
from dsm_lightning.models.wrappers import BackboneWrapper, as_backbone, infer_feature_dim

__all__ = [
    "BackboneWrapper",
    "C3D",
    "EncoderLoadError",
    "InceptionI3D",
    "ProjectionHead",
    "R2Plus1DNet",
    "Tiny3D",
    "TwoPathwayBackbone",
    "as_backbone",
    "create_backbone",
    "hub_names",
    "infer_feature_dim",
    "list_backbones",
    "load_backbone_weights",
    "load_encoder",
    "register_backbone",
    "register_backbone_family",
    "save_encoder",
    "strip_pytorchvideo_head",
]
