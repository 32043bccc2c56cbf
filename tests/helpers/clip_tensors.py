"""Synthetic clip tensors shared by the disturbance tests (no files, no decoding)."""

from __future__ import annotations

import torch

from dsm_lightning.disturb import KINETICS_MEAN, KINETICS_STD


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def textured(batch: int, frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (batch, 3, frames, size, size): smooth random texture, every frame different."""
    coarse = torch.rand(batch * frames, 3, size // 4, size // 4, generator=gen(seed))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    video = smooth.view(batch, frames, 3, size, size).transpose(1, 2)
    return (video * 255).round().to(torch.uint8)


def bounds() -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised values of 0 and 1 per channel, shaped (1, 3, 1, 1, 1)."""
    mean, std = torch.tensor(KINETICS_MEAN), torch.tensor(KINETICS_STD)
    return (-mean / std).view(1, 3, 1, 1, 1), ((1 - mean) / std).view(1, 3, 1, 1, 1)
