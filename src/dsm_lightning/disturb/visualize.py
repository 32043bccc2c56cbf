"""Pictures of a triplet: a PNG grid (rows anchor/positive/negative, columns frames), an
animated GIF (anchor | positive | negative side by side) and an image of a warp field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD, denormalize

ROWS: tuple[str, ...] = ("anchor", "positive", "negative")


def _clips(
    triplet: dict[str, Tensor], sample: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> list[tuple[str, np.ndarray]]:
    """The triplet's clips for one sample as uint8 (T, H, W, 3) arrays, in ROWS order."""
    rows = [k for k in ROWS if k in triplet]
    if not rows:
        raise ValueError(f"triplet must hold at least one of {ROWS}, got keys {list(triplet)}")
    out = []
    for key in rows:
        clip = triplet[key][sample].detach()  # (C, T, H, W)
        if clip.dim() != 4:
            raise ValueError(f"triplet[{key!r}] must be (B, C, T, H, W), got {tuple(triplet[key].shape)}")
        pixels = denormalize(clip.cpu(), mean, std)
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, *pixels.shape[1:])
        frames = (pixels.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
        out.append((key, frames))
    return out


def triplet_grid(
    triplet: dict[str, Tensor],
    sample: int = 0,
    max_frames: int = 8,
    mean: tuple[float, ...] = KINETICS_MEAN,
    std: tuple[float, ...] = KINETICS_STD,
    gap: int = 2,
) -> Image.Image:
    """Grid image of one sample: rows anchor / positive / negative, columns frames.

    Args:
        triplet: ``TripletBuilder`` output (normalised (B, C, T, H, W) tensors); missing keys
            are skipped.
        sample: which clip of the batch.
        max_frames: at most this many evenly spaced frames.
        mean: normalisation mean to undo.
        std: normalisation std to undo.
        gap: white pixels between tiles.

    Returns:
        RGB ``PIL.Image``.

    Raises:
        ValueError: if the dict holds none of the rows.
    """
    clips = _clips(triplet, sample, mean, std)
    t, h, w, _ = clips[0][1].shape
    shown = np.unique(np.linspace(0, t - 1, min(max_frames, t)).round().astype(int))
    rows, cols = len(clips), len(shown)
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for r, (_, frames) in enumerate(clips):
        for c, f in enumerate(shown):
            y, x = r * (h + gap), c * (w + gap)
            canvas[y : y + h, x : x + w] = frames[min(f, frames.shape[0] - 1)]
    return Image.fromarray(canvas)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as a PNG at ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def save_triplet_png(path: str | Path, triplet: dict[str, Tensor], **kwargs) -> Path:
    """Write ``triplet_grid(triplet, **kwargs)`` as a PNG; returns the path."""
    return save_png(triplet_grid(triplet, **kwargs), path)


def save_triplet_gif(
    path: str | Path,
    triplet: dict[str, Tensor],
    sample: int = 0,
    mean: tuple[float, ...] = KINETICS_MEAN,
    std: tuple[float, ...] = KINETICS_STD,
    duration_ms: int = 120,
    gap: int = 2,
) -> Path:
    """Write an animated GIF of one sample: anchor | positive | negative side by side.

    Args:
        path: output file.
        triplet: ``TripletBuilder`` output.
        sample: which clip of the batch.
        mean: normalisation mean to undo.
        std: normalisation std to undo.
        duration_ms: display time per frame.
        gap: white pixels between clips.

    Returns:
        The path written.
    """
    clips = _clips(triplet, sample, mean, std)
    t, h, w, _ = clips[0][1].shape
    n = len(clips)
    images = []
    for f in range(t):  # one image per frame of one sample: display code, not the hot path
        canvas = np.full((h, n * w + (n - 1) * gap, 3), 255, np.uint8)
        for i, (_, frames) in enumerate(clips):
            canvas[:, i * (w + gap) : i * (w + gap) + w] = frames[min(f, frames.shape[0] - 1)]
        images.append(Image.fromarray(canvas))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
    )
    return path


def field_image(field: Tensor, sample: int = 0, max_norm: float | None = None) -> Image.Image:
    """Colour image of a displacement field: hue = direction, brightness = magnitude.

    Args:
        field: (B, S, S, 2) or (S, S, 2) displacement (normalised coordinates).
        sample: which clip when batched.
        max_norm: magnitude shown at full brightness (default: the field's maximum).

    Returns:
        RGB ``PIL.Image`` of S x S pixels (black = no displacement).
    """
    f = field[sample] if field.dim() == 4 else field
    f = f.detach().float().cpu()
    magnitude = f.norm(dim=-1)
    scale = max_norm if max_norm is not None else float(magnitude.max())
    value = (magnitude / scale).clamp(0, 1) if scale > 0 else torch.zeros_like(magnitude)
    hue = (torch.atan2(f[..., 1], f[..., 0]) / (2 * math.pi)) % 1.0
    # HSV (s = 1) -> RGB, vectorised
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[..., None] * 6) % 6
    rgb = value[..., None] * (1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return Image.fromarray((rgb * 255).round().to(torch.uint8).numpy())
