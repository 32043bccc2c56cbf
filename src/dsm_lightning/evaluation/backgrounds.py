"""Backgrounds without a class cue for the out-of-context tests (plain tensor code).

- ``procedural_backgrounds``: class-free images (``"stripes"``, ``"noise"``), one random draw
  per image, every draw from an explicit generator;
- ``draw_other_class``: for each clip, a clip of the batch of another class (the donor of an
  ``"other_class"`` background or of a still foreground);
- ``fill_holes``: a frame with its actors removed (their pixels filled from the
  surrounding background), so an ``"other_class"`` background holds the donor's scene only;
- ``middle_frame``: a clip's middle frame and its mask.

Batched over the clips, no Python loop over samples or pixels (``evaluation.out_of_context``
composes them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_choice

__all__ = ["PROCEDURAL", "draw_other_class", "fill_holes", "middle_frame",
           "procedural_backgrounds"]

#: The class-free background kinds.
PROCEDURAL = ("stripes", "noise")


def draw_other_class(labels: Tensor, generator: torch.Generator) -> Tensor:
    """For each clip, a random clip of the batch whose label differs from its own.

    Args:
        labels: (B,) int64 labels.
        generator: random source (draws on its device).

    Returns:
        (B,) int64 indices on the labels' device with ``labels[index] != labels``.

    Raises:
        ValueError: some clip has no clip of another class in the batch.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be (B,), got {tuple(labels.shape)}")
    batch = labels.shape[0]
    scores = torch.rand(batch, batch, generator=generator, device=generator.device)
    scores = scores.to(labels.device)
    same = labels[:, None] == labels[None, :]
    if bool(same.all(dim=1).any()):
        alone = same.all(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"no clip of another class in the batch for clip(s) {alone}: the "
                         "other_class background and the conflict test need >= 2 classes")
    return scores.masked_fill(same, -1.0).argmax(dim=1)


def fill_holes(images: Tensor, holes: Tensor, passes: int = 12) -> Tensor:
    """Fill the ``holes`` (B, 1, H, W) bool of images (B, C, H, W) from their surroundings.

    Normalised box filtering, repeated: each pass sets every hole pixel that has a known
    neighbour within the window to the mean of its known neighbours, growing the known area
    by a window radius (~H / 16) per pass; pixels still unknown at the end take their
    image's mean known colour.
    """
    known = (~holes).to(images.dtype)
    filled = images * known
    radius = max(1, min(images.shape[-2:]) // 16)
    for _ in range(passes):
        total = F.avg_pool2d(filled, 2 * radius + 1, 1, radius, count_include_pad=False)
        weight = F.avg_pool2d(known, 2 * radius + 1, 1, radius, count_include_pad=False)
        reached = (weight > 0) & (known == 0)
        filled = torch.where(reached, total / weight.clamp_min(1e-12), filled)
        known = torch.maximum(known, reached.to(known.dtype))
    outside = (~holes).to(images.dtype)
    mean = (images * outside).sum(dim=(2, 3), keepdim=True) / outside.sum(
        dim=(2, 3), keepdim=True).clamp_min(1)
    return torch.where(known > 0, filled, mean)


def middle_frame(clips: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Middle frame (B, C, H, W) and its mask (B, 1, H, W) (static masks: the mask itself)."""
    middle = clips.shape[2] // 2
    frame_mask = weights[:, :, min(middle, weights.shape[2] - 1)]
    return clips[:, :, middle], frame_mask


def procedural_backgrounds(
    kind: str, shape: tuple[int, int, int, int], generator: torch.Generator,
    device: torch.device | str | None = None,
) -> Tensor:
    """Class-free images, one random draw per image.

    - ``"stripes"``: two opposite colours (``c`` ~ U(0, 1) and ``1 - c``) in hard-edged
      stripes at an angle U(0, pi), period 6-25 % of the frame side, bent by a sinusoidal
      wave (amplitude up to one period, wave length 50-150 % of the side), random phases;
    - ``"noise"``: Gaussian colour noise at 2x2 to 32x32 cells, bilinearly upsampled,
      summed with random octave weights, normalised to mean 0.5 and std 0.2 per image.

    Args:
        kind: ``"stripes"`` or ``"noise"``.
        shape: output size (B, C, H, W).
        generator: random source (draws on its device).
        device: where the result lives (default: the generator's device).

    Returns:
        (B, C, H, W) float32 images in [0, 1].

    Raises:
        ValueError: unknown kind.
    """
    check_choice("kind", kind, PROCEDURAL)
    out_device = device if device is not None else generator.device
    maker = _stripes if kind == "stripes" else _noise
    return maker(shape, generator, torch.device(out_device))


def _stripes(shape: tuple[int, int, int, int], generator: torch.Generator,
             device: torch.device) -> Tensor:
    batch, channels, height, width = shape
    draws = torch.rand(batch, 6 + channels, generator=generator, device=generator.device)
    draws = draws.to(device)
    angle, period, amplitude, wave, phase, wave_phase = (draws[:, k, None, None] for k in range(6))
    side = float(min(height, width))
    period = side * (0.06 + 0.19 * period)
    amplitude, wave = amplitude * period, side * (0.5 + wave)
    angle = angle * math.pi
    ys = torch.arange(height, device=device, dtype=torch.float32)[None, :, None]
    xs = torch.arange(width, device=device, dtype=torch.float32)[None, None, :]
    along = xs * torch.cos(angle) + ys * torch.sin(angle)
    across = -xs * torch.sin(angle) + ys * torch.cos(angle)
    bent = across + amplitude * torch.sin(2 * math.pi * (along / wave + wave_phase))
    on = (torch.sin(2 * math.pi * (bent / period + phase)) > 0)[:, None]  # (B, 1, H, W)
    colour = draws[:, 6:, None, None]
    return torch.where(on, colour, 1 - colour)


def _noise(shape: tuple[int, int, int, int], generator: torch.Generator,
           device: torch.device) -> Tensor:
    batch, channels, height, width = shape
    octaves = (2, 4, 8, 16, 32)
    weights = torch.rand(batch, len(octaves), generator=generator, device=generator.device)
    weights = weights.to(device)
    total = torch.zeros(batch, channels, height, width, device=device)
    for k, cells in enumerate(octaves):  # a loop over the five octaves, not over samples
        grid = torch.randn(batch, channels, cells, cells, generator=generator,
                           device=generator.device)
        grid = F.interpolate(grid.to(device), size=(height, width), mode="bilinear",
                             align_corners=False)
        total = total + weights[:, k, None, None, None] * grid
    flat = total.flatten(1)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + 1e-6)
    return (0.5 + 0.2 * flat).clamp(0, 1).view_as(total)
