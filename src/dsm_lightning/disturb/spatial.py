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
  fall-off ``1 / (3 (d / |s|)^4 + 1)`` (the library's default), or exactly as the authors'
  released code (``direction="down_right"``, ``strength=0.5``, ``integer=True``, one field
  per batch: ``TripletBuilder.paper()``, docs/method-fidelity.md).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_choice
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


#: ``direction`` values of the point warps: any direction, or both components positive.
POINT_DIRECTIONS: tuple[str, ...] = ("any", "down_right")


def sample_point_field(
    batch: int,
    size: int,
    *,
    count: tuple[int, int] = (1, 3),
    shift: tuple[float, float] = (10.0, 20.0),
    reference_size: int = 112,
    region: float | tuple[float, float] = 0.5,
    direction: str = "any",
    strength: float = 1.0,
    integer: bool = False,
    shared: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample local point-warp fields, one per clip (or one for the whole batch).

    Each field gets ``n ~ U{count}`` points ``p`` uniform in ``region^2`` (normalised) and a
    shift ``s`` per point, in pixels of a ``reference_size`` frame:

    - ``direction="any"``: length ``U(shift)``, uniform direction; the fall-off is centred
      on ``c = p``.
    - ``direction="down_right"``: x and y components each ``U(shift)``, both positive (the
      content moves towards the bottom-right); the fall-off is centred on ``c = p + s`` and
      cut to the window ``[p - 3 s, p + 3 s)`` per axis. This is the public DSM code's
      ``spatial_wrap``.

    The sampling offset at pixel ``q`` is ``-strength * s / (3 (|q - c| / |s|)^4 + 1)``,
    summed over the points (peak displacement ``strength * |s|``); with ``integer`` it is
    truncated towards zero to whole pixels of the ``size`` output, as the public code's
    ``int()``.

    Args:
        batch: number of clips B.
        size: field side S.
        count: (min, max) number of points, inclusive.
        shift: (min, max) shift length (``"any"``) or component (``"down_right"``) in pixels
            of a ``reference_size`` frame.
        reference_size: frame side the pixel shifts refer to (shifts scale with the frame).
        region: points lie in ``[-region, region]^2``, or ``[lo, hi]^2`` for a pair
            (normalised coordinates, -1 = left/top edge, 1 = right/bottom edge).
        direction: ``"any"`` or ``"down_right"`` (see above).
        strength: peak displacement as a fraction of the shift (1 here, 0.5 in the public
            code).
        integer: truncate the offsets to whole output pixels.
        shared: one field for the whole batch (the public code draws one per batch) instead
            of one per clip.
        generator: random source (draws happen on its device).
        device: where the field lives.

    Returns:
        (B, S, S, 2) float32 displacement field (normalised coordinates).

    Raises:
        ValueError: unknown ``direction``.
    """
    check_choice("direction", direction, POINT_DIRECTIONS)
    lo, hi = (-region, region) if isinstance(region, (int, float)) else region
    draws = 1 if shared else batch
    max_count = count[1]
    u = rand_uniform((draws, max_count, 5), generator=generator, device=device)
    n = count[0] + (u[:, :1, 0] * (count[1] - count[0] + 1)).floor()  # (N, 1)
    active = torch.arange(max_count, device=u.device)[None] < n  # (N, K)
    point = lo + (hi - lo) * u[..., 1:3]  # (N, K, 2)
    to_norm = 2.0 / reference_size
    if direction == "any":
        length = (shift[0] + (shift[1] - shift[0]) * u[..., 3]) * to_norm
        angle = 2 * math.pi * u[..., 4]
        vec = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * length[..., None]
        centre = point
    else:
        vec = (shift[0] + (shift[1] - shift[0]) * u[..., 3:5]) * to_norm
        length = vec.norm(dim=-1)
        centre = point + vec
    coords = identity_coords(size, u.device).view(1, 1, -1, 2)
    dist = (coords - centre[:, :, None]).norm(dim=-1)  # (N, K, S*S)
    falloff = strength / (3 * (dist / length[..., None].clamp_min(1e-8)) ** 4 + 1)
    falloff = falloff * active[..., None]
    if direction == "down_right":  # the public code only visits [p - 3 s, p + 3 s) per axis
        rel = (coords - point[:, :, None]) / vec[:, :, None].clamp_min(1e-8)
        falloff = falloff * ((rel >= -3) & (rel < 3)).all(dim=-1)
    field = -torch.einsum("bkp,bkj->bpj", falloff, vec).view(draws, size, size, 2)
    if integer:
        field = torch.trunc(field * (size / 2)) * (2 / size)
    return field.expand(batch, -1, -1, -1) if shared else field


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
    point_region: float | tuple[float, float] = 0.5,
    point_direction: str = "any",
    point_strength: float = 1.0,
    point_integer: bool = False,
    shared: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sample one SLD field per clip (or per batch), the kind chosen per clip (or batch).

    Every requested kind is sampled for the whole batch (fields are small: S*S*2 per clip)
    and one is selected per clip with probabilities ``probs``; a clip is left unwarped (zero
    field) with probability ``1 - prob``. With ``shared`` one field, one kind and one
    warp/no-warp draw serve the whole batch (the public DSM code: one field per batch).

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
        point_region: ``region`` of ``sample_point_field``.
        point_direction: ``direction`` of ``sample_point_field``.
        point_strength: ``strength`` of ``sample_point_field``.
        point_integer: ``integer`` of ``sample_point_field``.
        shared: one field for the whole batch.
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
    draws = 1 if shared else batch
    fields = []
    for kind in kinds:  # at most two kinds, each batched over the clips
        if kind == "tps":
            fields.append(
                sample_tps_field(
                    draws, size, grid=tps_grid, jitter=tps_jitter, generator=generator,
                    device=device,
                )
            )
        else:
            fields.append(
                sample_point_field(
                    draws, size, count=point_count, shift=point_shift,
                    reference_size=reference_size, region=point_region,
                    direction=point_direction, strength=point_strength,
                    integer=point_integer, generator=generator, device=device,
                )
            )
    u = rand_uniform((2, draws), generator=generator, device=device)
    choice = choose(weights, u[0])
    field = torch.stack(fields, dim=1)[torch.arange(draws, device=choice.device), choice]
    field = field * (u[1] < prob).to(field.dtype)[:, None, None, None]
    return field.expand(batch, -1, -1, -1) if shared else field


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
