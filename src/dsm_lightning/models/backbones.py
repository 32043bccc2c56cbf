"""The built-in backbones: importing this module registers every one of them.

One file per family, each registering its builders with
:func:`~dsm_lightning.models.registry.register_backbone`:

- ``torchvision_video``: ``r3d_18``, ``r3d_34``, ``mc3_18``, ``r2plus1d_18``, ``s3d``;
- ``pytorchvideo_hub``: ``pytorchvideo:<hub name>`` and its presets ``slow_r50``,
  ``i3d_r50``, ``r2plus1d_r50``, ``csn_r101``, ``x3d_xs``, ``x3d_s``, ``x3d_m``;
- ``c3d``: ``c3d``; ``tiny3d``: ``tiny3d``;
- ``i3d_inception`` and ``r2plus1d_dsm``: the networks of the DSM paper's public code.

Every builder is keyword-only, removes the classification head and returns a
:class:`BackboneWrapper` (``wrappers``) mapping ``(B, C, T, H, W)`` to pooled features
``(B, D)`` with ``feature_dim = D``. Random initialisation only (nothing is downloaded);
load a local weights file with ``load_backbone_weights(create_backbone(name), "file.pt")``.
The names below are re-exported from where they live.
"""

from __future__ import annotations

from dsm_lightning.models import c3d as c3d
from dsm_lightning.models import i3d_inception as i3d_inception
from dsm_lightning.models import pytorchvideo_hub as pytorchvideo_hub
from dsm_lightning.models import r2plus1d_dsm as r2plus1d_dsm
from dsm_lightning.models import tiny3d as tiny3d
from dsm_lightning.models import torchvision_video as torchvision_video
from dsm_lightning.models.c3d import C3D
from dsm_lightning.models.pytorchvideo_hub import strip_pytorchvideo_head
from dsm_lightning.models.tiny3d import Tiny3D
from dsm_lightning.models.wrappers import BackboneWrapper, as_backbone, infer_feature_dim

__all__ = ["BackboneWrapper", "C3D", "Tiny3D", "as_backbone", "infer_feature_dim",
           "strip_pytorchvideo_head"]
