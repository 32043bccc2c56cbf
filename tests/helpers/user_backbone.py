"""A user's own network, not in the registry, for the both-directions tests."""

from __future__ import annotations

import torch
from torch import nn


class MyNet(nn.Module):
    """Feature map (B, 6, T, H, W) from a conv and a BatchNorm (a buffer that must round-trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.norm = nn.BatchNorm3d(6)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(video)).relu()
