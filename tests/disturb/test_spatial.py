"""Spatial Local Disturbance: fields and warping (dsm_lightning.disturb.spatial)."""

import pytest
import torch

from dsm_lightning.disturb.geometry import identity_coords
from dsm_lightning.disturb.spatial import (
    PointWarp,
    SpatialDisturbance,
    TPSWarp,
    _tps_basis,
    register_spatial_kind,
    sample_disturbance_field,
    sample_point_field,
    sample_tps_field,
    spatial_kinds,
    warp,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _texture(b: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random texture (B, 3, H, W) in [0, 1]: bilinear-friendly, non-constant."""
    coarse = torch.rand(b, 3, size // 4, size // 4, generator=_gen(seed))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)


def test_tps_reproduces_affine_displacements_exactly():
    # A TPS interpolant of control displacements that are an affine function of position is
    # that affine function everywhere.
    size, grid = 24, 5
    basis = _tps_basis(size, grid, torch.device("cpu"))
    axis = torch.linspace(-1, 1, grid)
    cy, cx = torch.meshgrid(axis, axis, indexing="ij")
    ctrl = torch.stack([cx.flatten(), cy.flatten()], dim=-1)
    a = torch.tensor([[0.05, -0.02], [0.03, 0.04]])
    t = torch.tensor([0.01, -0.03])
    dense = identity_coords(size).view(-1, 2)
    field = basis @ (ctrl @ a.T + t)
    torch.testing.assert_close(field, dense @ a.T + t, atol=1e-4, rtol=0)


def test_tps_field_zero_jitter_is_zero_and_bounded_otherwise():
    assert sample_tps_field(2, 16, TPSWarp(jitter=0.0), generator=_gen()).abs().max() == 0
    field = sample_tps_field(8, 32, TPSWarp(grid=5, jitter=0.1), generator=_gen())
    assert field.shape == (8, 32, 32, 2)
    assert 0.02 < field.abs().max() < 0.3  # of the order of the jitter, no blow-up


@pytest.mark.parametrize("size", [56, 112])
def test_point_field_peak_is_shift_in_pixels_of_a_112_frame(size):
    field = sample_point_field(16, size, PointWarp(count=(1, 1), shift=(10.0, 20.0)),
                               generator=_gen(1))
    peak = field.norm(dim=-1).flatten(1).max(dim=1).values  # (B,) normalised units
    peak_px_112 = peak * 112 / 2
    # with one centre the largest displacement is |s| (at the centre, up to pixel sampling)
    assert (peak_px_112 <= 20.0 + 1e-4).all()
    assert (peak_px_112 >= 10.0 * 0.8).all()


def test_point_field_falls_off_away_from_the_centre():
    field = sample_point_field(4, 112, PointWarp(count=(1, 1), shift=(15.0, 15.0)), generator=_gen(2))
    norm = field.norm(dim=-1).flatten(1)
    # fall-off 1 / (3 (d/|s|)^4 + 1): below 1 / 20 of the peak beyond 1.6 |s| (24 px here),
    # so most of the 112 x 112 frame barely moves
    assert ((norm < norm.max(dim=1, keepdim=True).values / 20).float().mean(dim=1) > 0.7).all()


def test_point_field_count_adds_centres():
    one = sample_point_field(32, 64, PointWarp(count=(1, 1)), generator=_gen(3)).norm(dim=-1)
    three = sample_point_field(32, 64, PointWarp(count=(3, 3)), generator=_gen(3)).norm(dim=-1)
    moved = lambda n: (n > 0.02).float().mean()  # noqa: E731
    assert moved(three) > 1.5 * moved(one)


def test_two_samples_get_different_fields():
    for kinds in [("tps",), ("points",), ("tps", "points")]:
        field = sample_disturbance_field(6, 32, SpatialDisturbance(kinds=kinds), generator=_gen(4))
        flat = field.flatten(1)
        diff = torch.cdist(flat, flat)
        off_diagonal = diff[~torch.eye(6, dtype=torch.bool)]
        assert (off_diagonal > 1e-3).all(), kinds


def test_disturbance_field_prob_zero_gives_identity_and_probs_select_kind():
    assert sample_disturbance_field(4, 16, SpatialDisturbance(prob=0.0), generator=_gen()).abs().max() == 0
    # the frame corner moves under TPS (jittered corner control point) but not under point
    # warps (centres lie in the central region, the fall-off kills the displacement)
    kinds, g = ("tps", "points"), _gen()
    pts = sample_disturbance_field(32, 64, SpatialDisturbance(kinds, probs=(0.0, 1.0)),
                                   generator=g)[:, 0, 0].norm(dim=-1)
    tps = sample_disturbance_field(32, 64, SpatialDisturbance(kinds, probs=(1.0, 0.0)),
                                   generator=g)[:, 0, 0].norm(dim=-1)
    assert (pts < 0.025).all()
    assert (tps > 0.025).float().mean() > 0.7
    with pytest.raises(ValueError, match="kinds"):
        SpatialDisturbance(kinds=("wave",))
    with pytest.raises(ValueError, match="probs"):
        SpatialDisturbance(kinds=("tps",), probs=(0.5, 0.5))


def test_zero_field_is_identity():
    video = _texture(2, 32)[:, :, None].expand(2, 3, 4, 32, 32)
    out = warp(video, torch.zeros(2, 32, 32, 2))
    torch.testing.assert_close(out, video, atol=1e-5, rtol=0)


def test_static_clip_stays_static_and_each_frame_uses_the_same_field():
    video = _texture(3, 48)[:, :, None].expand(3, 3, 6, 48, 48).contiguous()
    field = sample_disturbance_field(3, 48, generator=_gen(5))
    out = warp(video, field)
    assert (out - out[:, :, :1]).abs().max() == 0  # static in -> static out
    assert (out - video).abs().mean() > 0.01  # ... and actually warped
    moving = torch.rand(3, 3, 6, 48, 48, generator=_gen(6))
    whole = warp(moving, field)
    for t in range(6):  # the field of frame t alone equals the clip's field
        torch.testing.assert_close(whole[:, :, t : t + 1], warp(moving[:, :, t : t + 1], field))


def _best_shift(a: torch.Tensor, b: torch.Tensor, margin: int, max_shift: int = 4) -> int:
    """Integer horizontal shift d minimising |b[x + d] - a[x]| over the interior."""
    w = a.shape[-1]
    errors = []
    for d in range(-max_shift, max_shift + 1):
        region_a = a[..., margin : -margin, margin : w - margin]
        region_b = b[..., margin : -margin, margin + d : w - margin + d]
        errors.append((region_a - region_b).abs().mean())
    return int(torch.stack(errors).argmin()) - max_shift


@pytest.mark.parametrize("kind", ["tps", "points"])
def test_translating_pattern_keeps_frame_to_frame_displacement(kind):
    size, frames, speed = 64, 5, 2
    wide = _texture(2, size + frames * speed + 8, seed=7)
    clip = torch.stack(
        [wide[..., :size, t * speed : t * speed + size] for t in range(frames)], dim=2
    )  # content moves left by `speed` px per frame
    if kind == "tps":
        field = sample_tps_field(2, size, TPSWarp(jitter=0.03), generator=_gen(8))
    else:
        field = sample_point_field(2, size, PointWarp(count=(1, 1), shift=(6.0, 6.0)), generator=_gen(8))
    out = warp(clip, field)
    assert (out - clip).abs().mean() > 1e-3
    for b in range(2):
        for t in range(frames - 1):
            before = _best_shift(clip[b, :, t], clip[b, :, t + 1], margin=12)
            after = _best_shift(out[b, :, t], out[b, :, t + 1], margin=12)
            assert before == after == -speed


# ------------------------------------------------------------------ the public code's warp
PAPER_POINTS = {"shift": (5.0, 9.5), "region": (60 / 112 - 1, 140 / 112 - 1),
                "direction": "down_right", "strength": 0.5}


def _paper(**kwargs) -> PointWarp:
    return PointWarp(**{**PAPER_POINTS, **kwargs})


def test_paper_point_field_peak_displacement_statistics_at_112_px():
    """One point: the peak moves 0.5 |s| with components of 10-19 px of a 224 crop, i.e.
    3.5-6.7 px at 112 px (median ~5); the content always moves towards the bottom-right."""
    field = sample_point_field(400, 112, _paper(count=(1, 1)), generator=_gen(1))
    px = field * 112 / 2  # pixels of the 112 output
    peak = px.norm(dim=-1).flatten(1).max(dim=1).values
    assert peak.min() >= 3.5 - 0.1 and peak.max() <= 6.72 + 1e-3
    assert 4.5 < peak.median() < 5.6
    # sampling offsets point up-left (content moves down-right) wherever they are not zero
    moved = px.norm(dim=-1) > 0.05
    assert (px[..., 0][moved] < 0).all() and (px[..., 1][moved] < 0).all()
    # the fall-off is centred on the drawn point plus its shift: pixels 60-139 of 224 plus
    # 10-19 px, i.e. inside [35, 80) px of the 112 frame on both axes
    argmax = px.norm(dim=-1).flatten(1).argmax(dim=1)
    rows, cols = argmax // 112, argmax % 112
    for axis in (rows, cols):
        assert axis.min() >= 34 and axis.max() <= 80


def test_paper_point_field_integer_offsets_truncate_towards_zero():
    exact = sample_point_field(8, 112, _paper(), generator=_gen(2))
    whole = sample_point_field(8, 112, _paper(integer=True), generator=_gen(2))
    px_exact, px_whole = exact * 56, whole * 56
    torch.testing.assert_close(px_whole, px_whole.round(), atol=1e-4, rtol=0)
    torch.testing.assert_close(px_whole, torch.trunc(px_exact), atol=1e-4, rtol=0)
    assert px_whole.abs().max() >= 3  # peaks survive the truncation


def test_shared_field_is_one_field_for_the_whole_batch():
    points = PointWarp(direction="down_right", strength=0.5)
    shared = sample_disturbance_field(6, 64, SpatialDisturbance(("points",), points=points,
                                                                shared=True), generator=_gen(3))
    assert shared.shape == (6, 64, 64, 2) and shared.abs().max() > 0
    assert (shared == shared[:1]).all()
    per_clip = sample_disturbance_field(6, 64, SpatialDisturbance(("points",)), generator=_gen(3))
    assert not (per_clip == per_clip[:1]).all()


def test_point_field_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        PointWarp(direction="up")


@pytest.mark.parametrize(("settings", "name"), [
    ({"count": (0, 2)}, "point_count"), ({"count": (2, 1)}, "point_count"),
    ({"shift": (20.0, 10.0)}, "point_shift"), ({"region": (0.5, -0.5)}, "point_region"),
    ({"strength": 0.0}, "point_strength"), ({"reference_size": 0}, "reference_size")])
def test_point_warp_settings_are_checked_once_at_construction(settings, name):
    with pytest.raises(ValueError, match=name):
        PointWarp(**settings)
    assert PointWarp(region=0.25).region == (-0.25, 0.25)  # a number r means (-r, r)
    with pytest.raises(ValueError, match="tps_grid"):
        TPSWarp(grid=1)


def test_a_registered_spatial_kind_is_chosen_like_the_built_ins():
    class Shift:  # a user kind: a constant displacement of a quarter frame to the right
        def sample(self, batch, size, generator=None, device=None):
            return torch.tensor([0.5, 0.0]).expand(batch, size, size, 2).clone()

    register_spatial_kind("quarter_shift", Shift)
    try:
        assert spatial_kinds() == ("tps", "points", "quarter_shift")
        with pytest.raises(ValueError, match="already registered"):
            register_spatial_kind("quarter_shift", TPSWarp)
        field = sample_disturbance_field(3, 8, SpatialDisturbance(("quarter_shift",)),
                                         generator=_gen(0))
        assert (field == torch.tensor([0.5, 0.0])).all()
        mixed = SpatialDisturbance(("tps", "quarter_shift"), probs=(0.5, 0.5))
        chosen = sample_disturbance_field(64, 8, mixed, generator=_gen(1))
        is_user = (chosen == torch.tensor([0.5, 0.0])).flatten(1).all(1)
        assert 0.2 < is_user.float().mean() < 0.8
    finally:
        __import__("dsm_lightning.disturb.spatial").disturb.spatial._SPATIAL.unregister(
            "quarter_shift")
