"""Temporal Local Disturbance (TLD): frame re-orderings that keep the scene, break the motion.

Frame-level negatives are a per-sample re-indexing of the anchor along time: every kind below
builds a ``(B, T)`` index tensor with vectorised ops (no loop over samples or frames) and
``reorder_frames`` gathers the frames. Every index row is guaranteed to differ from the
identity ``0, 1, ..., T - 1`` (for ``T >= 2``):

- ``swap``: two disjoint segments of ``L = round(local_fraction * T)`` (>= 1) frames trade
  places.
- ``insert``: a segment of ``L`` frames is cut out and inserted at another position.
- ``shuffle``: a random permutation (an identity draw is replaced by a cyclic shift by one).
- ``reverse``: the frames backwards.
- ``static``: one random frame repeated ``T`` times (zero temporal difference).

The temporally shifted clip (kind ``"shift"``) comes from the data layer (``video_shift``)
and is handled by ``TripletBuilder``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsm_lightning.disturb.simple import choose, rand_uniform, selection_weights

FRAME_KINDS: tuple[str, ...] = ("swap", "insert", "shuffle", "reverse", "static")
NEGATIVE_KINDS: tuple[str, ...] = ("shift", *FRAME_KINDS)


def local_length(frames: int, local_fraction: float) -> int:
    """Number of frames L moved by a swap or insertion: ``round(fraction * T)``, at least 1.

    Args:
        frames: clip length T.
        local_fraction: fraction of T.

    Returns:
        L, clipped to ``T // 2`` so that two disjoint segments fit.
    """
    return max(1, min(round(local_fraction * frames), frames // 2))


def _floor_index(u: Tensor, count: Tensor | int) -> Tensor:
    return (u * count).floor().long()


def reverse_indices(batch: int, frames: int, device: torch.device | str | None = None) -> Tensor:
    """(B, T) indices ``T - 1, ..., 0``."""
    return torch.arange(frames - 1, -1, -1, device=device).expand(batch, frames)


def static_indices(
    batch: int,
    frames: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, T) indices repeating one random frame per clip."""
    u = rand_uniform((batch, 1), generator=generator, device=device)
    return _floor_index(u, frames).clamp_(max=frames - 1).expand(batch, frames)


def shuffle_indices(
    batch: int,
    frames: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, T) random permutations (argsort of random keys), never the identity for T >= 2."""
    keys = rand_uniform((batch, frames), generator=generator, device=device)
    index = keys.argsort(dim=1)
    identity = torch.arange(frames, device=index.device)
    is_identity = (index == identity).all(dim=1, keepdim=True)
    return torch.where(is_identity, identity.roll(1), index)


def swap_indices(
    batch: int,
    frames: int,
    length: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, T) indices where two disjoint segments of ``length`` frames trade places.

    Args:
        batch: number of clips B.
        frames: clip length T (>= 2 * length).
        length: segment length L >= 1.
        generator: random source.
        device: where the result lives.

    Returns:
        (B, T) int64 indices.
    """
    u = rand_uniform((2, batch, 1), generator=generator, device=device)
    first = _floor_index(u[0], frames - 2 * length + 1)
    second_lo = first + length
    second = second_lo + _floor_index(u[1], frames - length - second_lo + 1)
    t = torch.arange(frames, device=first.device)[None]
    in_first = (t >= first) & (t < first + length)
    in_second = (t >= second) & (t < second + length)
    index = torch.where(in_first, t - first + second, t)
    return torch.where(in_second, t - second + first, index)


def insert_indices(
    batch: int,
    frames: int,
    length: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, T) indices where a segment of ``length`` frames is moved to another position.

    Args:
        batch: number of clips B.
        frames: clip length T (> length).
        length: segment length L >= 1.
        generator: random source.
        device: where the result lives.

    Returns:
        (B, T) int64 indices.
    """
    u = rand_uniform((2, batch, 1), generator=generator, device=device)
    slots = frames - length + 1  # possible segment starts
    source = _floor_index(u[0], slots)
    target = (source + 1 + _floor_index(u[1], slots - 1)) % slots  # any start but `source`
    t = torch.arange(frames, device=source.device)[None]
    in_segment = (t >= target) & (t < target + length)
    rest = torch.where(t < target, t, t - length)  # position among the remaining frames
    rest = torch.where(rest < source, rest, rest + length)
    return torch.where(in_segment, source + t - target, rest)


def sample_frame_indices(
    batch: int,
    frames: int,
    *,
    kinds: tuple[str, ...] = FRAME_KINDS,
    probs: tuple[float, ...] | None = None,
    local_fraction: float = 0.1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample one frame-level disturbance per clip.

    Args:
        batch: number of clips B.
        frames: clip length T (>= 2).
        kinds: non-empty subset of ``FRAME_KINDS``.
        probs: selection probabilities per kind; ``None`` = uniform.
        local_fraction: fraction of T moved by ``swap`` / ``insert``.
        generator: random source.
        device: where the results live.

    Returns:
        ``(indices (B, T) int64, kind (B,) int64 index into kinds)``.

    Raises:
        ValueError: for an unknown kind, bad ``probs`` or ``frames < 2``.
    """
    unknown = [k for k in kinds if k not in FRAME_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {FRAME_KINDS}, got {kinds}")
    if frames < 2:
        raise ValueError(f"frame-level disturbances need at least 2 frames, got frames={frames}")
    weights = selection_weights(kinds, probs, "probs")
    length = local_length(frames, local_fraction)
    builders = {
        "swap": lambda: swap_indices(batch, frames, length, generator=generator, device=device),
        "insert": lambda: insert_indices(batch, frames, length, generator=generator, device=device),
        "shuffle": lambda: shuffle_indices(batch, frames, generator=generator, device=device),
        "reverse": lambda: reverse_indices(batch, frames, device=device),
        "static": lambda: static_indices(batch, frames, generator=generator, device=device),
    }
    candidates = torch.stack([builders[k]().to(device) for k in kinds], dim=1)  # (B, K, T)
    kind = choose(weights, rand_uniform((batch,), generator=generator, device=device))
    index = candidates[torch.arange(batch, device=kind.device), kind]
    return index, kind


def reorder_frames(video: Tensor, index: Tensor) -> Tensor:
    """Gather frames per clip: ``out[b, :, t] = video[b, :, index[b, t]]``.

    Args:
        video: (B, C, T, H, W) any dtype.
        index: (B, T') int64 frame indices in [0, T).

    Returns:
        (B, C, T', H, W) tensor.
    """
    b, c, _, h, w = video.shape
    index = index.to(video.device)
    expanded = index[:, None, :, None, None].expand(b, c, index.shape[1], h, w)
    return torch.gather(video, 2, expanded)
