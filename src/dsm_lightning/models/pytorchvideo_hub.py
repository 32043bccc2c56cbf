"""Any builder of ``pytorchvideo.models.hub`` as a backbone: ``"pytorchvideo:<name>"``.

``create_backbone("pytorchvideo:x3d_s")`` calls ``pytorchvideo.models.hub.x3d_s`` with
``pretrained=False`` and the given keyword arguments (the builder's own, e.g.
``model_depth``, ``stem_dim_out``, ``spatial_size``), removes the classification head
(:func:`~dsm_lightning.models.backbones.strip_pytorchvideo_head`) and wraps the network so
that it maps ``(B, C, T, H, W)`` to ``(B, D)``; ``D`` is the input size of the removed
projection. The names served are the hub's builders (:func:`hub_names`), read from the
installed pytorchvideo, minus the detection networks (they take boxes as a second input).

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

from dsm_lightning.models.backbones import BackboneWrapper, strip_pytorchvideo_head
from dsm_lightning.models.registry import register_backbone_family

__all__ = ["HUB_PREFIX", "TwoPathwayBackbone", "create_pytorchvideo_hub", "hub_names"]

HUB_PREFIX = "pytorchvideo"


def _hub() -> Any:
    import pytorchvideo.models.hub as hub

    return hub


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
