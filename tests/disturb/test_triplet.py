"""TripletBuilder: the DSM triplet, its composition with ClipTransform, presets."""

import inspect

import pytest
import torch
from helpers.clip_tensors import bounds as _bounds
from helpers.clip_tensors import gen as _gen
from helpers.clip_tensors import textured

from dsm_lightning.disturb import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipTransform,
    TripletBuilder,
    ViewBuilder,
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


def _clip(size: int = S, **kwargs) -> tuple[ClipTransform, int]:
    """The run's transform and output side, as ``VideoDataModule`` hands them to a builder."""
    return ClipTransform(**kwargs), size


class _with:  # noqa: N801 - reads as a call: _with(_clip(), TripletBuilder(...))
    """``builder`` called the way ``VideoDataModule`` calls it: with a transform and a size."""

    def __init__(self, clip: tuple[ClipTransform, int], builder: TripletBuilder) -> None:
        (self.transform, self.size), self.builder = clip, builder

    def __call__(self, *args, **kwargs):
        return self.builder(*args, transform=self.transform, size=self.size, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.builder, name)


def _textured(batch: int = B, frames: int = T, size: int = H, seed: int = 0) -> torch.Tensor:
    return textured(batch, frames, size, seed)


def test_shapes_dtypes_and_value_ranges():
    builder = _with(_clip(), TripletBuilder(negative_kinds=("shift", "shuffle"), seed=0))
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
    assert builder.transform.mean == KINETICS_MEAN and builder.transform.std == KINETICS_STD


def test_same_seed_same_triplet_and_generator_argument():
    video, shifted = _textured(), _textured(seed=1)
    kw = {"negative_kinds": ("shift", "swap", "static")}
    a = _with(_clip(), TripletBuilder(seed=3, **kw))(video, shifted)
    b = _with(_clip(), TripletBuilder(seed=3, **kw))(video, shifted)
    c = _with(_clip(), TripletBuilder(seed=4, **kw))(video, shifted)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.allclose(a["positive"], c["positive"])
    builder = _with(_clip(), TripletBuilder(**kw))
    d = builder(video, shifted, generator=_gen(9))
    e = builder(video, shifted, generator=_gen(9))
    for key in d:
        assert torch.equal(d[key], e[key]), key


def test_each_clip_gets_its_own_draw():
    video = _textured(batch=1).expand(B, -1, -1, -1, -1)  # the same clip B times
    out = _with(_clip(), TripletBuilder(negative_kinds=(), seed=0))(video)
    anchors = out["anchor"].flatten(1)
    distances = torch.cdist(anchors, anchors)[~torch.eye(B, dtype=torch.bool)]
    assert (distances > 1.0).all()


def test_identity_simple_augmentation_gives_the_normalised_input():
    video = _textured(size=S)
    out = _with(_clip(**PLAIN), TripletBuilder(spatial_prob=0.0, negative_kinds=()))(video)
    torch.testing.assert_close(out["anchor"], normalize(video), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["positive"], normalize(video), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["tps", "points"])
def test_positive_differs_from_anchor_for_every_sample(kind):
    video = _textured(size=S, seed=2)
    builder = _with(_clip(**PLAIN), TripletBuilder(spatial_kinds=(kind,), negative_kinds=(), seed=5))
    out = builder(video, return_field=True)
    difference = (out["positive"] - out["anchor"]).abs().mean(dim=(1, 2, 3, 4))
    floor = {"tps": 0.02, "points": 0.01}[kind]  # point warps are local: a smaller floor
    assert (difference > floor).all(), difference
    fields = out["field"].flatten(1)
    assert (torch.cdist(fields, fields)[~torch.eye(B, dtype=torch.bool)] > 1e-3).all()


