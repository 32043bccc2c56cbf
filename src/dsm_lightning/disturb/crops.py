"""Deterministic evaluation crops of clips (centre, three along the long side, five)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_choice
from dsm_lightning.normalization import to_float

__all__ = ["EVAL_CROPS", "spatial_crops"]

#: ``n_crops`` values of the evaluation crops.
EVAL_CROPS: tuple[int, ...] = (1, 3, 5)


def spatial_crops(video: Tensor, size: int, n_crops: int = 1) -> Tensor:
    """Deterministic evaluation crops of side ``size`` (no interpolation when possible).

    Frames whose short side is below ``size`` are first resized (bilinear) so the short side
    equals ``size``. ``n_crops=1``: centre; ``3``: left, centre, right along the long side
    (width for square frames), vertically centred; ``5``: four corners then centre.

    Args:
        video: (B, C, T, H, W) uint8 or float.
        size: crop side S.
        n_crops: 1, 3 or 5.

    Returns:
        (B, n_crops, C, T, S, S), same dtype as the input (float32 in [0, 1] if it was
        resized).

    Raises:
        ValueError: if ``n_crops`` is not 1, 3 or 5.
    """
    check_choice("n_crops", n_crops, EVAL_CROPS)
    b, c, t, h, w = video.shape
    if min(h, w) < size:
        x, scale = to_float(video)
        new_h, new_w = (size, round(w * size / h)) if h <= w else (round(h * size / w), size)
        x = F.interpolate(
            x.reshape(b, c * t, h, w), size=(new_h, new_w), mode="bilinear", align_corners=False
        )
        x = (x * scale).clamp_(0.0, 1.0)
        video, h, w = x.view(b, c, t, new_h, new_w), new_h, new_w
    top, left = (h - size) // 2, (w - size) // 2
    if n_crops == 1:
        offsets = [(top, left)]
    elif n_crops == 3:
        if w >= h:
            offsets = [(top, 0), (top, left), (top, w - size)]
        else:
            offsets = [(0, left), (top, left), (h - size, left)]
    else:
        offsets = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = [video[..., y : y + size, x : x + size] for y, x in offsets]
    return torch.stack(crops, dim=1)
