"""pytorchvideo networks as backbones: any hub builder as ``"pytorchvideo:<name>"``, seven presets.

``create_backbone("pytorchvideo:x3d_s")`` calls ``pytorchvideo.models.hub.x3d_s`` with
``pretrained=False`` and the given keyword arguments (the builder's own, e.g.
``model_depth``, ``stem_dim_out``, ``spatial_size``), removes the classification head
(:func:`strip_pytorchvideo_head`) and wraps the network so that it maps
``(B, C, T, H, W)`` to ``(B, D)``; ``D`` is the input size of the removed projection. The
names served are the hub's builders (:func:`hub_names`), read from the installed
pytorchvideo, minus the detection networks (they take boxes as a second input).

The named backbones ``slow_r50``, ``i3d_r50``, ``r2plus1d_r50``, ``csn_r101``, ``x3d_xs``,
``x3d_s`` and ``x3d_m`` are presets over the family: ``create_backbone("slow_r50",
width=8)`` is ``create_backbone("pytorchvideo:slow_r50", stem_dim_out=8)`` (the same
network), with the package's keyword names (``width``, ``depth``, ``in_channels``,
``head_dim``) for the hub's (``stem_dim_out``, ``model_depth``, ``input_channel``,
``head_dim_out``).

Notes per family:

- SlowFast: the clip feeds the fast pathway as is and the slow pathway every ``alpha``-th
  frame (``alpha`` read from the network's fusion convolution, 4 for the hub models).
- MViT: positional embeddings fix the input size; clips must have ``temporal_size``
  frames of ``spatial_size`` pixels (hub defaults 16 and 224; pass them to change).

Nothing is downloaded: asking for ``pretrained=True`` is an error; load local weights with
``load_backbone_weights(create_backbone("pytorchvideo:<name>"), path)`` (the file of the
original network loads into ``backbone.model``, its head keys left over).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from dsm_lightning.models.registry import register_backbone, register_backbone_family
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = [
    "HUB_PREFIX", "TwoPathwayBackbone", "create_pytorchvideo_hub", "csn_r101", "hub_names",
    "i3d_r50", "r2plus1d_r50", "slow_r50", "strip_pytorchvideo_head", "x3d_m", "x3d_s",
    "x3d_xs",
]

HUB_PREFIX = "pytorchvideo"


def _hub() -> Any:
    import pytorchvideo.models.hub as hub

    return hub


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


def hub_names() -> list[str]:
    """Builders of the installed ``pytorchvideo.models.hub`` usable as clip backbones.

    Returns:
        The public functions of the hub that take ``pretrained``, without the detection
        networks (``*_detection``), sorted.
    """
    hub = _hub()
    return sorted(
        name
        for name, builder in vars(hub).items()
        if inspect.isfunction(builder)
        and not name.startswith("_")
        and not name.endswith("_detection")
        and "pretrained" in inspect.signature(builder).parameters
    )


class TwoPathwayBackbone(BackboneWrapper):
    """A SlowFast network as a backbone: one clip feeds both pathways.

    The fast pathway takes the clip ``(B, C, T, H, W)``, the slow pathway every
    ``alpha``-th frame ``(B, C, ceil(T / alpha), H, W)`` (the length the fast-to-slow
    fusion produces). State-dict keys are the network's keys prefixed with ``model.``.

    Args:
        model: the SlowFast network (head removed), called with ``[slow, fast]``.
        feature_dim: ``D`` (slow plus fast channels).
        alpha: frame-rate ratio of the two pathways.
    """

    def __init__(self, model: nn.Module, feature_dim: int, alpha: int) -> None:
        self.alpha = int(alpha)
        super().__init__(model, feature_dim=feature_dim)

    def model_input(self, video: Tensor) -> list[Tensor]:
        """``[slow, fast]``: every ``alpha``-th frame of ``video`` ``(B, C, T, H, W)``, and all."""
        return [video[:, :, :: self.alpha], video]


def _slowfast_alpha(model: nn.Module) -> int | None:
    """The fast-to-slow frame ratio of a SlowFast network (None for one pathway)."""
    from pytorchvideo.models.slowfast import FuseFastToSlow

    for module in model.modules():
        if isinstance(module, FuseFastToSlow):
            return int(module.conv_fast_to_slow.stride[0])
    return None


@register_backbone_family(HUB_PREFIX, hub_names)
def create_pytorchvideo_hub(name: str, **kwargs: Any) -> BackboneWrapper:
    """Build ``pytorchvideo.models.hub.<name>`` (random init) as a backbone.

    Args:
        name: a hub builder, one of :func:`hub_names`.
        **kwargs: the builder's keyword arguments (passed through); ``pretrained`` may
            only be False and ``progress`` is ignored.

    Returns:
        The backbone (``(B, C, T, H, W) -> (B, D)``, attribute ``feature_dim``); a
        :class:`TwoPathwayBackbone` for SlowFast networks.

    Raises:
        ValueError: for an unknown or detection name, ``pretrained=True`` (nothing is
            downloaded), or keyword arguments the builder refuses.
    """
    if kwargs.pop("pretrained", False):
        raise ValueError(
            f"{HUB_PREFIX}:{name}: pretrained=True would download weights, which "
            "dsm-lightning never does; build it with random init and load a local file: "
            f"load_backbone_weights(create_backbone('{HUB_PREFIX}:{name}'), path)"
        )
    kwargs.pop("progress", None)
    names = hub_names()
    if name not in names:
        why = " (a detection network: it needs boxes)" if name.endswith("_detection") else ""
        raise ValueError(
            f"unknown pytorchvideo hub builder {name!r}{why}; available: {', '.join(names)}"
        )
    try:
        model = getattr(_hub(), name)(pretrained=False, **kwargs)
    except TypeError as error:  # an argument the builder does not take or already sets
        raise ValueError(f"{HUB_PREFIX}:{name}: {error}") from error
    feature_dim = strip_pytorchvideo_head(model)
    alpha = _slowfast_alpha(model)
    if alpha is not None:
        return TwoPathwayBackbone(model, feature_dim, alpha)
    return BackboneWrapper(model, feature_dim=feature_dim)


# ----------------------------------------------------------------------------------------
# Named presets: the hub builder of the same name, with the package's keyword names
# ----------------------------------------------------------------------------------------


def _preset(name: str, overrides: dict[str, Any], **named: Any) -> BackboneWrapper:
    """``create_pytorchvideo_hub(name, **named, **overrides)``, each hub argument given once."""
    twice = sorted(set(named) & set(overrides))
    if twice:
        raise ValueError(f"{name}: {', '.join(twice)} is set from the preset's own arguments "
                         f"(see help({name})); give it through them")
    return create_pytorchvideo_hub(name, **named, **overrides)


@register_backbone("slow_r50")
def slow_r50(*, width: int = 64, in_channels: int = 3, **overrides: Any) -> BackboneWrapper:
    """pytorchvideo Slow-only ResNet-50 (``pytorchvideo:slow_r50``), ``feature_dim = 32 * width``.

    Args:
        width: stem channels (``stem_dim_out``; 64 in Slow-R50, stage widths scale with it).
        in_channels: input channels (``input_channel``).
        **overrides: further arguments of the hub builder (``create_resnet``'s).
    """
    return _preset("slow_r50", overrides, stem_dim_out=width, input_channel=in_channels)


@register_backbone("i3d_r50")
def i3d_r50(
    *, depth: int = 50, width: int = 64, in_channels: int = 3, **overrides: Any
) -> BackboneWrapper:
    """pytorchvideo I3D-R50 (``pytorchvideo:i3d_r50``), ``feature_dim = 32 * width`` (2048).

    A 5x7x7 stem, a temporal max pool after stage 1 and inflated 3x1x1 convolutions: a 3D
    ResNet-50 ("I3D" in the sense of inflated 2D weights), not the Inception-v1 I3D that the
    DSM paper's public code trains (``i3d_inception``).

    Args:
        depth: 50, 101 or 152 (``model_depth``).
        width: stem channels (``stem_dim_out``; stage widths scale with it).
        in_channels: input channels (``input_channel``).
        **overrides: further arguments of the hub builder (``create_resnet``'s).
    """
    return _preset("i3d_r50", overrides, model_depth=depth, stem_dim_out=width,
                   input_channel=in_channels)


@register_backbone("r2plus1d_r50")
def r2plus1d_r50(
    *, depth: int = 50, width: int = 64, in_channels: int = 3, **overrides: Any
) -> BackboneWrapper:
    """pytorchvideo R(2+1)D-50 (``pytorchvideo:r2plus1d_r50``), ``feature_dim = 32 * width``.

    Args:
        depth: 50, 101 or 152 (``model_depth``).
        width: stem channels (``stem_dim_out``).
        in_channels: input channels (``input_channel``).
        **overrides: further arguments of the hub builder (``create_r2plus1d``'s).
    """
    return _preset("r2plus1d_r50", overrides, model_depth=depth, stem_dim_out=width,
                   input_channel=in_channels)


@register_backbone("csn_r101")
def csn_r101(*, width: int = 64, in_channels: int = 3, **overrides: Any) -> BackboneWrapper:
    """pytorchvideo channel-separated ResNet-101 (``pytorchvideo:csn_r101``), ``feature_dim =
    32 * width``; a max pool follows the stem, as in the hub network.

    Args:
        width: stem channels (``stem_dim_out``).
        in_channels: input channels (``input_channel``).
        **overrides: further arguments of the hub builder (``create_csn``'s).
    """
    return _preset("csn_r101", overrides, stem_dim_out=width, input_channel=in_channels)


def _x3d(name: str, in_channels: int, width_factor: float, depth_factor: float,
         head_dim: int, overrides: dict[str, Any]) -> BackboneWrapper:
    return _preset(name, overrides, input_channel=in_channels, width_factor=width_factor,
                   depth_factor=depth_factor, head_dim_out=head_dim)


@register_backbone("x3d_xs")
def x3d_xs(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: Any,
) -> BackboneWrapper:
    """pytorchvideo X3D-XS (``pytorchvideo:x3d_xs``, 4x160), ``feature_dim = head_dim``.

    The head's fixed pool is replaced by a global one, so any clip size works.

    Args:
        in_channels: input channels (``input_channel``).
        width_factor: X3D channel expansion.
        depth_factor: X3D depth expansion.
        head_dim: output channels of the projected pool (``head_dim_out``; the feature
            dimension).
        **overrides: further arguments of the hub builder (``create_x3d``'s).
    """
    return _x3d("x3d_xs", in_channels, width_factor, depth_factor, head_dim, overrides)


@register_backbone("x3d_s")
def x3d_s(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: Any,
) -> BackboneWrapper:
    """pytorchvideo X3D-S (``pytorchvideo:x3d_s``, 13x160); arguments as :func:`x3d_xs`."""
    return _x3d("x3d_s", in_channels, width_factor, depth_factor, head_dim, overrides)


@register_backbone("x3d_m")
def x3d_m(
    *, in_channels: int = 3, width_factor: float = 2.0, depth_factor: float = 2.2,
    head_dim: int = 2048, **overrides: Any,
) -> BackboneWrapper:
    """pytorchvideo X3D-M (``pytorchvideo:x3d_m``, 16x224); arguments as :func:`x3d_xs`."""
    return _x3d("x3d_m", in_channels, width_factor, depth_factor, head_dim, overrides)
