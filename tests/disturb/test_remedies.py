"""Background Erasing and FAME disturbances: invariants on tiny clips with known frames,
determinism under a seed, composition with the DSM triplet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsm_lightning.disturb import ClipTransform, TripletBuilder
from dsm_lightning.disturb.background_erasing import (
    BackgroundErasingBuilder,
    BackgroundErasingParams,
    background_erasing,
    sample_background_erasing,
)
from dsm_lightning.disturb.fame import (
    FAMEBuilder,
    blur_kernel_size,
    foreground_mask,
    merge_foreground,
    motion_saliency,
    sample_background_index,
)

B, T, S = 4, 6, 24


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clips(seed: int = 0, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, 3, T, 8, 8, generator=_gen(seed))


#: a transform that changes nothing but the normalisation (crop = the whole frame), and the
#: output side: what VideoDataModule passes to a view builder
PLAIN = {"transform": ClipTransform(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                                    jitter_prob=0.0, grayscale_prob=0.0, rotation_degrees=0.0),
         "size": S}


def _moving_squares(batch: int = B, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips: a static smooth random scene per clip and a bright square moving right by 2
    px per frame; returns (video, (B, S, S) bool path of the square)."""
    g = _gen(seed)
    scene = F.interpolate(torch.rand(batch, 3, 4, 4, generator=g), size=(S, S), mode="bilinear",
                          align_corners=False) * 0.6
    video = scene[:, :, None].repeat(1, 1, T, 1, 1)
    path = torch.zeros(batch, S, S, dtype=torch.bool)
    rows = torch.randint(2, S - 8, (batch,), generator=g)
    for b in range(batch):  # building the fixture, not the code under test
        r = int(rows[b])
        for t in range(T):
            video[b, :, t, r:r + 5, 2 + 2 * t:7 + 2 * t] = torch.tensor([1.0, 0.9, 0.1])[:, None,
                                                                                        None]
        path[b, r:r + 5, 2:7 + 2 * (T - 1)] = True
    return (video * 255).round().to(torch.uint8), path


# ------------------------------------------------------------------------ Background Erasing

def test_background_erasing_adds_the_same_frame_at_every_time():
    clips = _clips()
    params = sample_background_erasing(B, T, (0.1, 0.3), "clip", generator=_gen(1))
    out = background_erasing(clips, params)
    w = params.weight.view(B, 1, 1, 1, 1)
    added = out - (1 - w) * clips  # (B, C, T, H, W): must not depend on t
    assert torch.allclose(added, added[:, :, :1].expand_as(added), atol=1e-6)
    static = clips[torch.arange(B), :, params.frame]  # the drawn frame of each clip
    assert torch.allclose(added[:, :, 0], params.weight.view(B, 1, 1, 1) * static, atol=1e-6)
    for b in range(B):  # slow per-sample reference
        k, lam = int(params.frame[b]), float(params.weight[b])
        for t in range(T):
            expected = (1 - lam) * clips[b, :, t] + lam * clips[b, :, k]
            assert torch.allclose(out[b, :, t], expected, atol=1e-6)


@pytest.mark.parametrize(("weight", "expect"), [(0.0, "source"), (1.0, "static")])
def test_background_erasing_boundary_weights(weight: float, expect: str):
    clips = _clips()
    frame = torch.tensor([0, T - 1, 2, 3])
    out = background_erasing(clips, BackgroundErasingParams(torch.full((B,), weight), frame))
    if expect == "source":
        assert torch.equal(out, clips)
    else:
        assert torch.equal(out, clips[torch.arange(B), :, frame][:, :, None].expand_as(clips))


@pytest.mark.parametrize("mix_per", ["batch", "clip"])
def test_mix_stays_in_range(mix_per: str):
    params = sample_background_erasing(512, T, (0.05, 0.3), mix_per, generator=_gen(2))
    assert params.weight.min() >= 0.05 and params.weight.max() <= 0.3
    assert params.frame.min() >= 0 and params.frame.max() <= T - 1
    assert len(params.frame.unique()) == T  # every frame can be drawn
    distinct = len(params.weight.unique())
    assert distinct == 1 if mix_per == "batch" else distinct > 400
    clips = torch.rand(512, 3, T, 2, 2, generator=_gen(3))
    out = background_erasing(clips, params)  # a convex mix stays within the clip's range
    assert (out >= clips.amin((1, 2, 3, 4), keepdim=True) - 1e-6).all()
    assert (out <= clips.amax((1, 2, 3, 4), keepdim=True) + 1e-6).all()