def test_static_clip_gives_static_anchor_and_positive():
    video = _textured(frames=1).expand(B, 3, T, H, H)
    out = _with(_clip(), TripletBuilder(negative_kinds=(), seed=0))(video)
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
    builder = _with(_clip(), TripletBuilder(negative_kinds=(kind,), seed=1))
    out = builder(_textured(seed=3))
    index = _match_frames(out["negative"], out["anchor"])
    assert (index >= 0).all()  # scene untouched: only the anchor's (augmented) frames
    assert not (index == torch.arange(T)).all(dim=1).any()  # never the anchor's order
    if kind == "static":
        temporal = out["negative"][:, :, 1:] - out["negative"][:, :, :-1]
        assert temporal.abs().max() == 0


def test_shift_negative_shares_the_anchor_augmentation():
    video = _textured(seed=4)
    builder = _with(_clip(), TripletBuilder(negative_kinds=("shift",), seed=2))
    same = builder(video, video)
    torch.testing.assert_close(same["negative"], same["anchor"], atol=0, rtol=0)
    shifted = torch.roll(video, shifts=-1, dims=2)  # the "next" clip starts one frame later
    out = builder(video, shifted)
    torch.testing.assert_close(
        out["negative"][:, :, :-1], out["anchor"][:, :, 1:], atol=1e-5, rtol=0
    )


def test_shift_negative_with_independent_augmentation():
    """``shift_augment="independent"`` (the public code): the shifted clip gets a draw of its
    own, so even identical frames differ from the anchor; with identity augmentation it is
    exactly the normalised shifted clip."""
    video = _textured(seed=4)
    builder = _with(_clip(), TripletBuilder(negative_kinds=("shift",), shift_augment="independent"))
    out = builder(video, video, generator=_gen(2))
    per_clip = (out["negative"] - out["anchor"]).abs().flatten(1).mean(1)
    assert (per_clip > 0.05).all()  # the same frames, another augmentation
    shared = _with(_clip(), TripletBuilder(negative_kinds=("shift",)))(video, video, generator=_gen(2))
    torch.testing.assert_close(shared["negative"], shared["anchor"], atol=0, rtol=0)
    # the anchor and the positive keep their draws: the shift's draw comes after them
    torch.testing.assert_close(out["anchor"], shared["anchor"], atol=0, rtol=0)
    torch.testing.assert_close(out["positive"], shared["positive"], atol=0, rtol=0)
    plain = _with(_clip(**PLAIN), TripletBuilder(negative_kinds=("shift",), spatial_prob=0.0,
                           shift_augment="independent"))
    video, shifted = _textured(size=S), _textured(size=S, seed=6)
    torch.testing.assert_close(plain(video, shifted)["negative"], normalize(shifted),
                               atol=1e-4, rtol=0)


def _labelled(batch: int = B) -> torch.Tensor:
    """uint8 clips whose every pixel of sample i is 20 * (i + 1): the video can be read back."""
    value = 20 * (torch.arange(batch) + 1)
    return value.view(batch, 1, 1, 1, 1).expand(batch, 3, T, S, S).to(torch.uint8).clone()


def _video_of(clip: torch.Tensor) -> torch.Tensor:
    """(B,) the sample index whose constant value a normalised clip shows."""
    level = normalize(torch.zeros(1, 3, 1, 1, 1, dtype=torch.uint8))[0, 0, 0, 0, 0]
    scale = normalize(torch.full((1, 3, 1, 1, 1), 255, dtype=torch.uint8))[0, 0, 0, 0, 0]
    value = (clip[:, 0].mean(dim=(1, 2, 3)) - level) / (scale - level) * 255
    return (value / 20).round().long() - 1


@pytest.mark.parametrize("with_shift", [False, True])
def test_other_video_negative_comes_from_another_video_of_the_batch(with_shift):
    """The negative of sample i is a clip of sample i - 1 (the batch rolled by one): never
    its own video; with ``video_shift`` it is that video's shifted clip."""
    video = _labelled()
    shifted = (_labelled().float() * 0 + 200 - 20 * torch.arange(B).view(B, 1, 1, 1, 1)).to(
        torch.uint8) if with_shift else None
    builder = _with(_clip(**PLAIN), TripletBuilder(spatial_prob=0.0, negative_kinds=("other_video",)))
    out = builder(video, shifted)
    source = torch.arange(B).roll(1)
    assert (source != torch.arange(B)).all()
    if with_shift:
        torch.testing.assert_close(out["negative"], normalize(shifted.roll(1, dims=0)),
                                   atol=1e-4, rtol=0)
    else:
        assert torch.equal(_video_of(out["negative"]), source)
        assert torch.equal(_video_of(out["anchor"]), torch.arange(B))
    with pytest.raises(ValueError, match="other_video"):
        builder(video[:1])


