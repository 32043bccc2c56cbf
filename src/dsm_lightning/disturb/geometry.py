"""Geometry of the device-side augmentations: per-clip affine maps and sampling grids.

One affine map per clip (random resized crop, horizontal flip, small rotation), applied to
every frame of the clip by a single ``grid_sample``; a displacement field (a Spatial Local
Disturbance) can be composed with it so that a clip is interpolated once. Plain tensor code.
The settings' defaults live in ``ClipTransform`` (one declaration).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning.disturb.rng import rand_uniform

__all__ = ["identity_coords", "sample_affine", "sampling_grid"]


def sample_affine(
    batch: int,
    *,
    crop_scale: tuple[float, float],
    crop_ratio: tuple[float, float],
    flip_prob: float,
    rotation_degrees: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample per-clip random-resized-crop + flip + rotation affine maps.

    The crop covers a fraction ``U(crop_scale)`` of the (square) frame with aspect ratio
    log-uniform in ``crop_ratio``; a side that would exceed the frame is clipped to it (instead
    of torchvision's rejection loop). The crop rectangle is rotated by ``U(-deg, deg)`` about
    its centre; regions outside the frame read as zeros.

    Args:
        batch: number of clips B.
        crop_scale: (min, max) area fraction of the crop.
        crop_ratio: (min, max) aspect ratio width / height.
        flip_prob: probability of a horizontal flip.
        rotation_degrees: maximum absolute rotation in degrees.
        generator: random source.
        device: where the result lives.

    Returns:
        (B, 2, 3) float32 ``theta`` for ``F.affine_grid`` (output -> input coordinates).
    """
    u = rand_uniform((7, batch), generator=generator, device=device)
    area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * u[0]
    log_lo, log_hi = math.log(crop_ratio[0]), math.log(crop_ratio[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    half_w = torch.sqrt(area * ratio).clamp(max=1.0)
    half_h = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (2 * u[2] - 1) * (1 - half_w)
    centre_y = (2 * u[3] - 1) * (1 - half_h)
    flip = torch.where(u[4] < flip_prob, -1.0, 1.0)
    angle = math.radians(rotation_degrees) * (2 * u[5] - 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * half_w * flip, -sin * half_h, centre_x], dim=-1),
            torch.stack([sin * half_w * flip, cos * half_h, centre_y], dim=-1),
        ],
        dim=1,
    )
    return theta


def identity_coords(size: int, device: torch.device | str | None = None) -> Tensor:
    """Normalised pixel-centre coordinates of a square grid (``align_corners=False``).

    Args:
        size: side S in pixels.
        device: where the result lives.

    Returns:
        (S, S, 2) float32, last dim (x, y) in (-1, 1).
    """
    axis = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], dim=-1)


def sampling_grid(theta: Tensor, size: int, field: Tensor | None = None) -> Tensor:
    """Compose a displacement field (in output coordinates) with per-clip affine maps.

    The output pixel at ``p`` reads the input at ``theta @ (p + field(p))``: warping the
    augmented clip by ``field`` with a single interpolation.

    Args:
        theta: (B, 2, 3) affine maps.
        size: output side S.
        field: optional (B, S, S, 2) displacement in normalised output coordinates.

    Returns:
        (B, S, S, 2) float32 grid for ``F.grid_sample``.
    """
    theta = theta.float()
    if field is None:
        return F.affine_grid(theta, [theta.shape[0], 1, size, size], align_corners=False)
    coords = identity_coords(size, theta.device) + field.float()
    return torch.einsum("bhwj,bij->bhwi", coords, theta[:, :, :2]) + theta[:, None, None, :, 2]
