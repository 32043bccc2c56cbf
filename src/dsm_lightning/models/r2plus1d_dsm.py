"""The R(2+1)D of the DSM paper's public code, registered as ``"r2plus1d_dsm"``.

FingerRec/DSM-decoupling-scene-motion ``src/model/r2p1d.py`` (``R2Plus1DNet``, the
widely copied R(2+1)D of irhum/R2Plus1D-PyTorch) built as ``R2Plus1DNet((1, 1, 1, 1))``
by ``src/model/config.py``: an R(2+1)D-10. It differs from torchvision's
``r2plus1d_18`` with ``layers=(1, 1, 1, 1)`` in three places:

- every factorised convolution, the stem included, uses the intermediate width of Tran et
  al. (2018), ``M = floor(t k^2 C_in C_out / (k^2 C_in + t C_out))`` (torchvision's stem
  fixes 45), and the stem is a 3x7x7 convolution factorised into 1x7x7 and 3x1x1;
- the shortcut of a downsampling block is itself a factorised 1x1x1 convolution (spatial
  then temporal, with BatchNorm and ReLU in between);
- the temporal and spatial strides of a downsampling block are both 2.

Module names follow the public file, so its weights (without the ``module.`` prefix of
``DataParallel``) load into ``backbone.model``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dsm_lightning.models.registry import register_backbone
from dsm_lightning.models.wrappers import BackboneWrapper

__all__ = ["R2Plus1DNet", "SpatioTemporalConv"]

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = (int(v) for v in value)
    return (t, h, w)


class SpatioTemporalConv(nn.Module):
    """A 3D convolution factorised into a spatial (1 x k x k) and a temporal (t x 1 x 1) one.

    ``spatial_conv`` -> BatchNorm -> ReLU -> ``temporal_conv``; the intermediate width is
    ``floor(t k_h k_w C_in C_out / (k_h k_w C_in + t C_out))``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: ``(t, k_h, k_w)`` or one int.
        stride: ``(s_t, s_h, s_w)`` or one int.
        padding: ``(p_t, p_h, p_w)`` or one int.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = (
            _triple(kernel_size), _triple(stride), _triple(padding)
        )
        mid = (kt * kh * kw * in_channels * out_channels) // (
            kh * kw * in_channels + kt * out_channels
        )
        self.spatial_conv = nn.Conv3d(
            in_channels, mid, (1, kh, kw), stride=(1, sh, sw), padding=(0, ph, pw), bias=False
        )
        self.bn = nn.BatchNorm3d(mid)
        self.relu = nn.ReLU()
        self.temporal_conv = nn.Conv3d(
            mid, out_channels, (kt, 1, 1), stride=(st, 1, 1), padding=(pt, 0, 0), bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        return self.temporal_conv(self.relu(self.bn(self.spatial_conv(x))))


class SpatioTemporalResBlock(nn.Module):
    """Residual block of two 3x3x3 factorised convolutions (stride 2 when downsampling).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        downsample: halve time and space; the shortcut is a factorised 1x1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False) -> None:
        super().__init__()
        self.downsample = downsample
        stride = 2 if downsample else 1
        if downsample:
            self.downsampleconv = SpatioTemporalConv(in_channels, out_channels, 1, stride=2)
            self.downsamplebn = nn.BatchNorm3d(out_channels)
        self.conv1 = SpatioTemporalConv(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = SpatioTemporalConv(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.outrelu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        res = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.downsample:
            x = self.downsamplebn(self.downsampleconv(x))
        return self.outrelu(x + res)


class SpatioTemporalResLayer(nn.Module):
    """``layer_size`` residual blocks; the first one may downsample.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        layer_size: number of blocks (>= 1).
        downsample: the first block halves time and space.
    """

    def __init__(
        self, in_channels: int, out_channels: int, layer_size: int, downsample: bool = False
    ) -> None:
        super().__init__()
        self.block1 = SpatioTemporalResBlock(in_channels, out_channels, downsample)
        self.blocks = nn.ModuleList(
            [SpatioTemporalResBlock(out_channels, out_channels) for _ in range(layer_size - 1)]
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        x = self.block1(x)
        for block in self.blocks:
            x = block(x)
        return x


class R2Plus1DNet(nn.Module):
    """The public DSM code's R(2+1)D feature extractor (no classifier, no projection head).

    Stem: a 3x7x7 factorised convolution (spatial stride 2) to 64 channels, BatchNorm,
    ReLU; then four residual layers of 64, 128, 256 and 512 channels, the last three
    halving time and space. Returns the feature map; :class:`BackboneWrapper` pools it.

    Args:
        layers: blocks per layer; ``(1, 1, 1, 1)`` (R(2+1)D-10) in every public script.
        in_channels: input channels.

    Raises:
        ValueError: ``layers`` is not four positive ints.
    """

    def __init__(self, layers: Sequence[int] = (1, 1, 1, 1), in_channels: int = 3) -> None:
        super().__init__()
        sizes = tuple(int(n) for n in layers)
        if len(sizes) != 4 or min(sizes) < 1:
            raise ValueError(f"layers must be 4 positive ints, got {layers!r}")
        self.conv1 = SpatioTemporalConv(in_channels, 64, (3, 7, 7), stride=(1, 2, 2),
                                        padding=(1, 3, 3))
        self.bn1 = nn.BatchNorm3d(64)
        self.relu1 = nn.ReLU()
        self.conv2 = SpatioTemporalResLayer(64, 64, sizes[0])
        self.conv3 = SpatioTemporalResLayer(64, 128, sizes[1], downsample=True)
        self.conv4 = SpatioTemporalResLayer(128, 256, sizes[2], downsample=True)
        self.conv5 = SpatioTemporalResLayer(256, 512, sizes[3], downsample=True)
        self.out_channels = 512

    def forward(self, video: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 512, T', H', W')``."""
        x = self.relu1(self.bn1(self.conv1(video)))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))


@register_backbone("r2plus1d_dsm")
def r2plus1d_dsm(
    *, layers: Sequence[int] = (1, 1, 1, 1), in_channels: int = 3
) -> BackboneWrapper:
    """The public DSM code's R(2+1)D-10 (see :class:`R2Plus1DNet`), ``feature_dim = 512``.

    Args:
        layers: blocks per layer (``(1, 1, 1, 1)`` as in the public code).
        in_channels: input channels.
    """
    model = R2Plus1DNet(layers=layers, in_channels=in_channels)
    return BackboneWrapper(model, feature_dim=model.out_channels)