@pytest.mark.parametrize("bad", [{"mix_range": (0.4, 0.2)}, {"mix_range": (0.0, 1.5)},
                                 {"mix_per": "video"}, {"views": ("query",)}, {"views": ()},
                                 {"views": ("positive", "positive")}, {"seed": 1.5}])
def test_background_erasing_builder_rejects_bad_arguments(bad: dict):
    with pytest.raises(ValueError, match=next(iter(bad))):
        BackgroundErasingBuilder(**bad)


def test_transform_and_size_reach_the_base():
    video, _ = _moving_squares()
    base = TripletBuilder.moco()
    builder = BackgroundErasingBuilder(base=base)
    small = builder(video, None, transform=ClipTransform(), size=16, generator=_gen(1))
    assert small["anchor"].shape[-2:] == (16, 16) and small["positive"].shape[-2:] == (16, 16)
    plain = builder(video, None, **PLAIN, generator=_gen(1))
    torch.testing.assert_close(plain["anchor"], PLAIN["transform"].normalize(video), atol=1e-4,
                               rtol=0)  # the base used the transform it was handed
    assert "transform" not in __import__("inspect").signature(BackgroundErasingBuilder).parameters


def test_builder_erases_the_query_view_of_its_base_and_is_deterministic():
    video, _ = _moving_squares()
    base = TripletBuilder.moco()
    builder = BackgroundErasingBuilder(base=base)
    out = builder(video, None, **PLAIN, generator=_gen(5), return_params=True)
    plain = base(video, None, **PLAIN, generator=_gen(5))  # the base draws first, from the same generator
    assert torch.equal(out["anchor"], plain["anchor"])  # the key is left alone
    params = out["be_positive"]
    assert torch.allclose(out["positive"], background_erasing(plain["positive"], params))
    assert not torch.allclose(out["positive"], plain["positive"])
    again = builder(video, None, **PLAIN, generator=_gen(5))
    other = builder(video, None, **PLAIN, generator=_gen(6))
    assert torch.equal(again["positive"], out["positive"])
    assert not torch.equal(other["positive"], out["positive"])


def test_background_erasing_on_top_of_the_dsm_triplet():
    """One configuration: the DSM triplet builder as the base, BE on its (warped) positive; the
    hard negative passes through unchanged; a stacked negative gets one draw per clip."""
    video, _ = _moving_squares()
    shift = video.roll(1, dims=2)
    dsm = TripletBuilder(negative_kinds=("shift", "reverse"), negative_mode="all")
    builder = BackgroundErasingBuilder(base=dsm, views=("positive", "negative"))
    out = builder(video, shift, **PLAIN, generator=_gen(7), return_params=True)
    plain = dsm(video, shift, **PLAIN, generator=_gen(7))
    assert set(out) >= {"anchor", "positive", "negative"}
    assert torch.equal(out["anchor"], plain["anchor"])
    assert out["negative"].shape == plain["negative"].shape == (B, 2, 3, T, S, S)
    assert out["be_negative"].weight.shape == (B * 2,)
    assert torch.allclose(out["positive"], background_erasing(plain["positive"],
                                                              out["be_positive"]))
    only_query = BackgroundErasingBuilder(base=dsm)(video, shift, **PLAIN, generator=_gen(7))
    assert torch.equal(only_query["negative"], plain["negative"])
    with pytest.raises(ValueError, match="negative"):
        BackgroundErasingBuilder(views=("negative",))(video, None, **PLAIN, generator=_gen(7))


# ------------------------------------------------------------------------------------- FAME

@pytest.mark.parametrize(("size", "side"), [(8, 1), (24, 3), (64, 7), (112, 11), (224, 23)])
def test_blur_kernel_follows_the_public_code(size: int, side: int):
    assert blur_kernel_size(size) == side


def test_motion_saliency_is_zero_without_motion_and_peaks_on_the_moving_square():
    video, path = _moving_squares()
    clips = video.float() / 255
    still = motion_saliency(clips[:, :, :1].repeat(1, 1, T, 1, 1))
    assert torch.equal(still, torch.zeros_like(still))
    saliency = motion_saliency(clips)
    assert saliency.min() == 0 and torch.allclose(saliency.amax((1, 2)), torch.ones(B))
    assert (saliency[path].mean() > 4 * saliency[~path].mean()).item()


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 1.0])
def test_foreground_mask_has_exactly_the_ratio_of_pixels(ratio: float):
    video, _ = _moving_squares()
    mask = foreground_mask(video.float() / 255, foreground_ratio=ratio)
    assert mask.shape == (B, S, S) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask.sum((1, 2)), torch.full((B,), float(int(ratio * S * S))))


