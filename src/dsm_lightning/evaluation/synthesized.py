"""The out-of-context tests of a study, synthesized from any labelled split and cached.

For one split, one background kind (``out_of_context.BACKGROUNDS``) and one seed, every
video's evaluation windows are turned into three clips of the same shape
(``out_of_context.synthesize_tests``, one background draw for the three): ``swap`` (its
moving foreground on the new background),
``static`` (the swap clip's middle frame repeated) and ``conflict`` (a still foreground of a
video of another class inserted into the swap clip). Videos are synthesized ``chunk`` at a
time in a seeded shuffled order, so that the donors of backgrounds and still foregrounds
come from other classes; the three tests of a chunk are made from one swap clip, so the
static clip is the swap clip's frame and the conflict clip holds the swap clip's
background. The result is cached as uint8 tensors, one file per (split, background, seed),
and read back by every encoder of the study.

Foreground masks come from the clips themselves (FAME's motion-saliency estimate,
``masks="estimated"``) or from the source (``masks="source"``: a ``foreground_masks(split)``
method, e.g. the synthetic sources' true masks, aligned with the clips' frames here). For a
source that knows its masks, ``foreground_iou`` of the estimate against the truth is
measured on the same clips (the ``mask_iou`` of the study's report).

Plain torch: the caller hands in the split's batches (uint8 ``video`` (B, V, C, T, H, W),
``label``, ``index``) and, for true masks, a function giving a video's (V, T, H, W) masks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice, check_int
from dsm_lightning.evaluation.out_of_context import (
    BACKGROUNDS,
    TESTS,
    estimate_foreground,
    foreground_iou,
    synthesize_tests,
)

__all__ = ["MASK_SOURCES", "OutOfContextTests", "SynthesizedSplit", "synthesize_split"]

#: Where the foreground masks come from.
MASK_SOURCES = ("estimated", "source")
_FORMAT = 1


@dataclass(frozen=True)
class OutOfContextTests:
    """The synthesized tests of a study (``out_of_context:`` in a ``dsm study`` config).

    Args:
        backgrounds: background kinds, each a named variant of the tests (``BACKGROUNDS``:
            ``"other_class"`` = a frame of a video of another class with its actors
            removed, ``"stripes"`` and ``"noise"`` = class-free images); empty = no tests.
        split: the labelled split synthesized (None = the study's in-distribution test split).
        masks: ``"estimated"`` (FAME's motion saliency on each clip, any data) or
            ``"source"`` (the source's ``foreground_masks``, e.g. the synthetic sources').
        chunk: videos synthesized together (the donors are drawn among them).
        max_videos: synthesize only the first this many videos of the shuffled split
            (None = all).

    Raises:
        ValueError: an unknown background or mask source, or a bad number.
    """

    backgrounds: tuple[str, ...] = ("other_class", "stripes")
    split: str | None = None
    masks: str = "estimated"
    chunk: int = 64
    max_videos: int | None = None

    def __post_init__(self) -> None:
        backgrounds = (self.backgrounds,) if isinstance(self.backgrounds, str) else tuple(
            self.backgrounds)
        for name in backgrounds:
            check_choice("out_of_context.backgrounds", name, BACKGROUNDS)
        if len(set(backgrounds)) != len(backgrounds):
            raise ValueError(f"out_of_context.backgrounds repeats a name: {backgrounds}")
        object.__setattr__(self, "backgrounds", backgrounds)
        check_choice("out_of_context.masks", self.masks, MASK_SOURCES)
        check_int("out_of_context.chunk", self.chunk, 2)
        if self.max_videos is not None:
            check_int("out_of_context.max_videos", self.max_videos, 2)


@dataclass
class SynthesizedSplit:
    """The out-of-context clips of one split, background kind and seed.

    Attributes:
        clips: test name (``TESTS``) -> uint8 (N, V, C, T, H, W) clips.
        labels: (N,) int64 labels of the videos (of their moving foregrounds).
        still_labels: (N,) int64 labels of the conflict clips' still foregrounds.
        index: (N,) int64 positions of the videos in the split.
        mask_iou: mean IoU of the estimated foreground against the source's masks (None
            when the source has none).
    """

    clips: dict[str, Tensor]
    labels: Tensor
    still_labels: Tensor
    index: Tensor
    mask_iou: float | None = None

    def batches(self, test: str, batch_size: int = 16) -> Iterator[dict[str, Tensor]]:
        """The clips of ``test`` as study batches (``video``, ``label``, ``index``)."""
        check_choice("test", test, TESTS)
        clips = self.clips[test]
        for start in range(0, len(self.labels), batch_size):
            part = slice(start, start + batch_size)
            yield {"video": clips[part], "label": self.labels[part], "index": self.index[part]}


def _to_unit(video: Tensor) -> Tensor:
    return video.float() / 255.0


def _to_uint8(video: Tensor) -> Tensor:
    return (video * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _chunks(batches: Iterable[Mapping[str, Tensor]], size: int,
            limit: int | None) -> Iterator[dict[str, Tensor]]:
    """Concatenate batches into chunks of ``size`` videos (the last may be smaller)."""
    held: list[Mapping[str, Tensor]] = []
    count = taken = 0
    for batch in batches:
        if limit is not None and taken >= limit:
            break
        keep = len(batch["label"]) if limit is None else min(len(batch["label"]), limit - taken)
        batch = {k: batch[k][:keep] for k in ("video", "label", "index")}
        held.append(batch)
        count, taken = count + keep, taken + keep
        if count >= size:
            yield {k: torch.cat([b[k] for b in held]) for k in ("video", "label", "index")}
            held, count = [], 0
    if held:
        yield {k: torch.cat([b[k] for b in held]) for k in ("video", "label", "index")}


def _key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def synthesize_split(
    batches: Iterable[Mapping[str, Tensor]],
    background: str,
    seed: int,
    tests: OutOfContextTests | None = None,
    true_masks: Callable[[Tensor], Tensor] | None = None,
    cache: str | Path | None = None,
    identity: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> SynthesizedSplit:
    """Synthesize (or read back from ``cache``) the out-of-context clips of a split.

    Args:
        batches: the split's batches in a seeded shuffled order: uint8 ``video``
            (B, V, C, T, H, W) (or (B, C, T, H, W): one window), int64 ``label``, ``index``.
        background: one of ``BACKGROUNDS``.
        seed: seed of every draw (donors, procedural backgrounds).
        tests: the settings (chunk, max_videos, masks); None = the defaults.
        true_masks: ``index`` (B,) -> bool (B, V, T, H, W) masks of those videos' clips (the
            source's); used for the clips with ``masks="source"`` and, either way, for the
            IoU of the estimate against them. None: no true masks.
        cache: a ``.pt`` file to read the result from, or write it to (None = no cache).
        identity: what identifies the inputs (data settings, split, ...); a cached file
            with another identity is synthesized again.
        device: where the synthesis runs.

    Returns:
        A ``SynthesizedSplit``.

    Raises:
        ValueError: an unknown background, ``masks="source"`` without ``true_masks``, no
            video, or a chunk with a single class (no donor of another class).
    """
    tests = tests or OutOfContextTests()
    check_choice("background", background, BACKGROUNDS)
    if tests.masks == "source" and true_masks is None:
        raise ValueError("out_of_context.masks='source' needs a source with foreground_masks "
                         "(e.g. the synthetic sources); use masks: estimated")
    key = _key({"format": _FORMAT, "background": background, "seed": seed,
                "tests": asdict(tests), "identity": dict(identity or {})})
    path = Path(cache) if cache is not None else None
    if path is not None and path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored.get("key") == key:
            return SynthesizedSplit(stored["clips"], stored["labels"], stored["still_labels"],
                                    stored["index"], stored.get("mask_iou"))
    parts: dict[str, list[Tensor]] = {t: [] for t in TESTS}
    labels, still, index, ious = [], [], [], []
    for number, chunk in enumerate(_chunks(batches, tests.chunk, tests.max_videos)):
        video, label = chunk["video"].to(device), chunk["label"].to(device).long()
        if video.dim() == 5:  # one window per video: (B, C, T, H, W) -> (B, 1, C, T, H, W)
            video = video[:, None]
        truth = true_masks(chunk["index"]).to(device) if true_masks is not None else None
        views: dict[str, list[Tensor]] = {t: [] for t in TESTS}
        # the windows of a video share its donors: each window position is synthesized with
        # the same generator state (a few positions, each batched over the chunk's videos)
        for view in range(video.shape[1]):
            clips = _to_unit(video[:, view])
            estimate = estimate_foreground(clips)  # once for the three tests
            if truth is not None:
                ious.append(foreground_iou(estimate, truth[:, view]).cpu())
            masks = truth[:, view] if tests.masks == "source" else estimate
            generator = torch.Generator().manual_seed(seed * 1_000_003 + number)
            made = synthesize_tests(background, clips, label, masks, generator)
            for test in TESTS:
                views[test].append(_to_uint8(made[test].clips).cpu())
            if view == 0:
                still.append(made["conflict"].still_labels.cpu())
        for test in TESTS:
            parts[test].append(torch.stack(views[test], dim=1))
        labels.append(chunk["label"].long())
        index.append(chunk["index"].long())
    if not labels:
        raise ValueError("no video to synthesize the out-of-context tests from (empty split)")
    result = SynthesizedSplit(
        {t: torch.cat(parts[t]) for t in TESTS}, torch.cat(labels), torch.cat(still),
        torch.cat(index), float(torch.cat(ious).mean()) if ious else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "clips": result.clips, "labels": result.labels,
                    "still_labels": result.still_labels, "index": result.index,
                    "mask_iou": result.mask_iou}, path)
    return result
