"""Spatial Local Disturbance (SLD): smooth random warp fields shared by all frames of a clip.

A field is a dense displacement ``(B, S, S, 2)`` in normalised output coordinates
(``grid_sample`` convention, last dim (x, y), ``align_corners=False``): the warped clip at
pixel ``p`` reads the source at ``p + field(p)``. One field per clip, identical for all its
frames, so the frame-to-frame motion is kept while the appearance is deformed.

Each kind of field is a small frozen settings class, validated once at construction, whose
``sample(batch, size, generator, device)`` draws the fields (plain tensor code, batched):

- ``TPSWarp`` (thin-plate spline): a ``grid x grid`` control lattice over [-1, 1]^2 whose
  points are jittered by ``U(-jitter, jitter)``; the dense field is the TPS interpolant (one
  batched matrix product with a cached basis).
- ``PointWarp`` (local point warps): 1-3 centres, each pushing the content near it by a
  shift ``s`` of 10-20 px (relative to a 112-px frame, so it scales with the frame) with the
  fall-off ``1 / (3 (d / |s|)^4 + 1)`` (the library's default), or exactly as the authors'
  released code (``direction="down_right"``, ``strength=0.5``, ``integer=True``, one field
  per batch: ``TripletBuilder.paper()``, docs/method-fidelity.md).

``SpatialDisturbance`` chooses a kind per clip (or per batch) among the registered ones
(``register_spatial_kind``: ``"tps"``, ``"points"`` and any a user adds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_choice, check_fraction, check_int, check_pair
from dsm_lightning.disturb.geometry import identity_coords
from dsm_lightning.disturb.rng import choose, rand_uniform, selection_weights
from dsm_lightning.registry import Registry

__all__ = [
    "POINT_DIRECTIONS", "SPATIAL_KINDS", "FieldSampler", "PointWarp", "SpatialDisturbance",
    "TPSWarp", "register_spatial_kind", "sample_disturbance_field", "sample_point_field",
    "sample_tps_field", "spatial_kinds", "warp",
]

#: The built-in kinds (see :func:`spatial_kinds` for every registered one).
SPATIAL_KINDS: tuple[str, ...] = ("tps", "points")
#: ``direction`` values of the point warps: any direction, or both components positive.
POINT_DIRECTIONS: tuple[str, ...] = ("any", "down_right")


class FieldSampler(Protocol):
    """What a spatial kind is: settings with ``sample(batch, size, generator, device)``."""

    def sample(self, batch: int, size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """(B, S, S, 2) float32 displacement fields, one per clip."""
        ...


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


@dataclass(frozen=True)
class TPSWarp:
    """Thin-plate-spline warp settings (validated at construction).

    Attributes:
        grid: control points per side (>= 2), evenly spread over [-1, 1].
        jitter: control points move by ``U(-jitter, jitter)`` in x and y (normalised units,
            1 = half the frame), in [0, 1].
    """

    grid: int = 5
    jitter: float = 0.1

    def __post_init__(self) -> None:
        check_int("tps_grid", self.grid, 2)
        object.__setattr__(self, "jitter", check_fraction("tps_jitter", self.jitter))

    def sample(self, batch: int, size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """(B, S, S, 2) float32 TPS displacement fields, one per clip (draws on the
        generator's device)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        offsets = rand_uniform((batch, self.grid * self.grid, 2), -self.jitter, self.jitter,
                               generator=generator, device=device)
        return (_tps_basis(size, self.grid, device) @ offsets).view(batch, size, size, 2)


