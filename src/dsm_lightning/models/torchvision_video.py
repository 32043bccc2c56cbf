"""The video networks of ``torchvision.models.video``: R3D, MC3, R(2+1)D and S3D.

Registered as ``"r3d_18"``, ``"r3d_34"``, ``"mc3_18"``, ``"r2plus1d_18"`` and ``"s3d"``;
each loses its classifier and returns a :class:`BackboneWrapper` (random initialisation,
keys prefixed with ``model.``, so a weights file of the torchvision network loads with
only its classifier left over).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dsm_lightning.models.registry import register_backbone
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = ["mc3_18", "r2plus1d_18", "r3d_18", "r3d_34", "s3d"]


def _stage_blocks(layers: Sequence[int] | int) -> list[int]:
    out = [layers] * 4 if isinstance(layers, int) else [int(v) for v in layers]
    if len(out) != 4 or min(out) < 1:
        raise ValueError(f"layers must be 4 positive ints, got layers={layers!r}")
    return out


def _video_resnet(kind: str, layers: Sequence[int], in_channels: int) -> BackboneWrapper:
    """torchvision ``VideoResNet`` with BasicBlocks, ``feature_dim = 512``.

    Args:
        kind: ``"r3d"`` (3D convolutions), ``"mc3"`` (3D in stage 1, 2D after) or
            ``"r2plus1d"`` (factorised convolutions and stem).
        layers: blocks per stage (4 ints, or one for every stage).
        in_channels: input channels (the stem is rebuilt for other than 3).
    """
    from torchvision.models.video import resnet as tv

    if kind == "r3d":
        conv_makers, stem = [tv.Conv3DSimple] * 4, tv.BasicStem
    elif kind == "mc3":
        conv_makers, stem = [tv.Conv3DSimple] + [tv.Conv3DNoTemporal] * 3, tv.BasicStem
    else:
        conv_makers, stem = [tv.Conv2Plus1D] * 4, tv.R2Plus1dStem
    model = tv.VideoResNet(tv.BasicBlock, conv_makers, _stage_blocks(layers), stem)
    model.fc = nn.Identity()
    if in_channels != 3:
        old = model.stem[0]
        model.stem[0] = nn.Conv3d(
            in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    return BackboneWrapper(model, feature_dim=512)


@register_backbone("r3d_18")
def r3d_18(*, layers: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3) -> BackboneWrapper:
    """torchvision R3D-18 (3D ResNet, BasicBlocks), ``feature_dim = 512``.

    Args:
        layers: blocks per stage; ``(1, 1, 1, 1)`` gives a faster R3D-10.
        in_channels: input channels.
    """
    return _video_resnet("r3d", layers, in_channels)


@register_backbone("r3d_34")
def r3d_34(*, layers: Sequence[int] = (3, 4, 6, 3), in_channels: int = 3) -> BackboneWrapper:
    """R3D-34 (torchvision VideoResNet with ``layers=(3, 4, 6, 3)``), ``feature_dim = 512``."""
    return _video_resnet("r3d", layers, in_channels)


@register_backbone("mc3_18")
def mc3_18(*, layers: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3) -> BackboneWrapper:
    """torchvision MC3-18 (3D convs in stage 1, 2D after), ``feature_dim = 512``."""
    return _video_resnet("mc3", layers, in_channels)


@register_backbone("r2plus1d_18")
def r2plus1d_18(
    *, layers: Sequence[int] = (2, 2, 2, 2), in_channels: int = 3
) -> BackboneWrapper:
    """torchvision R(2+1)D-18 (factorised space/time convs), ``feature_dim = 512``."""
    return _video_resnet("r2plus1d", layers, in_channels)


@register_backbone("s3d")
def s3d(*, in_channels: int = 3) -> BackboneWrapper:
    """torchvision S3D, ``feature_dim = 1024``; its fixed-size pool is replaced by a global one.

    Args:
        in_channels: input channels (3 only; kept for a uniform signature).
    """
    from torchvision.models.video import s3d as tv_s3d

    if in_channels != 3:
        raise ValueError(f"s3d supports in_channels=3 only, got in_channels={in_channels}")
    model = tv_s3d()
    # S3D.forward: features -> avgpool -> classifier -> mean over (T, H, W). With identities
    # it is the global average pool of the last feature map.
    model.avgpool = nn.Identity()
    model.classifier = nn.Identity()
    return BackboneWrapper(model, feature_dim=1024)
