"""Colour of the device-side augmentations: jitter and grayscale as one affine colour map.

One draw per clip, shared by its frames: brightness, contrast, saturation and hue factors
and a grayscale switch become a (3, 3) matrix and a contrast offset, applied to every pixel
with one batched matrix product (``simple.augment_clips``). Plain tensor code. The
settings' defaults live in ``ClipTransform`` (one declaration).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice
from dsm_lightning.disturb.rng import rand_uniform

__all__ = ["JITTER_MODES", "LUMA", "sample_color"]

#: ITU-R BT.601 luma weights (what torchvision's rgb_to_grayscale uses).
LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ; its first row is the luma, the I and Q rows sum to zero.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)
#: ``jitter_mode`` values: every colour op per jittered clip, or exactly one of them.
JITTER_MODES: tuple[str, ...] = ("all", "one_of")


def sample_color(
    batch: int,
    *,
    jitter: tuple[float, float, float, float],
    jitter_prob: float,
    grayscale_prob: float,
    jitter_mode: str,
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
    luma_rows = torch.tensor(LUMA, device=device).expand(3, 3)
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