def test_other_video_mixes_with_other_kinds_and_stacks_in_mode_all():
    video = _labelled(8)
    kinds = ("other_video", "static")
    mixed = _with(_clip(**PLAIN), TripletBuilder(spatial_prob=0.0, negative_kinds=kinds, seed=0))
    neg = mixed(_labelled(8) * 0 + video)["negative"]
    from_other = _video_of(neg) != torch.arange(8)
    assert from_other.any() and (~from_other).any()  # some of each kind in a batch of 8
    stacked = _with(_clip(**PLAIN), TripletBuilder(spatial_prob=0.0, negative_kinds=kinds,
                             negative_mode="all"))(video)["negative"]
    assert stacked.shape == (8, 2, 3, T, S, S)
    assert torch.equal(_video_of(stacked[:, 0]), torch.arange(8).roll(1))
    assert torch.equal(_video_of(stacked[:, 1]), torch.arange(8))


def test_paper_preset_is_the_public_codes_disturbance():
    builder = _with(_clip(), TripletBuilder.paper(seed=0))
    settings, held = TripletBuilder.paper_settings(), builder.settings()
    for name, value in settings.items():
        assert held[name] == (value if not isinstance(value, list) else tuple(value)), name
    assert builder.spatial.kinds == ("points",) and builder.negative_kinds == ("shift",)
    points = builder.spatial.points
    assert (points.direction, points.strength, points.integer) == ("down_right", 0.5, True)
    assert (builder.field_scope, builder.shift_augment) == ("batch", "independent")
    assert builder.spatial.shared and builder.temporal.kinds == ("shift",)
    assert points.shift == (5.0, 9.5)  # 10-19 px of a 224 crop, at 112
    video, shifted = _textured(), _textured(seed=1)
    out = builder(video, shifted, return_field=True)
    assert (out["field"] == out["field"][:1]).all() and out["field"].abs().max() > 0
    px = out["field"] * S / 2
    torch.testing.assert_close(px, px.round(), atol=1e-4, rtol=0)  # whole pixels
    assert TripletBuilder.paper(negative_kinds=("other_video",)).negative_kinds == (
        "other_video",)


def test_negative_mode_all_stacks_one_negative_per_kind():
    video = _textured(seed=5)
    shifted = torch.roll(video, shifts=-1, dims=2)
    kinds = ("shift", "reverse", "static", "shuffle")
    builder = _with(_clip(), TripletBuilder(negative_kinds=kinds, negative_mode="all", seed=4))
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
    out = _with(_clip(), TripletBuilder(negative_kinds=("shift", "reverse"), seed=0))(video)
    torch.testing.assert_close(out["negative"], out["anchor"].flip(2))
    with pytest.raises(ValueError, match="video_shift"):
        _with(_clip(), TripletBuilder())(video)


def test_mixed_negative_kinds_follow_probabilities():
    video = _textured(batch=64, frames=4, size=16)
    builder = _with(_clip(16), TripletBuilder(negative_kinds=("shift", "static"), negative_probs=(0.5, 0.5), seed=0
    ))
    out = builder(video, torch.roll(video, -1, dims=2))
    is_static = (out["negative"] - out["negative"][:, :, :1]).flatten(1).abs().amax(1) == 0
    assert 0.25 < is_static.float().mean() < 0.75


def test_moco_preset():
    builder = _with(_clip(), TripletBuilder.moco(seed=0))
    out = builder(_textured(), return_field=True)
    assert set(out) == {"anchor", "positive", "field"}
    assert out["field"].abs().max() == 0
    assert (out["positive"] - out["anchor"]).abs().mean() > 0.05  # independent draws
    with pytest.raises(ValueError, match="spatial_prob"):
        TripletBuilder.moco(spatial_prob=0.5)


