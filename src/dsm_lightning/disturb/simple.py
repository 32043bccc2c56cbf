"""The simple augmentation of clips, applied: one draw per clip, one interpolation.

``SimpleAugParams`` is one draw per clip (drawn by ``ClipTransform.sample``: an affine map
from ``geometry.sample_affine`` and a colour map from ``colour.sample_color``);
``augment_clips`` applies it to N clips per sample at once (e.g. an anchor and its shifted
negative share the scene transform), optionally composed with a displacement field, then
normalises. Geometry is one ``grid_sample`` over all frames (frames and channels folded
together); colour jitter, grayscale and normalisation are one batched matrix product. No
Python loop over samples, frames or pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning.disturb.colour import LUMA
from dsm_lightning.disturb.geometry import sampling_grid
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD, to_float

__all__ = ["SimpleAugParams", "augment_clips"]


class SimpleAugParams(NamedTuple):
    """One simple-augmentation draw per clip.

    Attributes:
        theta: (B, 2, 3) affine maps from output to input normalised coordinates
            (``grid_sample`` convention, ``align_corners=False``): crop, flip and rotation.
        color_matrix: (B, 3, 3) linear colour map on RGB in [0, 1] (brightness, contrast
            factor, saturation, hue rotation, grayscale).
        color_shift: (B,) contrast offset coefficient: the map adds
            ``color_shift * gray_mean`` to every channel, where ``gray_mean`` is the mean luma
            of the (cropped) clip.
    """

    theta: Tensor
    color_matrix: Tensor
    color_shift: Tensor


def augment_clips(
    clips: Tensor,
    params: SimpleAugParams,
    size: int,
    *,
    mean: tuple[float, float, float] = KINETICS_MEAN,
    std: tuple[float, float, float] = KINETICS_STD,
    field: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Apply one simple-augmentation draw per sample to N clips per sample, then normalise.

    All N clips of a sample share its draw (geometry and colour map, including the contrast
    reference: the mean luma of clip 0), so e.g. an anchor and its shifted negative get the
    same scene transform. Sampling and colour maths run in float32 (bfloat16 coordinates would
    be off by up to half a pixel); the result is cast to ``dtype``.

    Args:
        clips: (B, N, C=3, T, H, W) uint8 in [0, 255] or float in [0, 1], any device.
        params: draw from ``sample_simple_params`` (B samples, same device).
        size: output side S.
        mean: per-channel normalisation mean (on [0, 1] values).
        std: per-channel normalisation std.
        field: optional (B, S, S, 2) displacement field composed with the crop (positive).
        dtype: output dtype.

    Returns:
        (B, N, C, T, S, S) normalised tensor of ``dtype``.

    Raises:
        ValueError: if the input is not 6-D with 3 channels or has an unsupported dtype.
    """
    if clips.dim() != 6 or clips.shape[2] != 3:
        raise ValueError(f"clips must be (B, N, 3, T, H, W), got shape={tuple(clips.shape)}")
    b, n, c, t, h, w = clips.shape
    x, scale = to_float(clips.reshape(b, n * c * t, h, w), channels_last=True)
    grid = sampling_grid(params.theta.to(x.device), size, field)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = y.reshape(b * n, c, t * size * size)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device)
    luma = torch.tensor(LUMA, device=x.device)
    gray_mean = (y.view(b, n, c, -1)[:, 0].mean(-1) @ luma) * scale  # (B,) in [0, 1]
    matrix = params.color_matrix.to(x.device) * scale / std_t[:, None]
    shift = (params.color_shift.to(x.device) * gray_mean)[:, None]
    bias = (shift - mean_t) / std_t  # (B, 3)
    bias = bias.repeat_interleave(n, dim=0)[:, :, None]
    out = torch.baddbmm(bias, matrix.repeat_interleave(n, dim=0), y)  # bias added in the GEMM
    for channel in range(c):  # three channels: scalar clip bounds are much faster
        low, high = -mean[channel] / std[channel], (1 - mean[channel]) / std[channel]
        out[:, channel].clamp_(low, high)
    return out.view(b, n, c, t, size, size).to(dtype)
