"""C3D (Tran et al. 2015) as used in the DSM paper, registered as ``"c3d"``."""

from __future__ import annotations

from torch import Tensor, nn

from dsm_lightning._checks import check_int
from dsm_lightning.models._layers import conv_norm_relu
from dsm_lightning.models.registry import register_backbone
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = ["C3D", "c3d"]


def _pool(kernel: tuple[int, int, int]) -> nn.Module:
    return nn.MaxPool3d(kernel, stride=kernel, ceil_mode=True)


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

    Raises:
        ValueError: ``width`` or ``in_channels`` below 1, or an unknown ``norm``.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        w = check_int("width", width)
        check_int("in_channels", in_channels)
        self.features = nn.Sequential(
            *conv_norm_relu(in_channels, w, norm),
            _pool((1, 2, 2)),
            *conv_norm_relu(w, 2 * w, norm),
            _pool((2, 2, 2)),
            *conv_norm_relu(2 * w, 4 * w, norm),
            *conv_norm_relu(4 * w, 4 * w, norm),
            _pool((2, 2, 2)),
            *conv_norm_relu(4 * w, 8 * w, norm),
            *conv_norm_relu(8 * w, 8 * w, norm),
            _pool((2, 2, 2)),
            *conv_norm_relu(8 * w, 8 * w, norm),
            *conv_norm_relu(8 * w, 8 * w, norm),
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