def test_float_input_matches_uint8():
    video = _textured()
    builder = _with(_clip(), TripletBuilder(negative_kinds=("reverse",)))
    a = builder(video, generator=_gen(1))
    b = builder(video.float() / 255, generator=_gen(1))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=0)


def test_bfloat16_output_close_to_float32():
    video, shifted = _textured(), _textured(seed=1)
    kw = {"negative_kinds": ("shift", "swap")}
    ref = _with(_clip(), TripletBuilder(**kw))(video, shifted, generator=_gen(1))
    half = _with(_clip(dtype="bfloat16"), TripletBuilder(**kw))(video, shifted, generator=_gen(1))
    for key in ref:
        assert half[key].dtype == torch.bfloat16
        torch.testing.assert_close(half[key].float(), ref[key], atol=0.03, rtol=0.01)


@pytest.mark.parametrize(
    ("name", "value"),
    [
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
        ("point_region", (0.5, -0.5)),
        ("point_direction", "up"),
        ("point_strength", 0.0),
        ("field_scope", "epoch"),
        ("shift_augment", "never"),
        ("seed", "x"),
    ],
)
def test_invalid_arguments_raise_naming_them(name, value):
    with pytest.raises(ValueError, match=name):
        TripletBuilder(**{name: value})


def test_bad_video_shapes_raise():
    builder = _with(_clip(), TripletBuilder(negative_kinds=("shift",)))
    with pytest.raises(ValueError, match="video"):
        builder(torch.zeros(2, 1, T, H, H, dtype=torch.uint8))
    with pytest.raises(ValueError, match="video_shift"):
        builder(_textured(), _textured(frames=T - 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_a_cpu_generator():
    video, shifted = _textured(), _textured(seed=1)
    builder = _with(_clip(), TripletBuilder(negative_kinds=("shift", "shuffle")))
    cpu = builder(video, shifted, generator=_gen(1))
    gpu = builder(video.cuda(), shifted.cuda(), generator=_gen(1))
    for key in cpu:
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-3, rtol=0)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    out = _with(_clip(dtype="bfloat16"), TripletBuilder())(video.cuda(), shifted.cuda(), cuda_gen)
    assert out["positive"].dtype == torch.bfloat16


# ----------------------------------------------------------------------------- composition
def test_builder_normalises_with_the_transform_it_is_given():
    video = _textured(size=S)
    plain = ClipTransform(**PLAIN, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    builder = TripletBuilder(spatial_prob=0.0, negative_kinds=("reverse",))
    out = builder(video, transform=plain, size=S)
    expected = (video.float() / 255 - 0.5) / 0.25
    for key in ("anchor", "positive"):
        torch.testing.assert_close(out[key], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(plain.denormalize(out["anchor"]), video.float() / 255,
                               atol=1e-4, rtol=0)


def test_anchor_is_the_transforms_training_draw():
    """The builder's anchor is exactly ``transform.train`` with the same generator (first draw)."""
    video = _textured()
    transform = ClipTransform()
    out = TripletBuilder(negative_kinds=("reverse",))(video, transform=transform, size=S,
                                                      generator=_gen(7))
    torch.testing.assert_close(out["anchor"], transform.train(video, S, generator=_gen(7)),
                               atol=0, rtol=0)


def test_builders_hold_no_transform_and_default_to_the_library_transform():
    builder = TripletBuilder(negative_kinds=("reverse",))
    assert not any(isinstance(v, ClipTransform) for v in vars(builder).values())
    assert "transform" not in inspect.signature(TripletBuilder).parameters
    video = _textured()  # 40 px frames: no size = the frames' side, no transform = the default
    default = builder(video, generator=_gen(3))
    given = builder(video, transform=ClipTransform(), size=H, generator=_gen(3))
    for key in default:
        assert default[key].shape[-1] == H and torch.equal(default[key], given[key]), key


def test_view_builder_base_needs_forward():
    with pytest.raises(NotImplementedError):
        ViewBuilder()(torch.zeros(1, 3, 2, 8, 8, dtype=torch.uint8))