def test_foreground_mask_covers_the_moving_square():
    video, path = _moving_squares()
    mask = foreground_mask(video.float() / 255)  # the public default: half of the pixels
    covered = (mask.bool() & path).sum((1, 2)) / path.sum((1, 2))  # the path: ~13% of them
    assert (covered > 0.95).all(), covered


def test_foreground_mask_of_a_still_clip_is_finite():
    video, _ = _moving_squares()
    still = (video.float() / 255)[:, :, :1].repeat(1, 1, T, 1, 1)
    mask = foreground_mask(still)
    assert torch.isfinite(mask).all() and (mask.sum((1, 2)) == int(0.5 * S * S)).all()


@pytest.mark.parametrize("batch", [2, 3, 5, 16])
def test_background_never_comes_from_the_clip_itself(batch: int):
    seen = set()
    for seed in range(40):
        index = sample_background_index(batch, _gen(seed))
        assert (index != torch.arange(batch)).all()
        assert sorted(index.tolist()) == list(range(batch))  # each background used once
        seen.add(tuple(index.tolist()))
    assert len(seen) > 1 or batch == 2  # random; with 2 clips the only choice is the swap
    with pytest.raises(ValueError, match="at least 2"):
        sample_background_index(1, _gen(0))


def test_merge_keeps_the_foreground_frames_and_takes_the_rest_from_the_background_clip():
    clips = _clips()
    mask = (torch.rand(B, 8, 8, generator=_gen(1)) > 0.5).float()
    index = torch.tensor([2, 0, 3, 1])
    merged = merge_foreground(clips, mask, index)
    fg = mask.bool()[:, None, None].expand_as(clips)
    assert torch.equal(merged[fg], clips[fg])
    assert torch.equal(merged[~fg], clips[index][~fg])


def test_fame_builder_pastes_the_moving_foreground_onto_another_clip():
    video, _ = _moving_squares()
    shift = video.roll(1, dims=2)
    builder, plain = FAMEBuilder(), PLAIN["transform"]
    out = builder(video, shift, **PLAIN, generator=_gen(3), return_details=True)
    positive = plain.denormalize(out["positive"])  # (B, 3, T, S, S) in [0, 1]
    source, mask, index = video.float() / 255, out["fame_mask"].bool(), out["fame_background"]
    assert (index != torch.arange(B)).all()
    fg = mask[:, None, None].expand_as(positive)
    # the foreground keeps the source's frames (its motion), the rest is the other clip's
    assert torch.allclose(positive[fg], source[fg], atol=1e-4)
    assert torch.allclose(positive[~fg], source[index][~fg], atol=1e-4)
    # the key is the other clip of the same video, untouched by FAME
    assert torch.allclose(plain.denormalize(out["anchor"]), shift.float() / 255, atol=1e-4)
    no_shift = FAMEBuilder(key_from_shift=False)
    same = no_shift(video, shift, **PLAIN, generator=_gen(3))
    assert torch.allclose(plain.denormalize(same["anchor"]), source, atol=1e-4)


def test_fame_builder_is_deterministic_under_a_seed():
    video, _ = _moving_squares()
    builder, run = FAMEBuilder(), {"transform": ClipTransform(), "size": 16}
    first = builder(video, None, **run, generator=_gen(11), return_details=True)
    again = builder(video, None, **run, generator=_gen(11), return_details=True)
    other = builder(video, None, **run, generator=_gen(12), return_details=True)
    for key in ("anchor", "positive", "fame_mask", "fame_background"):
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(first["positive"], other["positive"])
    seeded = FAMEBuilder(seed=4)
    assert torch.equal(seeded(video, **run)["positive"],
                       FAMEBuilder(seed=4)(video, **run)["positive"])


@pytest.mark.parametrize("bad", [{"foreground_ratio": 0.0}, {"foreground_ratio": 1.2},
                                 {"fg_sample_ratio": -0.1}, {"bg_sample_ratio": 0.0},
                                 {"color_bins": 1}, {"blur_fraction": 2.0}, {"seed": "x"}])
def test_fame_builder_rejects_bad_arguments(bad: dict):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FAMEBuilder(**bad)


def test_fame_builder_rejects_a_single_clip_or_frame():
    video, _ = _moving_squares()
    builder = FAMEBuilder()
    with pytest.raises(ValueError, match="at least 2"):
        builder(video[:1], None, generator=_gen(0))
    with pytest.raises(ValueError, match="T>=2"):
        builder(video[:, :, :1], None, generator=_gen(0))
