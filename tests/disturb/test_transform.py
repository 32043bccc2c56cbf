"""ClipTransform: training augmentation and evaluation crops, batched, normalised."""

import inspect

import pytest
import torch
from helpers.clip_tensors import bounds as _bounds
from helpers.clip_tensors import gen as _gen
from helpers.clip_tensors import textured

from dsm_lightning.disturb import ClipTransform, denormalize, normalize

B, T, H, S = 4, 8, 40, 32
PLAIN = {  # simple augmentations switched off: training = the normalised input
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "flip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "rotation_degrees": 0.0,
}


def _textured(batch: int = B, frames: int = T, size: int = H, seed: int = 0) -> torch.Tensor:
    return textured(batch, frames, size, seed)


def test_train_shapes_range_and_determinism():
    transform = ClipTransform()
    video = _textured()
    out = transform.train(video, S, generator=_gen(1))
    low, high = _bounds()
    assert out.shape == (B, 3, T, S, S) and out.dtype == torch.float32
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()
    torch.testing.assert_close(out, transform.train(video, S, generator=_gen(1)), atol=0, rtol=0)
    assert not torch.allclose(out, transform.train(video, S, generator=_gen(2)))
    as_float = transform.train(video.float() / 255, S, generator=_gen(1))
    torch.testing.assert_close(as_float, out, atol=1e-4, rtol=0)


def test_train_one_draw_per_clip_shared_by_its_frames():
    still = _textured(frames=1).expand(B, 3, T, H, H)
    out = ClipTransform().train(still, S, generator=_gen(0))
    assert (out - out[:, :, :1]).abs().max() == 0  # one draw per clip: frames stay equal
    same = _textured(batch=1).expand(B, -1, -1, -1, -1)
    anchors = ClipTransform().train(same, S, generator=_gen(0)).flatten(1)
    distances = torch.cdist(anchors, anchors)[~torch.eye(B, dtype=torch.bool)]
    assert (distances > 1.0).all()  # a different draw per clip


def test_identity_settings_give_the_normalised_input():
    video = _textured(size=S)
    out = ClipTransform(**PLAIN).train(video, S, generator=_gen(0))
    torch.testing.assert_close(out, normalize(video), atol=1e-4, rtol=0)


def test_flip_grayscale_brightness_and_hue_semantics():
    video = _textured(size=S)
    flip = ClipTransform(**{**PLAIN, "flip_prob": 1.0})
    torch.testing.assert_close(flip.train(video, S), normalize(video.flip(-1)), atol=1e-4, rtol=0)

    gray = ClipTransform(**{**PLAIN, "grayscale_prob": 1.0})
    pixels = denormalize(gray.train(video, S))
    torch.testing.assert_close(pixels[:, 0], pixels[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[:, 1], pixels[:, 2], atol=1e-5, rtol=0)

    source = video.float() / 255
    bright = ClipTransform(**{**PLAIN, "jitter_prob": 1.0}, jitter=(0.5, 0, 0, 0))
    ratio = denormalize(bright.train(video, S, generator=_gen(1))) / source.clamp_min(0.05)
    unclipped = denormalize(bright.train(video, S, generator=_gen(1))) < 0.999
    for b in range(B):  # one brightness factor per clip, shared by all its pixels and frames
        r = ratio[b][unclipped[b] & (source[b] > 0.05)]
        assert r.max() - r.min() < 0.02
        assert 0.5 - 1e-3 <= r.mean() <= 1.5 + 1e-3

    hue = ClipTransform(**{**PLAIN, "jitter_prob": 1.0}, jitter=(0, 0, 0, 0.5))
    shifted = denormalize(hue.train(video, S, generator=_gen(2)))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1, 1)
    inside = ((shifted > 1e-3) & (shifted < 0.999)).all(dim=1)
    assert ((shifted * luma).sum(1) - (source * luma).sum(1))[inside].abs().max() < 1e-3
    assert (shifted - source).abs().mean() > 0.01  # colours did change


