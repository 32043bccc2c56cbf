"""Random draws of the device-side disturbances: uniforms, weighted choices (plain tensor code).

Every draw takes an explicit ``torch.Generator`` and happens on ``generator.device`` (a CPU
generator gives the same draws whatever device the clips live on), or on ``device`` from the
global RNG without one; results are moved to ``device``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["choose", "rand_uniform", "selection_weights"]


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
