"""Spatial Local Disturbance (SLD): smooth random warp fields shared by all frames of a clip.

A field is a dense displacement ``(B, S, S, 2)`` in normalised output coordinates
(``grid_sample`` convention, last dim (x, y), ``align_corners=False``): the warped clip at
pixel ``p`` reads the source at ``p + field(p)``. One field per clip, identical for all its
frames, so the frame-to-frame motion is kept while the appearance is deformed.

- Thin-plate spline (``sample_tps_field``): a ``grid x grid`` control lattice over [-1, 1]^2
  whose points are jittered by ``U(-jitter, jitter)``; the dense field is the TPS interpolant
  (one batched matrix product with a cached basis).
- Local point warps (``sample_point_field``): 1-3 centres, each pushing the content near it by
  a shift ``s`` of 10-20 px (relative to a 112-px frame, so it scales with the frame) with the
  fall-off ``1 / (3 (d / |s|)^4 + 1)``; the variant of the authors' released code.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning.disturb.simple import choose, identity_coords, rand_uniform, selection_weights

SPATIAL_KINDS: tuple[str, ...] = ("tps", "points")


@functools.lru_cache(maxsize=16)
def _tps_basis(size: int, grid: int, device: torch.device) -> Tensor:
    """(S*S, grid*grid) matrix mapping control-point displacements to the dense TPS field."""
    axis = torch.linspace(-1.0, 1.0, grid, dtype=torch.float64)
    cy, cx = torch.meshgrid(axis, axis, indexing="ij")
    ctrl = torch.stack([cx.flatten(), cy.flatten()], dim=-1)  # (K, 2)
    k = ctrl.shape[0]

    def radial(points: Tensor) -> Tensor:
        r2 = torch.cdist(points, ctrl).square()
        return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-12)), torch.zeros_like(r2))

    def affine_part(points: Tensor) -> Tensor:
        return torch.cat([torch.ones(points.shape[0], 1, dtype=points.dtype), points], dim=1)

    system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
    system[:k, :k] = radial(ctrl)
    system[:k, k:] = affine_part(ctrl)
    system[k:, :k] = affine_part(ctrl).T
    inverse = torch.linalg.inv(system)
    dense = identity_coords(size).double().view(-1, 2)
    phi = torch.cat([radial(dense), affine_part(dense)], dim=1)  # (S*S, K + 3)
    return (phi @ inverse[:, :k]).float().to(device)


def sample_tps_field(
    batch: int,
    size: int,
    *,
    grid: int = 5,
    jitter: float = 0.1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample thin-plate-spline warp fields, one per clip.

    Args:
        batch: number of clips B.
        size: field side S (the output crop size).
        grid: control points per side (>= 2) evenly spread over [-1, 1].
        jitter: control points move by ``U(-jitter, jitter)`` (normalised units, 1 = half
            the frame) in x and y.
        generator: random source (draws happen on its device).
        device: where the field lives.

    Returns:
        (B, S, S, 2) float32 displacement field.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    offsets = rand_uniform(
        (batch, grid * grid, 2), -jitter, jitter, generator=generator, device=device
    )
    basis = _tps_basis(size, grid, device)
    return (basis @ offsets).view(batch, size, size, 2)


def sample_point_field(
    batch: int,
    size: int,
    *,
    count: tuple[int, int] = (1, 3),
    shift: tuple[float, float] = (10.0, 20.0),
    reference_size: int = 112,
    region: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample local point-warp fields, one per clip.

    Each clip gets ``n ~ U{count}`` centres uniform in ``[-region, region]^2`` (normalised),
    each with a shift vector of length ``U(shift)`` pixels of a ``reference_size`` frame and a
    uniform direction. The content near a centre ``c`` moves by ``s``; the sampling offset is
    ``-s / (3 (|p - c| / |s|)^4 + 1)``, summed over the centres.

    Args:
        batch: number of clips B.
        size: field side S.
        count: (min, max) number of centres, inclusive.
        shift: (min, max) shift length in pixels of a ``reference_size`` frame.
        reference_size: frame side the pixel shifts refer to (shifts scale with the frame).
        region: centres lie in ``[-region, region]^2`` (normalised coordinates).
        generator: random source (draws happen on its device).
        device: where the field lives.

    Returns:
        (B, S, S, 2) float32 displacement field.
    """
    max_count = count[1]
    u = rand_uniform((batch, max_count, 5), generator=generator, device=device)
    n = count[0] + (u[:, :1, 0] * (count[1] - count[0] + 1)).floor()  # (B, 1)
    active = torch.arange(max_count, device=u.device)[None] < n  # (B, K)
    centre = region * (2 * u[..., 1:3] - 1)  # (B, K, 2)
    length = (shift[0] + (shift[1] - shift[0]) * u[..., 3]) * 2.0 / reference_size
    angle = 2 * math.pi * u[..., 4]
    vec = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * length[..., None]
    coords = identity_coords(size, u.device).view(1, 1, -1, 2)
    dist = (coords - centre[:, :, None]).norm(dim=-1)  # (B, K, S*S)
    falloff = 1.0 / (3 * (dist / length[..., None].clamp_min(1e-8)) ** 4 + 1)
    falloff = falloff * active[..., None]
    field = -torch.einsum("bkp,bkj->bpj", falloff, vec)
    return field.view(batch, size, size, 2)