def test_eval_crops_5d_and_6d():
    transform = ClipTransform()
    video = _textured()  # 40 x 40 frames, crops of 32
    centre = transform.eval(video, S)
    torch.testing.assert_close(centre, normalize(video[..., 4:36, 4:36]))
    three = transform.eval(video, S, n_crops=3)
    assert three.shape == (B, 3, 3, T, S, S)
    torch.testing.assert_close(three[:, 0], normalize(video[..., 4:36, 0:32]))
    torch.testing.assert_close(three[:, 2], normalize(video[..., 4:36, 8:40]))
    views = torch.stack([video, video.flip(-1)], dim=1)  # (B, V=2, C, T, H, W)
    five = transform.eval(views, S, n_crops=5)
    assert five.shape == (B, 10, 3, T, S, S)
    torch.testing.assert_close(five[:, 5 + 4], normalize(video.flip(-1)[..., 4:36, 4:36]))
    torch.testing.assert_close(five[:, 0], normalize(video[..., 0:32, 0:32]))
    small = transform.eval(_textured(size=16), S)  # upsampled to the crop size
    assert small.shape == (B, 3, T, S, S)
    torch.testing.assert_close(transform.eval(video, S), transform.eval(video, S))  # no randomness
    with pytest.raises(ValueError, match="n_crops"):
        transform.eval(video, S, n_crops=2)
    with pytest.raises(ValueError, match="video"):
        transform.eval(torch.zeros(2, 1, T, H, H, dtype=torch.uint8), S)
    with pytest.raises(ValueError, match="video"):
        transform.train(torch.zeros(2, 1, T, H, H, dtype=torch.uint8), S)


def test_denormalize_inverts_normalize_and_dtype():
    video = _textured()
    transform = ClipTransform(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    torch.testing.assert_close(transform.denormalize(transform.normalize(video)),
                               video.float() / 255)
    half = ClipTransform(dtype="bfloat16")
    assert half.torch_dtype == torch.bfloat16
    assert half.train(video, S, generator=_gen(0)).dtype == torch.bfloat16
    assert half.eval(video, S).dtype == torch.bfloat16


def test_size_is_the_callers_and_none_keeps_the_frames_short_side():
    transform = ClipTransform()
    video = _textured()  # 40 x 40 frames
    assert transform.train(video, 24, generator=_gen(0)).shape == (B, 3, T, 24, 24)
    assert transform.train(video, generator=_gen(0)).shape == (B, 3, T, H, H)
    assert transform.eval(video).shape == (B, 3, T, H, H)
    torch.testing.assert_close(transform.eval(video), normalize(video))  # the whole frame
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="size"):
            transform.train(video, bad)
    assert "crop_size" not in inspect.signature(ClipTransform).parameters  # one owner


def test_transform_holds_settings_only():
    transform = ClipTransform.paper()
    assert not isinstance(transform, torch.nn.Module) and not vars(transform).get("training")
    assert all(not isinstance(v, torch.Tensor) for v in vars(transform).values())
    assert "jitter_mode='one_of'" in repr(transform)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.8, 0.4)),
        ("crop_ratio", (2.0, 1.0)),
        ("flip_prob", 1.5),
        ("jitter", (0.5, 0.5, 0.25, 0.6)),
        ("jitter", (0.5, 0.5)),
        ("jitter_prob", -0.1),
        ("jitter_mode", "some"),
        ("grayscale_prob", 2.0),
        ("rotation_degrees", -1.0),
        ("std", (0.2, 0.0, 0.2)),
        ("mean", (0.5, 0.5)),
        ("dtype", "int8"),
    ],
)
def test_invalid_arguments_raise_naming_them(name, value):
    with pytest.raises(ValueError, match=name):
        ClipTransform(**{name: value})


