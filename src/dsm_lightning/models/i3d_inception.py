"""The Inception-v1 I3D of the DSM paper's public code, registered as ``"i3d_inception"``.

I3D (Carreira and Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017) as written in
FingerRec/DSM-decoupling-scene-motion ``src/model/i3d.py`` (class ``I3D``, a port of the
TensorFlow model with TF "SAME" padding): the network behind the paper's headline
UCF101 / HMDB51 numbers (``--arch i3d`` in every public script). A 7x7x7 stem with
stride 2, two convolutions, nine Inception ("Mixed") blocks and max pools; 1024 output
channels. The public code's unused extras (inpainting modules, motion-enhance module,
binary classifier) and its heads are left out.

Not pytorchvideo's ``i3d_r50``, which is an inflated 3D ResNet-50 (2048 channels).
Module names follow the public file, so its weights (without the ``module.`` prefix of
``DataParallel``) load into ``backbone.model``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning.models.registry import register_backbone
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = ["InceptionI3D", "same_padding"]

Triple = tuple[int, int, int]

#: (input channels, branch widths) of every Inception block, in order
MIXED: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(kernel: Triple, stride: Triple) -> tuple[int, int, int, int, int, int]:
    """TensorFlow "SAME" padding of a (T, H, W) window, in ``F.pad`` order.

    Each dimension is padded by ``max(k - s, 0)``, the smaller half first.

    Args:
        kernel: window size ``(k_t, k_h, k_w)``.
        stride: stride ``(s_t, s_h, s_w)``.

    Returns:
        ``(w_left, w_right, h_top, h_bottom, t_front, t_back)``.
    """
    pads: list[int] = []
    for k, s in reversed(list(zip(kernel, stride))):
        total = max(k - s, 0)
        pads += [total // 2, total - total // 2]
    return (pads[0], pads[1], pads[2], pads[3], pads[4], pads[5])


class Unit3D(nn.Module):
    """Convolution (no bias) with TF "SAME" padding, BatchNorm and ReLU.

    Symmetric padding goes into the convolution; asymmetric padding (a stride-2 stem) is
    applied first with zeros, as in the public code.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: ``(k_t, k_h, k_w)``.
        stride: ``(s_t, s_h, s_w)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
    ) -> None:
        super().__init__()
        pads = same_padding(kernel_size, stride)
        symmetric = pads[0::2] == pads[1::2]
        self.pad: tuple[int, ...] | None = None if symmetric else pads
        padding = (pads[4], pads[2], pads[0]) if symmetric else 0
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=padding, bias=False)
        self.batch3d = nn.BatchNorm3d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return F.relu(self.batch3d(self.conv3d(x)))


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" zero padding and ``ceil_mode`` (inputs are post-ReLU).

    Args:
        kernel_size: ``(k_t, k_h, k_w)``.
        stride: ``(s_t, s_h, s_w)``.
    """

    def __init__(self, kernel_size: Triple, stride: Triple) -> None:
        super().__init__()
        self.pad = same_padding(kernel_size, stride)
        self.pool = nn.MaxPool3d(kernel_size, stride, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, C, T', H', W')``."""
        return self.pool(F.pad(x, self.pad))


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | max pool -> 1x1, concatenated.

    Args:
        in_channels: input channels.
        widths: ``(b0, b1a, b1b, b2a, b2b, b3)``; output channels ``b0 + b1b + b2b + b3``.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch_0 = Unit3D(in_channels, b0)
        self.branch_1 = nn.Sequential(Unit3D(in_channels, b1a), Unit3D(b1a, b1b, (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(in_channels, b2a), Unit3D(b2a, b2b, (3, 3, 3)))
        self.branch_3 = nn.Sequential(
            MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, b3)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T, H, W)``."""
        branches = (self.branch_0, self.branch_1, self.branch_2, self.branch_3)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionI3D(nn.Module):
    """Inception-v1 I3D trunk up to ``mixed_5c`` (1024 channels, stride 8 in time, 32 in space).

    Args:
        in_channels: input channels (3 for RGB, 2 for optical flow).
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(64, 64)
        self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.mixed_3b = Mixed(*MIXED["mixed_3b"])
        self.mixed_3c = Mixed(*MIXED["mixed_3c"])
        self.maxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.mixed_4b = Mixed(*MIXED["mixed_4b"])
        self.mixed_4c = Mixed(*MIXED["mixed_4c"])
        self.mixed_4d = Mixed(*MIXED["mixed_4d"])
        self.mixed_4e = Mixed(*MIXED["mixed_4e"])
        self.mixed_4f = Mixed(*MIXED["mixed_4f"])
        self.maxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.mixed_5b = Mixed(*MIXED["mixed_5b"])
        self.mixed_5c = Mixed(*MIXED["mixed_5c"])
        self.out_channels = 1024

    def forward(self, video: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 1024, T', H', W')``."""
        x = video
        for layer in self.children():  # in the order assigned above
            x = layer(x)
        return x


@register_backbone("i3d_inception")
def i3d_inception(*, in_channels: int = 3) -> BackboneWrapper:
    """Inception-v1 I3D of the DSM public code (see :class:`InceptionI3D`), ``feature_dim = 1024``.

    Args:
        in_channels: input channels (3 for RGB, 2 for optical flow).
    """
    model = InceptionI3D(in_channels=in_channels)
    return BackboneWrapper(model, feature_dim=model.out_channels)
