"""Synthetic triplet data for the pretraining tests: moving squares on textured scenes.

Every sample is a square moving with a constant velocity over a smooth random background
(the "scene"). ``anchor``: scene + motion; ``positive``: the same motion on a disturbed
scene (flipped, shifted and re-noised background); ``negative``: the same scene with the
motion reversed in time. All tensors are built by batched torch ops from a seed, so the data
is deterministic.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def make_triplets(
    n: int, frames: int = 8, size: int = 32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``n`` triplets ``(n, 3, frames, size, size)`` plus ``label`` (motion class) and ``index``."""
    g = torch.Generator().manual_seed(seed)
    # smooth random backgrounds (B, 3, H, W)
    low = torch.rand(n, 3, 4, 4, generator=g)
    background = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    disturbed_low = torch.rand(n, 3, 4, 4, generator=g)
    disturbed = F.interpolate(disturbed_low, size=(size, size), mode="bilinear",
                              align_corners=False)
    disturbed = 0.5 * background.flip(-1).roll(size // 3, dims=-2) + 0.5 * disturbed
    # trajectories: 4 directions, start positions random, speed 2 px / frame
    label = torch.randint(0, 4, (n,), generator=g)
    directions = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    velocity = 2.0 * directions[label]  # (n, 2) (x, y)
    start = size / 2 - velocity * (frames - 1) / 2 + (torch.rand(n, 2, generator=g) - 0.5) * 6
    t = torch.arange(frames, dtype=torch.float32)
    centre = start[:, None, :] + velocity[:, None, :] * t[None, :, None]  # (n, T, 2)
    colour = torch.rand(n, 3, generator=g) * 0.5 + 0.5

    def render(scene: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        coords = torch.arange(size, dtype=torch.float32)
        in_x = (coords[None, None, None, :] - centres[:, :, 0, None, None]).abs() < 4
        in_y = (coords[None, None, :, None] - centres[:, :, 1, None, None]).abs() < 4
        mask = (in_x & in_y).float()[:, None]  # (n, 1, T, H, W)
        video = scene[:, :, None].expand(-1, -1, frames, -1, -1)
        return (video * (1 - mask) + colour[:, :, None, None, None] * mask - 0.5) / 0.25

    return {
        "anchor": render(background, centre),
        "positive": render(disturbed, centre),
        "negative": render(background, centre.flip(1)),
        "label": label,
        "index": torch.arange(n),
    }


class TripletDataset(Dataset):
    """Map-style view of :func:`make_triplets` output (optionally only some indices)."""

    def __init__(self, tensors: dict[str, torch.Tensor], indices: list[int] | None = None):
        self.tensors = tensors
        self.indices = list(range(len(tensors["index"]))) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.indices[i]
        return {key: value[j] for key, value in self.tensors.items()}


class TripletDataModule(pl.LightningDataModule):
    """Deterministic triplet batches; with ``rank_slices`` each rank gets a contiguous slice
    of every global batch (so gathered keys are in the same order as one process); with
    ``repeat`` the ``n`` samples are repeated ``repeat`` times per epoch."""

    def __init__(self, n: int = 32, batch_size: int = 8, frames: int = 8, size: int = 32,
                 seed: int = 0, drop_negative: bool = False, rank_slices: int = 1,
                 rank: int = 0, repeat: int = 1):
        super().__init__()
        self.tensors = make_triplets(n, frames, size, seed)
        if repeat > 1:  # every `n` samples repeat: an epoch replayed from any batch is the same
            self.tensors = {k: v.repeat(repeat, *([1] * (v.ndim - 1)))
                            for k, v in self.tensors.items()}
        if drop_negative:
            del self.tensors["negative"]
        self.batch_size, self.rank_slices, self.rank = batch_size, rank_slices, rank

    def train_dataloader(self) -> DataLoader:
        n = len(self.tensors["index"])
        local = self.batch_size // self.rank_slices
        rank = self.trainer.global_rank if self.trainer is not None else self.rank
        indices = [i for i in range(n) if (i // local) % self.rank_slices == rank]
        return DataLoader(TripletDataset(self.tensors, indices), batch_size=local,
                          shuffle=False, drop_last=True)
