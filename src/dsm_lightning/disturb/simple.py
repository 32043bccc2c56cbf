"""Batched "simple" augmentations of video clips, normalisation and evaluation crops.

One random draw per clip, shared by all its frames, a different draw per clip. Geometry
(random resized crop, horizontal flip, small rotation) is one per-sample affine matrix applied
by a single ``grid_sample`` over all frames (frames and channels folded together); colour
jitter, random grayscale and normalisation are one per-sample affine colour map applied with a
batched matrix product. No Python loop over samples, frames or pixels.

Random numbers are drawn on ``generator.device`` when a generator is given (so a CPU
generator gives the same draws whatever device the video lives on) and on the video's device
from the global RNG otherwise; the small parameter tensors are then moved to the video's
device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_choice

KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

# ITU-R BT.601 luma weights (what torchvision's rgb_to_grayscale uses).
_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ; its first row is the luma, the I and Q rows sum to zero.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)


class SimpleAugParams(NamedTuple):
    """One simple-augmentation draw per clip.

    Attributes:
        theta: (B, 2, 3) affine maps from output to input normalised coordinates
            (``grid_sample`` convention, ``align_corners=False``): crop, flip and rotation.
        color_matrix: (B, 3, 3) linear colour map on RGB in [0, 1] (brightness, contrast
            factor, saturation, hue rotation, grayscale).
        color_shift: (B,) contrast offset coefficient: the map adds
            ``color_shift * gray_mean`` to every channel, where ``gray_mean`` is the mean luma
            of the (cropped) clip.
    """

    theta: Tensor
    color_matrix: Tensor
    color_shift: Tensor


def rand_uniform(
    shape: tuple[int, ...],
    low: float | Tensor = 0.0,
    high: float | Tensor = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform float32 samples in [low, high), drawn on the generator's device.

    Args:
        shape: output shape.
        low: lower bound (scalar or broadcastable tensor).
        high: upper bound.
        generator: random source; ``None`` uses the global RNG of ``device``.
        device: where the result lives.

    Returns:
        float32 tensor of ``shape`` on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=draw_device, dtype=torch.float32)
    return (low + (high - low) * u).to(device)


def selection_weights(
    kinds: tuple[str, ...], probs: tuple[float, ...] | None, name: str
) -> tuple[float, ...]:
    """Normalised selection probabilities (uniform when ``probs`` is None).

    Raises:
        ValueError: naming ``name`` if ``probs`` does not match ``kinds`` or is invalid.
    """
    if probs is None:
        return tuple(1.0 / len(kinds) for _ in kinds)
    if len(probs) != len(kinds) or any(p < 0 for p in probs) or sum(probs) <= 0:
        raise ValueError(
            f"{name} must be {len(kinds)} non-negative numbers with a positive sum, got {probs}"
        )
    total = float(sum(probs))
    return tuple(float(p) / total for p in probs)


def choose(weights: tuple[float, ...], u: Tensor) -> Tensor:
    """Index of the category each uniform sample falls into.

    Args:
        weights: category probabilities summing to 1.
        u: (B,) uniform samples in [0, 1).

    Returns:
        (B,) int64 category indices.
    """
    edges = torch.tensor(weights, device=u.device, dtype=torch.float32).cumsum(0)
    return torch.searchsorted(edges, u.contiguous(), right=True).clamp_(max=len(weights) - 1)


def sample_affine(
    batch: int,
    *,
    crop_scale: tuple[float, float] = (0.4, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    rotation_degrees: float = 10.0,
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


#: ``jitter_mode`` values: every colour op per jittered clip, or exactly one of them.
JITTER_MODES: tuple[str, ...] = ("all", "one_of")


def sample_color(
    batch: int,
    *,
    jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.25, 0.5),
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    jitter_mode: str = "all",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample per-clip colour jitter and grayscale as one affine colour map.

    Brightness b, contrast c and saturation s factors are drawn from
    ``U(max(0, 1 - x), 1 + x)``, the hue shift h from ``U(-x, x)`` (fraction of the colour
    circle, as torchvision's ``hue``; 0.5 allows any hue). They are applied in the fixed order
    brightness, contrast, saturation, hue, then grayscale; the hue shift is a rotation of the
    chroma (I, Q) plane of YIQ by ``2 pi h``, a linear stand-in for the HSV shift. Values are
    clipped to [0, 1] once, at the end.

    With ``jitter_mode="one_of"`` a jittered clip gets exactly one of the ops whose strength
    is > 0, chosen uniformly, the others left at identity: what the public DSM code's video
    ``ColorJitter`` does (it applies each op to the original frame and keeps only the last
    result; docs/method-fidelity.md).

    Args:
        batch: number of clips B.
        jitter: (brightness, contrast, saturation, hue) strengths.
        jitter_prob: probability that a clip is jittered at all.
        grayscale_prob: probability that a clip is turned to grayscale.
        jitter_mode: ``"all"`` (every op) or ``"one_of"`` (one op per jittered clip).
        generator: random source.
        device: where the results live.

    Returns:
        ``(color_matrix (B, 3, 3), color_shift (B,))``: the map is
        ``x -> color_matrix @ x + color_shift * gray_mean``.

    Raises:
        ValueError: unknown ``jitter_mode``.
    """
    check_choice("jitter_mode", jitter_mode, JITTER_MODES)
    brightness, contrast, saturation, hue = jitter
    one_of = jitter_mode == "one_of"
    # "all" keeps its historical six draws (same stream); "one_of" draws the op as well
    u = rand_uniform((7 if one_of else 6, batch), generator=generator, device=device)

    def factor(strength: float, v: Tensor) -> Tensor:
        low = max(0.0, 1.0 - strength)
        return low + (1.0 + strength - low) * v

    on = (u[0] < jitter_prob)[None].expand(4, batch)  # (op, B): which ops act on each clip
    if one_of:
        active = [i for i, x in enumerate(jitter) if x > 0]
        if active:
            pick = torch.tensor(active, device=u.device)[
                (u[6] * len(active)).long().clamp_(max=len(active) - 1)]
            on = on & (torch.arange(4, device=u.device)[:, None] == pick[None])
    b = torch.where(on[0], factor(brightness, u[1]), 1.0)
    c = torch.where(on[1], factor(contrast, u[2]), 1.0)
    s = torch.where(on[2], factor(saturation, u[3]), 1.0)
    h = torch.where(on[3], hue * (2 * u[4] - 1), 0.0)
    gray = u[5] < grayscale_prob

    eye = torch.eye(3, device=device)
    luma_rows = torch.tensor(_LUMA, device=device).expand(3, 3)
    sat = s[:, None, None] * eye + (1 - s)[:, None, None] * luma_rows
    yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    yiq_inverse, yiq = torch.linalg.inv(yiq).float().to(device), yiq.float().to(device)
    angle = 2 * math.pi * h
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = eye.repeat(batch, 1, 1)
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    hue_map = yiq_inverse @ rot @ yiq
    gray_map = torch.where(gray[:, None, None], luma_rows, eye)
    color_matrix = gray_map @ hue_map @ sat * (b * c)[:, None, None]
    color_shift = (1 - c) * b
    return color_matrix, color_shift


