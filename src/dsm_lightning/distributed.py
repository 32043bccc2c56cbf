"""The package's only use of ``torch.distributed``; every function is a no-op in one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "is_distributed",
    "world_size",
    "rank",
    "gather_no_grad",
    "gather_variable_no_grad",
]


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_no_grad(tensor: Tensor) -> Tensor:
    """All-gather along dim 0 without gradient (every rank must pass the same shape).

    Args:
        tensor: ``(N, ...)``.

    Returns:
        ``(world_size * N, ...)`` in rank order; the input itself in one process.
    """
    if not is_distributed():
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def gather_variable_no_grad(tensor: Tensor) -> Tensor:
    """All-gather along dim 0 when ranks hold different numbers of rows (no gradient).

    Args:
        tensor: ``(N_r, ...)``; ``N_r`` may differ between ranks, the other dims may not.

    Returns:
        ``(sum_r N_r, ...)`` in rank order; the input itself in one process.
    """
    if not is_distributed():
        return tensor.detach()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = gather_no_grad(size).tolist()
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor.detach()
    parts = gather_no_grad(padded).split(max(sizes), dim=0)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)
