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

The clip-level kinds are handled by ``TripletBuilder``: ``"shift"``, the temporally shifted
clip of the same video from the data layer (``video_shift``), and ``"other_video"``, a clip
of *another* video of the batch (the public code's negative for Something-Something).

New frame-level kinds plug in with :func:`register_frame_kind`; ``TripletBuilder`` accepts
every registered name in ``negative_kinds``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import overload

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice, check_fraction
from dsm_lightning.disturb.rng import choose, rand_uniform, selection_weights
from dsm_lightning.registry import Registry

#: The built-in frame-level kinds (see :func:`frame_kinds` for every registered one).
FRAME_KINDS: tuple[str, ...] = ("swap", "insert", "shuffle", "reverse", "static")
#: Negatives made of another clip rather than the anchor's frames (built by TripletBuilder).
CLIP_KINDS: tuple[str, ...] = ("shift", "other_video")
NEGATIVE_KINDS: tuple[str, ...] = (*CLIP_KINDS, *FRAME_KINDS)

#: ``builder(batch, frames, *, length, generator, device) -> (B, T) int64 frame indices``.
IndexBuilder = Callable[..., Tensor]
_FRAME_BUILDERS: Registry[IndexBuilder] = Registry("frame kind")


@overload
def register_frame_kind(
    name: str, builder: None = None, *, overwrite: bool = False
) -> Callable[[IndexBuilder], IndexBuilder]: ...


@overload
def register_frame_kind(
    name: str, builder: IndexBuilder, *, overwrite: bool = False
) -> IndexBuilder: ...


def register_frame_kind(
    name: str, builder: IndexBuilder | None = None, *, overwrite: bool = False
) -> IndexBuilder | Callable[[IndexBuilder], IndexBuilder]:
    """Register a frame-level negative kind (usable as a decorator).

    The builder receives ``(batch, frames, *, length, generator, device)`` (``length`` is
    ``local_fraction * frames``, at least 1) and returns ``(B, T)`` int64 frame indices made
    with vectorised ops; no row may be the identity (checked on every call). A taken name
    follows the package's one rule (:mod:`dsm_lightning.registry`): the same definition
    registered again (a re-run cell or script) replaces it, another builder needs
    ``overwrite=True``.

    Args:
        name: the kind's name in ``negative_kinds``.
        builder: the index builder; omitted when used as ``@register_frame_kind("name")``.
        overwrite: replace another builder registered under ``name``.

    Returns:
        ``builder`` unchanged, or the decorator (which returns the builder unchanged).

    Raises:
        ValueError: the name is a clip-level kind (``"shift"``, ``"other_video"``), empty,
            or taken by another builder (without ``overwrite``).
    """
    if name in CLIP_KINDS:
        raise ValueError(f"cannot register a frame kind named {name!r}: a clip-level kind")
    return _FRAME_BUILDERS.register(name, builder, overwrite=overwrite)


def frame_kinds() -> tuple[str, ...]:
    """Every registered frame-level kind, built-ins first."""
    return _FRAME_BUILDERS.names()


def negative_kinds() -> tuple[str, ...]:
    """Every valid ``negative_kinds`` entry: the clip-level kinds plus the frame-level kinds."""
    return (*CLIP_KINDS, *_FRAME_BUILDERS.names())


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
    """(B, T) int64 indices where two disjoint segments of ``length`` frames (L >= 1, T >= 2 L)
    trade places; every draw from ``generator``, the result on ``device``."""
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
    """(B, T) int64 indices where a segment of ``length`` frames (1 <= L < T) is moved to
    another position; every draw from ``generator``, the result on ``device``."""
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
        kinds: non-empty subset of the registered kinds (:func:`frame_kinds`).
        probs: selection probabilities per kind; ``None`` = uniform.
        local_fraction: fraction of T moved by ``swap`` / ``insert``.
        generator: random source.
        device: where the results live.

    Returns:
        ``(indices (B, T) int64, kind (B,) int64 index into kinds)``.

    Raises:
        ValueError: for an unknown kind, bad ``probs`` or ``frames < 2``.
    """
    unknown = [k for k in kinds if k not in _FRAME_BUILDERS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {frame_kinds()}, got {kinds}")
    if frames < 2:
        raise ValueError(f"frame-level disturbances need at least 2 frames, got frames={frames}")
    weights = selection_weights(kinds, probs, "probs")
    length = local_length(frames, local_fraction)
    identity = torch.arange(frames, device=device)
    rows = []
    for k in kinds:  # one vectorised builder call per kind, not per sample
        rows.append(_FRAME_BUILDERS.get(k)(batch, frames, length=length, generator=generator,
                                       device=device).to(device))
        if rows[-1].shape != (batch, frames) or (rows[-1] == identity).all(dim=1).any():
            raise ValueError(f"frame kind {k!r} returned {tuple(rows[-1].shape)} indices or an "
                             "identity row (the negative must not be in the anchor's order)")
    candidates = torch.stack(rows, dim=1)  # (B, K, T)
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


register_frame_kind(
    "swap", lambda b, t, *, length, generator, device: swap_indices(
        b, t, length, generator=generator, device=device))
register_frame_kind(
    "insert", lambda b, t, *, length, generator, device: insert_indices(
        b, t, length, generator=generator, device=device))
register_frame_kind(
    "shuffle", lambda b, t, *, length, generator, device: shuffle_indices(
        b, t, generator=generator, device=device))
register_frame_kind(
    "reverse", lambda b, t, *, length, generator, device: reverse_indices(b, t, device=device))
register_frame_kind(
    "static", lambda b, t, *, length, generator, device: static_indices(
        b, t, generator=generator, device=device))


#: ``mode`` values of ``TemporalDisturbance``: one negative per clip, or one of each kind.
NEGATIVE_MODES: tuple[str, ...] = ("sample", "all")


@dataclass(frozen=True)
class TemporalDisturbance:
    """Which hard negative(s) each clip gets (settings, validated at construction).

    The clip-level kinds (``"shift"``, ``"other_video"``) are clips the caller builds (they
    need the simple augmentation) and hands to :meth:`negatives`; the frame-level kinds are
    re-orderings of the augmented anchor's frames, drawn here.

    Attributes:
        kinds: distinct names from :func:`negative_kinds` (empty: no negative).
        probs: selection probabilities per kind (normalised); None = uniform.
        local_fraction: fraction of T moved by ``swap`` / ``insert``, in (0, 0.5].
        mode: ``"sample"``: one negative per clip, its kind drawn with ``probs``;
            ``"all"``: one per kind and clip, stacked on dim 1 in the order of ``kinds``.
    """

    kinds: tuple[str, ...] = ("shift",)
    probs: tuple[float, ...] | None = None
    local_fraction: float = 0.1
    mode: str = "sample"

    def __post_init__(self) -> None:
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        known = negative_kinds()
        if any(k not in known for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(f"negative_kinds must be distinct names from {known}, got "
                             f"negative_kinds={self.kinds}")
        probs = selection_weights(kinds, self.probs, "negative_probs") if kinds else None
        fraction = check_fraction("local_fraction", self.local_fraction, 0.0, 0.5,
                                  open_low=True)
        check_choice("negative_mode", self.mode, NEGATIVE_MODES)
        for name, value in (("kinds", kinds), ("probs", probs), ("local_fraction", fraction)):
            object.__setattr__(self, name, value)

    def without_shift(self) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """``(kinds, probs)`` usable without a shifted clip: ``"shift"`` dropped.

        Raises:
            ValueError: ``"shift"`` is the only kind.
        """
        if self.kinds == ("shift",):
            raise ValueError("negative_kinds=('shift',) needs video_shift; pass the data "
                             "layer's 'video_shift' or add frame-level kinds")
        keep = [i for i, k in enumerate(self.kinds) if k != "shift"]
        return tuple(self.kinds[i] for i in keep), tuple(self.probs[i] for i in keep)

    def reorder(self, anchor: Tensor, kinds: tuple[str, ...], probs: tuple[float, ...],
                generator: torch.Generator | None = None) -> Tensor:
        """Frame-level negatives: the anchor's frames re-indexed, one drawn kind per clip."""
        index, _ = sample_frame_indices(
            anchor.shape[0], anchor.shape[2], kinds=kinds, probs=probs,
            local_fraction=self.local_fraction, generator=generator, device=anchor.device)
        return reorder_frames(anchor, index)

    def negatives(
        self, anchor: Tensor, clip_negatives: Mapping[str, Tensor], kinds: tuple[str, ...],
        probs: tuple[float, ...], generator: torch.Generator | None = None,
    ) -> Tensor:
        """The hard negatives of a batch.

        Args:
            anchor: (B, C, T, H, W) augmented anchors (frame-level kinds re-order them).
            clip_negatives: the clip-level candidates of ``kinds``, each (B, C, T, H, W).
            kinds: the kinds in use (``kinds``, or ``without_shift()``'s).
            probs: their probabilities.
            generator: random source.

        Returns:
            (B, C, T, H, W) with ``mode="sample"``, (B, M, C, T, H, W) with ``"all"``.
        """
        if self.mode == "all":
            return torch.stack([clip_negatives[k] if k in clip_negatives
                                else self.reorder(anchor, (k,), (1.0,), generator)
                                for k in kinds], dim=1)
        # the clip-level kinds each form one candidate; the frame-level kinds together one
        # (their own draw picks the kind); one uniform per clip then picks the candidate
        candidates = [clip_negatives[k] for k in kinds if k in clip_negatives]
        weights = [p for k, p in zip(kinds, probs) if k in clip_negatives]
        frame_kinds_used = tuple(k for k in kinds if k not in clip_negatives)
        if frame_kinds_used:
            frame_probs = tuple(p for k, p in zip(kinds, probs) if k not in clip_negatives)
            candidates.append(self.reorder(anchor, frame_kinds_used, frame_probs, generator))
            weights.append(sum(frame_probs))
        if len(candidates) == 1:
            return candidates[0]
        total = sum(weights)
        pick = choose(tuple(w / total for w in weights),
                      rand_uniform((anchor.shape[0],), generator=generator, device=anchor.device))
        out = candidates[-1]
        for i in range(len(candidates) - 2, -1, -1):  # a few kinds, never a loop over clips
            out = torch.where((pick == i)[:, None, None, None, None], candidates[i], out)
        return out