def sample_simple_params(
    batch: int,
    *,
    crop_scale: tuple[float, float] = (0.4, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    rotation_degrees: float = 10.0,
    jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.25, 0.5),
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    jitter_mode: str = "all",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> SimpleAugParams:
    """Sample one simple-augmentation draw per clip (see ``sample_affine``, ``sample_color``).

    Returns:
        ``SimpleAugParams`` on ``device``.

    Raises:
        ValueError: unknown ``jitter_mode``.
    """
    theta = sample_affine(
        batch,
        crop_scale=crop_scale,
        crop_ratio=crop_ratio,
        flip_prob=flip_prob,
        rotation_degrees=rotation_degrees,
        generator=generator,
        device=device,
    )
    color_matrix, color_shift = sample_color(
        batch,
        jitter=jitter,
        jitter_prob=jitter_prob,
        grayscale_prob=grayscale_prob,
        jitter_mode=jitter_mode,
        generator=generator,
        device=device,
    )
    return SimpleAugParams(theta, color_matrix, color_shift)


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


def _to_float(x: Tensor, channels_last: bool = False) -> tuple[Tensor, float]:
    """Float32 version of a clip batch and the factor that maps its values to [0, 1].

    With ``channels_last`` (a 4-D input on the CPU) the conversion writes the channels-last
    layout directly (one copy): the CPU ``grid_sample`` kernel runs ~1.7x faster on it.
    """
    if x.dtype == torch.uint8:
        scale = 1.0 / 255.0
    elif x.is_floating_point():
        scale = 1.0
    else:
        raise ValueError(f"video must be uint8 or float, got dtype={x.dtype}")
    if channels_last and x.dim() == 4 and x.device.type == "cpu":
        return x.to(dtype=torch.float32, memory_format=torch.channels_last), scale
    return x.float(), scale


def _norm_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    return (
        torch.tensor(mean, dtype=torch.float32, device=device),
        torch.tensor(std, dtype=torch.float32, device=device),
    )


def augment_clips(
    clips: Tensor,
    params: SimpleAugParams,
    size: int,
    *,
    mean: tuple[float, float, float] = KINETICS_MEAN,
    std: tuple[float, float, float] = KINETICS_STD,
    field: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Apply one simple-augmentation draw per sample to N clips per sample, then normalise.

    All N clips of a sample share its draw (geometry and colour map, including the contrast
    reference: the mean luma of clip 0), so e.g. an anchor and its shifted negative get the
    same scene transform. Sampling and colour maths run in float32 (bfloat16 coordinates would
    be off by up to half a pixel); the result is cast to ``dtype``.

    Args:
        clips: (B, N, C=3, T, H, W) uint8 in [0, 255] or float in [0, 1], any device.
        params: draw from ``sample_simple_params`` (B samples, same device).
        size: output side S.
        mean: per-channel normalisation mean (on [0, 1] values).
        std: per-channel normalisation std.
        field: optional (B, S, S, 2) displacement field composed with the crop (positive).
        dtype: output dtype.

    Returns:
        (B, N, C, T, S, S) normalised tensor of ``dtype``.

    Raises:
        ValueError: if the input is not 6-D with 3 channels or has an unsupported dtype.
    """
    if clips.dim() != 6 or clips.shape[2] != 3:
        raise ValueError(f"clips must be (B, N, 3, T, H, W), got shape={tuple(clips.shape)}")
    b, n, c, t, h, w = clips.shape
    x, scale = _to_float(clips.reshape(b, n * c * t, h, w), channels_last=True)
    grid = sampling_grid(params.theta.to(x.device), size, field)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = y.reshape(b * n, c, t * size * size)
    mean_t, std_t = _norm_tensors(mean, std, x.device)
    luma = torch.tensor(_LUMA, device=x.device)
    gray_mean = (y.view(b, n, c, -1)[:, 0].mean(-1) @ luma) * scale  # (B,) in [0, 1]
    matrix = params.color_matrix.to(x.device) * scale / std_t[:, None]
    shift = (params.color_shift.to(x.device) * gray_mean)[:, None]
    bias = (shift - mean_t) / std_t  # (B, 3)
    bias = bias.repeat_interleave(n, dim=0)[:, :, None]
    out = torch.baddbmm(bias, matrix.repeat_interleave(n, dim=0), y)  # bias added in the GEMM
    for channel in range(c):  # three channels: scalar clip bounds are much faster
        low, high = -mean[channel] / std[channel], (1 - mean[channel]) / std[channel]
        out[:, channel].clamp_(low, high)
    return out.view(b, n, c, t, size, size).to(dtype)


def normalize(
    video: Tensor,
    mean: tuple[float, ...] = KINETICS_MEAN,
    std: tuple[float, ...] = KINETICS_STD,
    dtype: torch.dtype = torch.float32,
    channel_dim: int = -4,
) -> Tensor:
    """Scale to [0, 1] (uint8 input) and normalise per channel.

    Args:
        video: (..., C, T, H, W) uint8 or float in [0, 1].
        mean: per-channel mean.
        std: per-channel std.
        dtype: output dtype.
        channel_dim: index of the channel dimension.

    Returns:
        Normalised tensor of ``dtype``, same shape.
    """
    x, scale = _to_float(video)
    mean_t, std_t = _norm_tensors(mean, std, x.device)
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return ((x * scale - mean_t.view(shape)) / std_t.view(shape)).to(dtype)


def denormalize(
    x: Tensor,
    mean: tuple[float, ...] = KINETICS_MEAN,
    std: tuple[float, ...] = KINETICS_STD,
    channel_dim: int = -4,
) -> Tensor:
    """Invert ``normalize`` and clip to [0, 1] (for display).

    Args:
        x: (..., C, T, H, W) normalised tensor.
        mean: per-channel mean used to normalise.
        std: per-channel std used to normalise.
        channel_dim: index of the channel dimension.

    Returns:
        float32 tensor in [0, 1], same shape.
    """
    mean_t, std_t = _norm_tensors(mean, std, x.device)
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    return (x.float() * std_t.view(shape) + mean_t.view(shape)).clamp(0.0, 1.0)


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
    if n_crops not in (1, 3, 5):
        raise ValueError(f"n_crops must be 1, 3 or 5, got n_crops={n_crops}")
    b, c, t, h, w = video.shape
    if min(h, w) < size:
        x, scale = _to_float(video)
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