def sample_disturbance_field(
    batch: int,
    size: int,
    *,
    kinds: tuple[str, ...] = SPATIAL_KINDS,
    probs: tuple[float, ...] | None = None,
    prob: float = 1.0,
    tps_grid: int = 5,
    tps_jitter: float = 0.1,
    point_count: tuple[int, int] = (1, 3),
    point_shift: tuple[float, float] = (10.0, 20.0),
    reference_size: int = 112,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample one SLD field per clip, the kind chosen per clip.

    Every requested kind is sampled for the whole batch (fields are small: S*S*2 per clip)
    and one is selected per clip with probabilities ``probs``; a clip is left unwarped (zero
    field) with probability ``1 - prob``.

    Args:
        batch: number of clips B.
        size: field side S.
        kinds: subset of ``("tps", "points")``.
        probs: selection probabilities per kind (normalised); ``None`` = uniform.
        prob: probability that a clip is warped at all.
        tps_grid: see ``sample_tps_field``.
        tps_jitter: see ``sample_tps_field``.
        point_count: see ``sample_point_field``.
        point_shift: see ``sample_point_field``.
        reference_size: see ``sample_point_field``.
        generator: random source.
        device: where the field lives.

    Returns:
        (B, S, S, 2) float32 displacement field.

    Raises:
        ValueError: for an unknown kind or mismatched ``probs``.
    """
    unknown = [k for k in kinds if k not in SPATIAL_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {SPATIAL_KINDS}, got {kinds}")
    weights = selection_weights(kinds, probs, "probs")
    fields = []
    for kind in kinds:  # at most two kinds, each batched over the clips
        if kind == "tps":
            fields.append(
                sample_tps_field(
                    batch, size, grid=tps_grid, jitter=tps_jitter, generator=generator,
                    device=device,
                )
            )
        else:
            fields.append(
                sample_point_field(
                    batch, size, count=point_count, shift=point_shift,
                    reference_size=reference_size, generator=generator, device=device,
                )
            )
    u = rand_uniform((2, batch), generator=generator, device=device)
    choice = choose(weights, u[0])
    field = torch.stack(fields, dim=1)[torch.arange(batch, device=choice.device), choice]
    return field * (u[1] < prob).to(field.dtype)[:, None, None, None]


def warp(video: Tensor, field: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Warp every frame of each clip by its clip's field (one ``grid_sample`` for all frames).

    Args:
        video: (B, C, T, H, W) float (or uint8, returned as float32 in [0, 255]).
        field: (B, S, S, 2) displacement in normalised coordinates; the output is S x S.
        padding_mode: ``grid_sample`` padding ("zeros", "border", "reflection").

    Returns:
        (B, C, T, S, S) warped clip, float.
    """
    b, c, t, h, w = video.shape
    size = field.shape[1]
    x = video if video.is_floating_point() else video.float()
    grid = (identity_coords(size, x.device) + field.to(x.device).float()).to(x.dtype)
    out = F.grid_sample(
        x.reshape(b, c * t, h, w), grid, mode="bilinear", padding_mode=padding_mode,
        align_corners=False,
    )
    return out.view(b, c, t, size, size)
