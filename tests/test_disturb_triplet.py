"""TripletBuilder: the DSM triplet, train / eval transforms and presets."""

import pytest
import torch

from dsm_lightning.disturb import (
    KINETICS_MEAN,
    KINETICS_STD,
    TripletBuilder,
    denormalize,
    normalize,
)

B, T, H, S = 4, 8, 40, 32
PLAIN = {  # simple augmentations switched off: the anchor is the normalised input
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "flip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "rotation_degrees": 0.0,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _textured(batch: int = B, frames: int = T, size: int = H, seed: int = 0) -> torch.Tensor:
    """uint8 (B, 3, T, size, size): smooth random texture, every frame different."""
    coarse = torch.rand(batch * frames, 3, size // 4, size // 4, generator=_gen(seed))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    video = smooth.view(batch, frames, 3, size, size).transpose(1, 2)
    return (video * 255).round().to(torch.uint8)


def _bounds() -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.tensor(KINETICS_MEAN), torch.tensor(KINETICS_STD)
    return (-mean / std).view(1, 3, 1, 1, 1), ((1 - mean) / std).view(1, 3, 1, 1, 1)


def test_shapes_dtypes_and_value_ranges():
    builder = TripletBuilder(crop_size=S, negative_kinds=("shift", "shuffle"), seed=0)
    video, shifted = _textured(), _textured(seed=1)
    out = builder(video, shifted, return_field=True)
    assert set(out) == {"anchor", "positive", "negative", "field"}
    low, high = _bounds()
    for key in ("anchor", "positive", "negative"):
        x = out[key]
        assert x.shape == (B, 3, T, S, S) and x.dtype == torch.float32, key
        assert (x >= low - 1e-5).all() and (x <= high + 1e-5).all(), key
        assert torch.isfinite(x).all()
    assert out["field"].shape == (B, S, S, 2)
    assert builder.mean == KINETICS_MEAN and builder.std == KINETICS_STD


def test_same_seed_same_triplet_and_generator_argument():
    video, shifted = _textured(), _textured(seed=1)
    kw = {"crop_size": S, "negative_kinds": ("shift", "swap", "static")}
    a = TripletBuilder(seed=3, **kw)(video, shifted)
    b = TripletBuilder(seed=3, **kw)(video, shifted)
    c = TripletBuilder(seed=4, **kw)(video, shifted)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.allclose(a["positive"], c["positive"])
    builder = TripletBuilder(**kw)
    d = builder(video, shifted, generator=_gen(9))
    e = builder(video, shifted, generator=_gen(9))
    for key in d:
        assert torch.equal(d[key], e[key]), key


def test_each_clip_gets_its_own_draw():
    video = _textured(batch=1).expand(B, -1, -1, -1, -1)  # the same clip B times
    out = TripletBuilder(crop_size=S, negative_kinds=(), seed=0)(video)
    anchors = out["anchor"].flatten(1)
    distances = torch.cdist(anchors, anchors)[~torch.eye(B, dtype=torch.bool)]
    assert (distances > 1.0).all()


def test_identity_simple_augmentation_gives_the_normalised_input():
    video = _textured(size=S)
    out = TripletBuilder(crop_size=S, spatial_prob=0.0, negative_kinds=(), **PLAIN)(video)
    torch.testing.assert_close(out["anchor"], normalize(video), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["positive"], normalize(video), atol=1e-4, rtol=0)


def test_flip_grayscale_brightness_and_hue_semantics():
    video = _textured(size=S)
    flip = TripletBuilder(crop_size=S, negative_kinds=(), spatial_prob=0.0, **{**PLAIN, "flip_prob": 1.0})
    torch.testing.assert_close(flip.train_transform(video), normalize(video.flip(-1)), atol=1e-4, rtol=0)

    gray = TripletBuilder(crop_size=S, negative_kinds=(), **{**PLAIN, "grayscale_prob": 1.0})
    pixels = denormalize(gray.train_transform(video))
    torch.testing.assert_close(pixels[:, 0], pixels[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[:, 1], pixels[:, 2], atol=1e-5, rtol=0)

    source = video.float() / 255
    bright = TripletBuilder(
        crop_size=S, negative_kinds=(), **{**PLAIN, "jitter_prob": 1.0}, jitter=(0.5, 0, 0, 0)
    )
    ratio = denormalize(bright.train_transform(video, generator=_gen(1))) / source.clamp_min(0.05)
    unclipped = denormalize(bright.train_transform(video, generator=_gen(1))) < 0.999
    for b in range(B):  # one brightness factor per clip, shared by all its pixels and frames
        r = ratio[b][unclipped[b] & (source[b] > 0.05)]
        assert r.max() - r.min() < 0.02
        assert 0.5 - 1e-3 <= r.mean() <= 1.5 + 1e-3

    hue = TripletBuilder(
        crop_size=S, negative_kinds=(), **{**PLAIN, "jitter_prob": 1.0}, jitter=(0, 0, 0, 0.5)
    )
    shifted = denormalize(hue.train_transform(video, generator=_gen(2)))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1, 1)
    inside = ((shifted > 1e-3) & (shifted < 0.999)).all(dim=1)
    assert ((shifted * luma).sum(1) - (source * luma).sum(1))[inside].abs().max() < 1e-3
    assert (shifted - source).abs().mean() > 0.01  # colours did change


@pytest.mark.parametrize("kind", ["tps", "points"])
def test_positive_differs_from_anchor_for_every_sample(kind):
    video = _textured(size=S, seed=2)
    builder = TripletBuilder(crop_size=S, spatial_kinds=(kind,), negative_kinds=(), seed=5, **PLAIN)
    out = builder(video, return_field=True)
    difference = (out["positive"] - out["anchor"]).abs().mean(dim=(1, 2, 3, 4))
    floor = {"tps": 0.02, "points": 0.01}[kind]  # point warps are local: a smaller floor
    assert (difference > floor).all(), difference
    fields = out["field"].flatten(1)
    assert (torch.cdist(fields, fields)[~torch.eye(B, dtype=torch.bool)] > 1e-3).all()


def test_static_clip_gives_static_anchor_and_positive():
    video = _textured(frames=1).expand(B, 3, T, H, H)
    out = TripletBuilder(crop_size=S, negative_kinds=(), seed=0)(video)
    for key in ("anchor", "positive"):
        assert (out[key] - out[key][:, :, :1]).abs().max() == 0, key


def _match_frames(negative: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """(B, T) index of the anchor frame equal to each negative frame (-1 when none)."""
    neg, anc = negative.transpose(1, 2).flatten(2), anchor.transpose(1, 2).flatten(2)
    distance = torch.cdist(neg, anc)  # (B, T, T)
    best = distance.min(dim=2)
    return torch.where(best.values < 1e-4, best.indices, -1)


@pytest.mark.parametrize("kind", ["swap", "insert", "shuffle", "reverse", "static"])
def test_frame_negatives_are_anchor_frames_out_of_order(kind):
    builder = TripletBuilder(crop_size=S, negative_kinds=(kind,), seed=1)
    out = builder(_textured(seed=3))
    index = _match_frames(out["negative"], out["anchor"])
    assert (index >= 0).all()  # scene untouched: only the anchor's (augmented) frames
    assert not (index == torch.arange(T)).all(dim=1).any()  # never the anchor's order
    if kind == "static":
        temporal = out["negative"][:, :, 1:] - out["negative"][:, :, :-1]
        assert temporal.abs().max() == 0


def test_shift_negative_shares_the_anchor_augmentation():
    video = _textured(seed=4)
    builder = TripletBuilder(crop_size=S, negative_kinds=("shift",), seed=2)
    same = builder(video, video)
    torch.testing.assert_close(same["negative"], same["anchor"], atol=0, rtol=0)
    shifted = torch.roll(video, shifts=-1, dims=2)  # the "next" clip starts one frame later
    out = builder(video, shifted)
    torch.testing.assert_close(
        out["negative"][:, :, :-1], out["anchor"][:, :, 1:], atol=1e-5, rtol=0
    )


def test_negative_mode_all_stacks_one_negative_per_kind():
    video = _textured(seed=5)
    shifted = torch.roll(video, shifts=-1, dims=2)
    kinds = ("shift", "reverse", "static", "shuffle")
    builder = TripletBuilder(crop_size=S, negative_kinds=kinds, negative_mode="all", seed=4)
    out = builder(video, shifted)
    assert out["negative"].shape == (B, len(kinds), 3, T, S, S)
    neg = out["negative"]
    torch.testing.assert_close(neg[:, 0, :, :-1], out["anchor"][:, :, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(neg[:, 1], out["anchor"].flip(2), atol=0, rtol=0)
    assert (neg[:, 2, :, 1:] - neg[:, 2, :, :-1]).abs().max() == 0
    index = _match_frames(neg[:, 3], out["anchor"])
    assert (index >= 0).all() and not (index == torch.arange(T)).all(dim=1).any()
    # without video_shift the shift slot is dropped, the frame-level slots stay
    assert builder(video)["negative"].shape == (B, len(kinds) - 1, 3, T, S, S)


def test_shift_falls_back_to_frame_kinds_or_raises():
    video = _textured()
    out = TripletBuilder(crop_size=S, negative_kinds=("shift", "reverse"), seed=0)(video)
    torch.testing.assert_close(out["negative"], out["anchor"].flip(2))
    with pytest.raises(ValueError, match="video_shift"):
        TripletBuilder(crop_size=S)(video)


def test_mixed_negative_kinds_follow_probabilities():
    video = _textured(batch=64, frames=4, size=16)
    builder = TripletBuilder(
        crop_size=16, negative_kinds=("shift", "static"), negative_probs=(0.5, 0.5), seed=0
    )
    out = builder(video, torch.roll(video, -1, dims=2))
    is_static = (out["negative"] - out["negative"][:, :, :1]).flatten(1).abs().amax(1) == 0
    assert 0.25 < is_static.float().mean() < 0.75


def test_moco_preset():
    builder = TripletBuilder.moco(crop_size=S, seed=0)
    out = builder(_textured(), return_field=True)
    assert set(out) == {"anchor", "positive", "field"}
    assert out["field"].abs().max() == 0
    assert (out["positive"] - out["anchor"]).abs().mean() > 0.05  # independent draws
    with pytest.raises(ValueError, match="spatial_prob"):
        TripletBuilder.moco(spatial_prob=0.5)


def test_float_input_matches_uint8():
    video = _textured()
    builder = TripletBuilder(crop_size=S, negative_kinds=("reverse",))
    a = builder(video, generator=_gen(1))
    b = builder(video.float() / 255, generator=_gen(1))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=0)


def test_bfloat16_output_close_to_float32():
    video, shifted = _textured(), _textured(seed=1)
    kw = {"crop_size": S, "negative_kinds": ("shift", "swap")}
    ref = TripletBuilder(**kw)(video, shifted, generator=_gen(1))
    half = TripletBuilder(dtype="bfloat16", **kw)(video, shifted, generator=_gen(1))
    for key in ref:
        assert half[key].dtype == torch.bfloat16
        torch.testing.assert_close(half[key].float(), ref[key], atol=0.03, rtol=0.01)


def test_train_transform_is_consistent_over_frames():
    video = _textured(frames=1).expand(B, 3, T, H, H)
    out = TripletBuilder(crop_size=S, seed=0).train_transform(video)
    assert out.shape == (B, 3, T, S, S)
    assert (out - out[:, :, :1]).abs().max() == 0


def test_eval_transform_crops():
    builder = TripletBuilder(crop_size=S)
    video = _textured()  # 40 x 40 frames, crops of 32
    centre = builder.eval_transform(video)
    torch.testing.assert_close(centre, normalize(video[..., 4:36, 4:36]))
    three = builder.eval_transform(video, n_crops=3)
    assert three.shape == (B, 3, 3, T, S, S)
    torch.testing.assert_close(three[:, 0], normalize(video[..., 4:36, 0:32]))
    torch.testing.assert_close(three[:, 2], normalize(video[..., 4:36, 8:40]))
    views = torch.stack([video, video.flip(-1)], dim=1)  # (B, V=2, C, T, H, W)
    five = builder.eval_transform(views, n_crops=5)
    assert five.shape == (B, 10, 3, T, S, S)
    torch.testing.assert_close(five[:, 5 + 4], normalize(video.flip(-1)[..., 4:36, 4:36]))
    torch.testing.assert_close(five[:, 0], normalize(video[..., 0:32, 0:32]))
    small = builder.eval_transform(_textured(size=16))  # upsampled to the crop size
    assert small.shape == (B, 3, T, S, S)
    with pytest.raises(ValueError, match="n_crops"):
        builder.eval_transform(video, n_crops=2)


def test_denormalize_inverts_normalize():
    video = _textured()
    builder = TripletBuilder()
    torch.testing.assert_close(builder.denormalize(normalize(video)), video.float() / 255)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("crop_size", 0),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.8, 0.4)),
        ("crop_ratio", (2.0, 1.0)),
        ("flip_prob", 1.5),
        ("jitter", (0.5, 0.5, 0.25, 0.6)),
        ("jitter", (0.5, 0.5)),
        ("jitter_prob", -0.1),
        ("grayscale_prob", 2.0),
        ("rotation_degrees", -1.0),
        ("std", (0.2, 0.0, 0.2)),
        ("mean", (0.5, 0.5)),
        ("spatial_kinds", ("tps", "wave")),
        ("spatial_probs", (1.0,)),
        ("spatial_prob", 1.2),
        ("tps_grid", 1),
        ("tps_jitter", -0.1),
        ("point_count", (0, 3)),
        ("point_shift", (20.0, 10.0)),
        ("negative_kinds", ("shift", "teleport")),
        ("negative_kinds", ("swap", "swap")),
        ("negative_probs", (0.5, 0.5)),
        ("local_fraction", 0.0),
        ("negative_mode", "every"),
        ("dtype", "int8"),
        ("seed", "x"),
    ],
)
def test_invalid_arguments_raise_naming_them(name, value):
    with pytest.raises(ValueError, match=name):
        TripletBuilder(**{name: value})


def test_bad_video_shapes_raise():
    builder = TripletBuilder(crop_size=S, negative_kinds=("shift",))
    with pytest.raises(ValueError, match="video"):
        builder(torch.zeros(2, 1, T, H, H, dtype=torch.uint8))
    with pytest.raises(ValueError, match="video_shift"):
        builder(_textured(), _textured(frames=T - 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_a_cpu_generator():
    video, shifted = _textured(), _textured(seed=1)
    builder = TripletBuilder(crop_size=S, negative_kinds=("shift", "shuffle"))
    cpu = builder(video, shifted, generator=_gen(1))
    gpu = builder(video.cuda(), shifted.cuda(), generator=_gen(1))
    for key in cpu:
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-3, rtol=0)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    out = TripletBuilder(crop_size=S, dtype="bfloat16")(video.cuda(), shifted.cuda(), cuda_gen)
    assert out["positive"].dtype == torch.bfloat16