def sample_tps_field(batch: int, size: int, warp: TPSWarp | None = None, *,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> Tensor:
    """Thin-plate-spline warp fields, one per clip (``TPSWarp().sample`` by default).

    Returns:
        (B, S, S, 2) float32 displacement field.
    """
    return (warp or TPSWarp()).sample(batch, size, generator, device)


@dataclass(frozen=True)
class PointWarp:
    """Local point-warp settings (validated at construction).

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
    truncated towards zero to whole pixels of the output, as the public code's ``int()``.

    Attributes:
        count: (min, max) number of points, inclusive, 1 <= min <= max <= 16.
        shift: (min, max) shift length (``"any"``) or component (``"down_right"``) in pixels
            of a ``reference_size`` frame.
        region: points lie in ``[lo, hi]^2`` (normalised, -1 = left/top edge, 1 =
            right/bottom edge); a number ``r`` means ``(-r, r)``.
        direction: ``"any"`` or ``"down_right"``.
        strength: peak displacement as a fraction of the shift, in (0, 1] (0.5 in the public
            code).
        integer: truncate the offsets to whole output pixels.
        reference_size: frame side the pixel shifts refer to (shifts scale with the frame).
    """

    count: tuple[int, int] = (1, 3)
    shift: tuple[float, float] = (10.0, 20.0)
    region: tuple[float, float] = (-0.5, 0.5)
    direction: str = "any"
    strength: float = 1.0
    integer: bool = False
    reference_size: int = 112

    def __post_init__(self) -> None:
        count = tuple(self.count)
        if len(count) != 2 or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in count) or not (
                1 <= count[0] <= count[1] <= 16):
            raise ValueError(f"point_count must be ints (min, max) with 1 <= min <= max <= 16, "
                             f"got point_count={self.count}")
        region = self.region
        if isinstance(region, (int, float)) and not isinstance(region, bool):
            region = (-float(region), float(region))
        check_choice("point_direction", self.direction, POINT_DIRECTIONS)
        check_int("reference_size", self.reference_size)
        for name, value in (("count", count),
                            ("shift", check_pair("point_shift", self.shift, 0.0, 112.0)),
                            ("region", check_pair("point_region", region, -1.0, 1.0)),
                            ("strength", check_fraction("point_strength", self.strength,
                                                        open_low=True)),
                            ("integer", bool(self.integer))):
            object.__setattr__(self, name, value)

    def sample(self, batch: int, size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, shared: bool = False) -> Tensor:
        """(B, S, S, 2) float32 point-warp fields, one per clip (one for the whole batch
        with ``shared``, expanded), in normalised coordinates."""
        lo, hi = self.region
        shift = self.shift
        draws = 1 if shared else batch
        max_count = self.count[1]
        u = rand_uniform((draws, max_count, 5), generator=generator, device=device)
        n = self.count[0] + (u[:, :1, 0] * (self.count[1] - self.count[0] + 1)).floor()
        active = torch.arange(max_count, device=u.device)[None] < n  # (N, K)
        point = lo + (hi - lo) * u[..., 1:3]  # (N, K, 2)
        to_norm = 2.0 / self.reference_size
        if self.direction == "any":
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
        falloff = self.strength / (3 * (dist / length[..., None].clamp_min(1e-8)) ** 4 + 1)
        falloff = falloff * active[..., None]
        if self.direction == "down_right":  # the public code visits [p - 3 s, p + 3 s) only
            rel = (coords - point[:, :, None]) / vec[:, :, None].clamp_min(1e-8)
            falloff = falloff * ((rel >= -3) & (rel < 3)).all(dim=-1)
        out = -torch.einsum("bkp,bkj->bpj", falloff, vec).view(draws, size, size, 2)
        if self.integer:
            out = torch.trunc(out * (size / 2)) * (2 / size)
        return out.expand(batch, -1, -1, -1) if shared else out