def _colour_ops(transform: ClipTransform, batch: int, seed: int = 0) -> torch.Tensor:
    """(B, 4) bool: which of brightness, contrast, saturation, hue changed each clip.

    Recovered from the sampled colour map ``M x + shift * grey``: in YIQ, saturation scales
    and hue rotates the chroma block while both keep the luma, so the luma gain is ``b c``
    and the grey offset ``(1 - c) b``; the chroma block is ``b c s R(hue)``.
    """
    from dsm_lightning.disturb.colour import _RGB_TO_YIQ

    params = transform.sample(batch, generator=_gen(seed))
    yiq = torch.tensor(_RGB_TO_YIQ)
    in_yiq = yiq @ params.color_matrix @ torch.linalg.inv(yiq)
    luma = in_yiq[:, 0, 0]  # b * c
    b = luma + params.color_shift
    c = luma / b
    chroma = in_yiq[:, 1:, 1:] / luma[:, None, None]  # s * rotation
    s = torch.linalg.det(chroma).clamp_min(0).sqrt()
    sin = (chroma[:, 1, 0] - chroma[:, 0, 1]) / (2 * s)
    return torch.stack([(b - 1).abs() > 1e-5, (c - 1).abs() > 1e-5, (s - 1).abs() > 1e-5,
                        sin.abs() > 1e-5], dim=1)


def test_jitter_one_of_applies_exactly_one_op_per_clip_uniformly():
    """The public code's bug-compatible jitter: one op per clip, each op about 1/4 of clips;
    the default mode applies all four to every jittered clip."""
    one = ClipTransform(**{**PLAIN, "jitter_prob": 1.0}, jitter_mode="one_of")
    ops = _colour_ops(one, 400)
    assert (ops.sum(1) == 1).all()
    share = ops.float().mean(0)
    assert ((share > 0.18) & (share < 0.32)).all(), share
    every = ClipTransform(**{**PLAIN, "jitter_prob": 1.0})
    assert _colour_ops(every, 50).float().mean() > 0.95
    # an op of strength 0 is never the one picked
    no_hue = ClipTransform(**{**PLAIN, "jitter_prob": 1.0}, jitter=(0.5, 0.5, 0.25, 0.0),
                           jitter_mode="one_of")
    ops = _colour_ops(no_hue, 300)
    assert (ops.sum(1) == 1).all() and not ops[:, 3].any()
    assert (ops[:, :3].float().mean(0) > 0.25).all()


def test_paper_preset_is_the_public_codes_simple_augmentation():
    paper = ClipTransform.paper()
    assert paper.crop_scale == ((224 / 256) ** 2,) * 2 and paper.crop_ratio == (1.0, 1.0)
    assert (paper.flip_prob, paper.grayscale_prob, paper.rotation_degrees) == (0.0, 0.0, 10.0)
    assert paper.jitter == (0.5, 0.5, 0.25, 0.5)
    assert (paper.jitter_prob, paper.jitter_mode) == (1.0, "one_of")
    assert ClipTransform.paper(flip_prob=0.5).flip_prob == 0.5  # overrides win
    # the crop is a square of 7/8 of the frame side at a random position, never resized
    theta = paper.sample(64, generator=_gen(0)).theta
    scale = theta[:, :, :2].pow(2).sum(1).sqrt()  # column norms: half-sides in [-1, 1] units
    torch.testing.assert_close(scale, torch.full_like(scale, 224 / 256), atol=1e-5, rtol=0)
    assert theta[:, :, 2].abs().max() <= 1 - 224 / 256 + 1e-5
    assert theta[:, :, 2].std() > 0.02  # the position varies
    ops = _colour_ops(paper, 200)
    assert (ops.sum(1) == 1).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_a_cpu_generator():
    video = _textured()
    transform = ClipTransform()
    cpu = transform.train(video, S, generator=_gen(1))
    gpu = transform.train(video.cuda(), S, generator=_gen(1))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)
