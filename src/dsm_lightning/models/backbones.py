"""Built-in video backbones: torchvision, pytorchvideo, C3D, small CI models, user modules.

Every builder is keyword-only, removes the classification head and returns a
:class:`BackboneWrapper` mapping ``(B, C, T, H, W)`` to pooled features ``(B, D)`` with
``feature_dim = D``. Random initialisation only (nothing is downloaded); load a local
weights file with ``load_backbone_weights(create_backbone(name), "file.pt")``.

The wrapped network is stored as ``BackboneWrapper.model``, so a backbone's state-dict keys
are the original network's keys prefixed with ``model.`` (minus the removed head).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dsm_lightning.models.registry import register_backbone

__all__ = ["BackboneWrapper", "C3D", "Tiny3D", "as_backbone", "infer_feature_dim",
           "strip_pytorchvideo_head"]


@torch.no_grad()
def infer_feature_dim(
    module: nn.Module, input_shape: Sequence[int] = (1, 3, 8, 64, 64)
) -> int:
    """Find a module's pooled feature dimension by one forward pass in eval mode.

    Args:
        module: network returning a feature map ``(B, D, ...)`` or a vector ``(B, D)``.
        input_shape: dry-run input shape ``(B, C, T, H, W)``.

    Returns:
        ``D``.
    """
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        out = module(torch.zeros(*input_shape, device=device, dtype=dtype))
    finally:
        module.train(was_training)
    return int(out.shape[1])


class BackboneWrapper(nn.Module):
    """Make any network conform to the backbone contract ``(B, C, T, H, W) -> (B, D)``.

    Outputs with more than two dimensions (e.g. a feature map ``(B, D, T', H', W')``) are
    globally average-pooled over every dimension after the channel one.

    Args:
        model: the network (stored as ``self.model``).
        feature_dim: ``D``; found by a dry run on ``dry_run_shape`` when None.
        dry_run_shape: input shape ``(B, C, T, H, W)`` of that dry run.
    """

    def __init__(
        self,
        model: nn.Module,
        feature_dim: int | None = None,
        dry_run_shape: Sequence[int] = (1, 3, 8, 64, 64),
    ) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = int(feature_dim) if feature_dim is not None else -1
        if feature_dim is None:
            self.feature_dim = infer_feature_dim(self, dry_run_shape)

    def model_input(self, video: Tensor) -> Any:
        """What ``self.model`` is called with: the clip itself (subclasses may split it)."""
        return video

    def forward(self, video: Tensor) -> Tensor:
        """Pooled features.

        Args:
            video: ``(B, C, T, H, W)``.

        Returns:
            ``(B, feature_dim)``.
        """
        features = self.model(self.model_input(video))
        if features.ndim > 2:
            features = features.flatten(2).mean(dim=2)
        return features


def as_backbone(module: nn.Module, feature_dim: int | None = None) -> BackboneWrapper:
    """A user's network as a backbone: wrapped in :class:`BackboneWrapper` unless it is one.

    The one rule for user modules everywhere (pretraining, ``load_encoder``,
    ``FinetuneModule``, ``RetrievalModule``): a bare module is wrapped, so its weights carry
    the ``model.`` prefix in ``encoder.pt`` files and checkpoints.

    Args:
        module: a ``BackboneWrapper`` (returned as is) or a network returning a feature map
            ``(B, D, ...)`` or a vector ``(B, D)``.
        feature_dim: ``D`` when known (e.g. from an ``encoder.pt``); otherwise the module's
            own ``feature_dim`` attribute, else a dry run finds it.

    Returns:
        The backbone (``(B, C, T, H, W) -> (B, D)``, attribute ``feature_dim``).
    """
    if isinstance(module, BackboneWrapper):
        return module
    own = getattr(module, "feature_dim", None)
    dim = own if isinstance(own, int) and own > 0 else feature_dim
    return BackboneWrapper(module, dim if dim is not None and dim > 0 else None)


def _tuple(values: Sequence[int] | int, length: int, name: str) -> tuple[int, ...]:
    out = (values,) * length if isinstance(values, int) else tuple(int(v) for v in values)
    if len(out) != length or min(out) < 1:
        raise ValueError(f"{name} must be {length} positive ints, got {values!r}")
    return out


def _norm3d(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm3d(channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {norm!r}")


# ----------------------------------------------------------------------------------------
# Small models for CI and demos
# ----------------------------------------------------------------------------------------


class Tiny3D(nn.Module):
    """A 4-layer 3D CNN (conv-norm-ReLU) for tests and CPU demos.

    Channels ``width, 2 width, 4 width, 8 width``; the first layer keeps time and halves
    space, the next three halve both (time stride 1 when ``temporal_stride`` is False).

    Args:
        in_channels: input channels ``C``.
        width: channels of the first layer.
        norm: ``"batch"``, ``"group"`` or ``"none"``.
        temporal_stride: downsample time in layers 2-4.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width: int = 16,
        norm: str = "batch",
        temporal_stride: bool = True,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        t = 2 if temporal_stride else 1
        strides = [(1, 2, 2), (t, 2, 2), (t, 2, 2), (t, 2, 2)]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            layers += [
                nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none"),
                _norm3d(norm, c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.out_channels = channels[-1]

    def forward(self, video: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 8 width, T', H', W')``."""
        return self.features(video)


@register_backbone("tiny3d")
def tiny3d(
    *, in_channels: int = 3, width: int = 16, norm: str = "batch", temporal_stride: bool = True
) -> BackboneWrapper:
    """4-layer 3D CNN, ``feature_dim = 8 * width`` (see :class:`Tiny3D`)."""
    model = Tiny3D(
        in_channels=in_channels, width=width, norm=norm, temporal_stride=temporal_stride
    )
    return BackboneWrapper(model, feature_dim=model.out_channels)


# ----------------------------------------------------------------------------------------
# C3D (Tran et al. 2015) as used in the DSM paper
# ----------------------------------------------------------------------------------------


class C3D(nn.Module):
    """C3D: eight 3x3x3 convolutions and five poolings, the DSM paper's retrieval backbone.

    Channels ``w, 2w, 4w, 4w, 8w, 8w, 8w, 8w`` (``w = width``, 64 in the paper), a
    normalisation after every convolution (BatchNorm as in the public SSL code bases), max
    pooling ``(1, 2, 2)`` after conv1 and ``(2, 2, 2)`` after conv2, conv3b and conv4b (with
    ``ceil_mode`` so short clips survive). The paper's pool5 and fc6/fc7 are replaced by the
    global average pool of :class:`BackboneWrapper` (``feature_dim = 8 * width``).

    Args:
        in_channels: input channels.
        width: channels of conv1.
        norm: ``"batch"``, ``"group"`` or ``"none"``.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv3d(c_in, c_out, 3, padding=1, bias=norm == "none"),
                _norm3d(norm, c_out),
                nn.ReLU(inplace=True),
            ]

        def pool(kernel: tuple[int, int, int]) -> nn.Module:
            return nn.MaxPool3d(kernel, stride=kernel, ceil_mode=True)

        self.features = nn.Sequential(
            *conv(in_channels, w),
            pool((1, 2, 2)),
            *conv(w, 2 * w),
            pool((2, 2, 2)),
            *conv(2 * w, 4 * w),
            *conv(4 * w, 4 * w),
            pool((2, 2, 2)),
            *conv(4 * w, 8 * w),
            *conv(8 * w, 8 * w),
            pool((2, 2, 2)),
            *conv(8 * w, 8 * w),
            *conv(8 * w, 8 * w),
        )
        self.out_channels = 8 * w

    def forward(self, video: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 8 width, T', H', W')``."""
        return self.features(video)


@register_backbone("c3d")
def c3d(*, in_channels: int = 3, width: int = 64, norm: str = "batch") -> BackboneWrapper:
    """C3D (see :class:`C3D`), ``feature_dim = 8 * width`` (512 by default)."""
    model = C3D(in_channels=in_channels, width=width, norm=norm)
    return BackboneWrapper(model, feature_dim=model.out_channels)


# ----------------------------------------------------------------------------------------
# torchvision.models.video
# ----------------------------------------------------------------------------------------


def _video_resnet(kind: str, layers: Sequence[int], in_channels: int) -> BackboneWrapper:
    from torchvision.models.video import resnet as tv

    layers = _tuple(layers, 4, "layers")
    if kind == "r3d":
        conv_makers, stem = [tv.Conv3DSimple] * 4, tv.BasicStem
    elif kind == "mc3":
        conv_makers, stem = [tv.Conv3DSimple] + [tv.Conv3DNoTemporal] * 3, tv.BasicStem
    else:
        conv_makers, stem = [tv.Conv2Plus1D] * 4, tv.R2Plus1dStem
    model = tv.VideoResNet(tv.BasicBlock, conv_makers, list(layers), stem)
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
        raise ValueError(f"s3d supports in_channels=3 only, got {in_channels}")
    model = tv_s3d()
    # S3D.forward: features -> avgpool -> classifier -> mean over (T, H, W). With identities
    # it is the global average pool of the last feature map.
    model.avgpool = nn.Identity()
    model.classifier = nn.Identity()
    return BackboneWrapper(model, feature_dim=1024)


# ----------------------------------------------------------------------------------------
# pytorchvideo builders (pytorchvideo.models only)
# ----------------------------------------------------------------------------------------


def strip_pytorchvideo_head(model: nn.Module) -> int:
    """Remove a pytorchvideo network's classification head in place; return its feature size.

    The heads of ``pytorchvideo.models`` are handled: ``ResNetBasicHead`` (ResNet, I3D,
    R(2+1)D, CSN; X3D's ``ProjectedPool`` keeps its convolutions; SlowFast's
    ``PoolConcatPathway`` pools each pathway), ``VisionTransformerBasicHead`` (MViT) and the
    projection of the mobile-CPU ``EfficientX3d``. Fixed-size pools become global average
    pools (any clip size works) and dropout, projection and activation are dropped, so the
    network returns ``(B, D)``.

    Args:
        model: a network built by a ``pytorchvideo.models`` builder.

    Returns:
        ``D``: the input size of the removed projection.

    Raises:
        ValueError: for a network with another head (e.g. a detection network, which
            needs boxes as a second input).
    """
    from pytorchvideo.models.accelerator.mobile_cpu.efficient_x3d import EfficientX3d
    from pytorchvideo.models.head import ResNetBasicHead, VisionTransformerBasicHead
    from pytorchvideo.models.slowfast import PoolConcatPathway
    from pytorchvideo.models.x3d import ProjectedPool

    blocks = getattr(model, "blocks", None)
    last = blocks[-1] if isinstance(blocks, nn.ModuleList) and len(blocks) else None
    if isinstance(last, ResNetBasicHead):
        dim = last.proj.in_features
        if isinstance(last.pool, ProjectedPool):
            last.pool.pool = nn.AdaptiveAvgPool3d(1)
        elif last.pool is not None:
            last.pool = nn.AdaptiveAvgPool3d(1)
        elif isinstance(blocks[-2], PoolConcatPathway):  # SlowFast: pooled per pathway
            blocks[-2].pool = nn.ModuleList(
                [nn.AdaptiveAvgPool3d(1) for _ in blocks[-2].pool]
            )
        last.dropout = last.proj = last.activation = None
        last.output_pool = nn.Identity()  # the head then flattens (B, D, 1, 1, 1) to (B, D)
        return int(dim)
    head = getattr(model, "head", None)
    if isinstance(head, VisionTransformerBasicHead):
        dim = head.proj.in_features
        head.proj = nn.Identity()
        head.dropout = head.activation = None
        return int(dim)
    if isinstance(model, EfficientX3d):
        dim = model.projection.model.in_features
        model.projection = nn.Identity()
        model.dropout = nn.Identity()
        model.act = nn.Identity()
        return int(dim)
    raise ValueError(
        f"cannot remove the head of a {type(model).__name__}: not a clip classification "
        "network of pytorchvideo.models (detection networks also need boxes)"
    )


@register_backbone("slow_r50")
def slow_r50(
    *, depth: int = 50, width: int = 64, in_channels: int = 3, **overrides: object
) -> BackboneWrapper:
    """pytorchvideo Slow-only ResNet (``create_resnet``), ``feature_dim = 32 * width``.

    Args:
        depth: 50, 101 or 152.
        width: stem channels (64 in Slow-R50; stage widths scale with it).
        in_channels: input channels.
        **overrides: further ``create_resnet`` arguments.
    """
    from pytorchvideo.models.resnet import create_resnet

    model = create_resnet(
        input_channel=in_channels,
        model_depth=depth,
        stem_dim_out=width,
        stem_conv_kernel_size=(1, 7, 7),
        head_pool_kernel_size=(1, 1, 1),
        **overrides,
    )
    return BackboneWrapper(model, feature_dim=strip_pytorchvideo_head(model))


@register_backbone("i3d_r50")
def i3d_r50(
    *, depth: int = 50, width: int = 64, in_channels: int = 3, **overrides: object
) -> BackboneWrapper:
    """pytorchvideo I3D-R50, ``feature_dim = 32 * width`` (2048).

    ``create_resnet`` with the settings of ``pytorchvideo.models.hub.i3d_r50``: a 5x7x7
    stem, a temporal max pool after stage 1 and inflated 3x1x1 convolutions. It is a 3D
    ResNet-50 ("I3D" in the sense of inflated 2D weights), not the Inception-v1 I3D that the
    DSM paper's public code trains (``i3d_inception``).

    Args:
        depth: 50, 101 or 152.
        width: stem channels (stage widths scale with it).
        in_channels: input channels.
        **overrides: further ``create_resnet`` arguments.
    """
    from pytorchvideo.models.resnet import create_resnet

    settings: dict[str, object] = dict(
        stem_conv_kernel_size=(5, 7, 7),
        stage1_pool=nn.MaxPool3d,
        stage_conv_a_kernel_size=(
            (3, 1, 1),
            [(3, 1, 1), (1, 1, 1)],
            [(3, 1, 1), (1, 1, 1)],
            [(1, 1, 1), (3, 1, 1)],
        ),
    )
    settings.update(overrides)
    model = create_resnet(
        input_channel=in_channels, model_depth=depth, stem_dim_out=width, **settings
    )
    return BackboneWrapper(model, feature_dim=strip_pytorchvideo_head(model))


def _x3d(
    clip_length: int, crop_size: int, in_channels: int, width_factor: float,
    depth_factor: float, head_dim: int, overrides: dict,
) -> BackboneWrapper:
    from pytorchvideo.models.x3d import create_x3d

    model = create_x3d(
        input_channel=in_channels,
        input_clip_length=clip_length,
        input_crop_size=crop_size,
        width_factor=width_factor,
        depth_factor=depth_factor,
        head_dim_out=head_dim,
        **overrides,
    )
    return BackboneWrapper(model, feature_dim=strip_pytorchvideo_head(model))


@register_backbone("x3d_xs")
def x3d_xs(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: object,
) -> BackboneWrapper:
    """pytorchvideo X3D-XS (``create_x3d``, 4x160 preset), ``feature_dim = head_dim``.

    The head's fixed pool is replaced by a global one, so any clip size works.

    Args:
        in_channels: input channels.
        width_factor: X3D channel expansion.
        depth_factor: X3D depth expansion.
        head_dim: output channels of the projected pool (the feature dimension).
        **overrides: further ``create_x3d`` arguments.
    """
    return _x3d(4, 160, in_channels, width_factor, depth_factor, head_dim, overrides)


@register_backbone("x3d_s")
def x3d_s(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: object,
) -> BackboneWrapper:
    """pytorchvideo X3D-S (13x160 preset); arguments as :func:`x3d_xs`."""
    return _x3d(13, 160, in_channels, width_factor, depth_factor, head_dim, overrides)


@register_backbone("x3d_m")
def x3d_m(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: object,
) -> BackboneWrapper:
    """pytorchvideo X3D-M (16x224 preset); arguments as :func:`x3d_xs`."""
    return _x3d(16, 224, in_channels, width_factor, depth_factor, head_dim, overrides)


@register_backbone("r2plus1d_r50")
def r2plus1d_r50(
    *, depth: int = 50, width: int = 64, in_channels: int = 3, **overrides: object
) -> BackboneWrapper:
    """pytorchvideo R(2+1)D-50 (``create_r2plus1d``), ``feature_dim = 32 * width``.

    Args:
        depth: 50, 101 or 152.
        width: stem channels.
        in_channels: input channels.
        **overrides: further ``create_r2plus1d`` arguments.
    """
    from pytorchvideo.models.r2plus1d import create_r2plus1d

    model = create_r2plus1d(
        input_channel=in_channels, model_depth=depth, stem_dim_out=width, **overrides
    )
    return BackboneWrapper(model, feature_dim=strip_pytorchvideo_head(model))


@register_backbone("csn_r101")
def csn_r101(
    *, depth: int = 101, width: int = 64, in_channels: int = 3, **overrides: object
) -> BackboneWrapper:
    """pytorchvideo channel-separated network (``create_csn``), ``feature_dim = 32 * width``.

    Args:
        depth: 50, 101 or 152.
        width: stem channels.
        in_channels: input channels.
        **overrides: further ``create_csn`` arguments.
    """
    from pytorchvideo.models.csn import create_csn

    model = create_csn(
        input_channel=in_channels, model_depth=depth, stem_dim_out=width, **overrides
    )
    return BackboneWrapper(model, feature_dim=strip_pytorchvideo_head(model))
