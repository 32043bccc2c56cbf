"""A small 3D CNN for tests and CPU demos, registered as ``"tiny3d"``."""

from __future__ import annotations

from torch import Tensor, nn

from dsm_lightning._checks import check_int
from dsm_lightning.models._layers import conv_norm_relu
from dsm_lightning.models.registry import register_backbone
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = ["Tiny3D", "tiny3d"]


class Tiny3D(nn.Module):
    """A 4-layer 3D CNN (conv-norm-ReLU) for tests and CPU demos.

    Channels ``width, 2 width, 4 width, 8 width``; the first layer keeps time and halves
    space, the next three halve both (time stride 1 when ``temporal_stride`` is False).

    Args:
        in_channels: input channels ``C``.
        width: channels of the first layer.
        norm: ``"batch"``, ``"group"`` or ``"none"``.
        temporal_stride: downsample time in layers 2-4.

    Raises:
        ValueError: ``width`` or ``in_channels`` below 1, or an unknown ``norm``.
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
        check_int("width", width)
        check_int("in_channels", in_channels)
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        t = 2 if temporal_stride else 1
        strides = [(1, 2, 2), (t, 2, 2), (t, 2, 2), (t, 2, 2)]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            layers += conv_norm_relu(c_in, c_out, norm, stride)
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