def sample_point_field(batch: int, size: int, warp: PointWarp | None = None, *,
                       shared: bool = False, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
    """Local point-warp fields, one per clip or one per batch (``PointWarp().sample`` by
    default).

    Returns:
        (B, S, S, 2) float32 displacement field.
    """
    return (warp or PointWarp()).sample(batch, size, generator, device, shared=shared)


_SPATIAL: Registry[type] = Registry("spatial kind")
_SPATIAL.register("tps", TPSWarp)
_SPATIAL.register("points", PointWarp)


def register_spatial_kind(name: str, sampler: type | None = None, *,
                          overwrite: bool = False) -> type | Callable[[type], type]:
    """Make a warp kind available by name in ``spatial_kinds`` (e.g. of ``TripletBuilder``);
    usable as a decorator. A taken name follows the package's one rule (``registry``).

    Args:
        name: the kind's name.
        sampler: a class building, with no argument, settings whose ``sample(batch, size,
            generator, device)`` returns (B, S, S, 2) fields (see ``FieldSampler``); omitted
            when used as ``@register_spatial_kind("name")``.
        overwrite: replace another kind registered under ``name``.

    Returns:
        ``sampler`` (or the decorator).

    Raises:
        ValueError: the name is taken by another definition (without ``overwrite``).
    """
    return _SPATIAL.register(name, sampler, overwrite=overwrite)


def spatial_kinds() -> tuple[str, ...]:
    """Every registered spatial kind, built-ins first."""
    return tuple(_SPATIAL.names())


@dataclass(frozen=True)
class SpatialDisturbance:
    """Which warp each clip's positive gets: a kind per clip (or per batch), or none.

    Every requested kind is sampled for the whole batch (fields are small: S*S*2 per clip)
    and one is selected per clip with probabilities ``probs``; a clip is left unwarped (zero
    field) with probability ``1 - prob``. With ``shared`` one field, one kind and one
    warp/no-warp draw serve the whole batch (the public DSM code: one field per batch).

    Attributes:
        kinds: registered kind names (``spatial_kinds()``), distinct.
        probs: selection probabilities per kind (normalised); None = uniform.
        prob: probability that a clip is warped at all.
        tps: the ``"tps"`` kind's settings.
        points: the ``"points"`` kind's settings.
        shared: one field for the whole batch.
    """

    kinds: tuple[str, ...] = SPATIAL_KINDS
    probs: tuple[float, ...] | None = None
    prob: float = 1.0
    tps: TPSWarp = field(default_factory=TPSWarp)
    points: PointWarp = field(default_factory=PointWarp)
    shared: bool = False

    def __post_init__(self) -> None:
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        known = spatial_kinds()
        if any(k not in known for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(f"spatial_kinds must be distinct names from {known}, got "
                             f"spatial_kinds={self.kinds}")
        prob = check_fraction("spatial_prob", self.prob)
        if prob > 0 and not kinds:
            raise ValueError("spatial_kinds must not be empty when spatial_prob > 0")
        probs = selection_weights(kinds, self.probs, "spatial_probs") if kinds else None
        for name, value in (("kinds", kinds), ("prob", prob), ("probs", probs)):
            object.__setattr__(self, name, value)

    def sampler(self, kind: str) -> FieldSampler:
        """The settings of ``kind``: this disturbance's ``tps`` / ``points``, else the
        registered class's defaults."""
        return {"tps": self.tps, "points": self.points}.get(kind) or _SPATIAL.get(kind)()

    def sample(self, batch: int, size: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """(B, S, S, 2) float32 fields, zeros for clips left unwarped."""
        if self.prob == 0:
            return torch.zeros(batch, size, size, 2, device=device)
        draws = 1 if self.shared else batch
        fields = [self.sampler(kind).sample(draws, size, generator, device)
                  for kind in self.kinds]  # a few kinds, each batched over the clips
        u = rand_uniform((2, draws), generator=generator, device=device)
        pick = choose(self.probs, u[0])
        out = torch.stack(fields, dim=1)[torch.arange(draws, device=pick.device), pick]
        out = out * (u[1] < self.prob).to(out.dtype)[:, None, None, None]
        return out.expand(batch, -1, -1, -1) if self.shared else out


def sample_disturbance_field(batch: int, size: int, disturbance: SpatialDisturbance | None = None,
                             *, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None) -> Tensor:
    """One SLD field per clip (or per batch): ``SpatialDisturbance().sample`` by default.

    Returns:
        (B, S, S, 2) float32 displacement field.
    """
    return (disturbance or SpatialDisturbance()).sample(batch, size, generator, device)


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
