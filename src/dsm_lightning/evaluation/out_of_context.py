"""Out-of-context test clips synthesized from any labelled batch (plain tensor code).

After SCUBA / SCUFO and the conflicting-foreground test of Li et al., "Mitigating and
Evaluating Static Bias of Action Representations in the Background and the Foreground",
ICCV 2023 (arXiv 2211.12883), with foreground masks found as FAME finds them
(``disturb/fame.py``) or given by the user (e.g. the synthetic sources' true masks,
``SyntheticSource.foreground_masks``):

- **swap** (SCUBA): each clip's moving foreground pasted onto a background that carries
  no cue of its class, ``mask * clip + (1 - mask) * background``;
- **static** (SCUFO): one frame of the swap clip repeated (the middle one, as
  ``evaluation.video_level.make_static``): a motion-aware model should fail it;
  "contrasted accuracy" = right on the swap clip and wrong on its static copy;
- **conflict**: the still foreground of a clip of another class (its middle frame, inside
  its mask) pasted into every frame of the swap clip, under the moving foreground. Score it
  against the moving foreground's label, against the still one's, and by how often the
  moving label's score beats the still label's (``conflict_scores``).

Backgrounds (``BACKGROUNDS``), each a named variant:

- ``"other_class"``: the middle frame of a clip of another class (drawn at random from the
  batch), with that clip's own foreground removed: its masked pixels are filled from the
  surrounding background (normalised box-filter diffusion), so no moving actor and no
  frame of the clip itself is left in it; it carries the donor class's scene;
- ``"stripes"``: hard-edged wavy stripes of two opposite colours at a random angle, period
  and phase (class-free, as the public StillMix stripe images);
- ``"noise"``: coloured multi-octave noise with random octave weights (class-free).

Variants of ``synthesize`` (``VARIANTS``): ``"<test>_<background>"`` for every test in
``TESTS`` and background in ``BACKGROUNDS``, e.g. ``"swap_stripes"``, ``"static_noise"``,
``"conflict_other_class"``. Every random draw comes from an explicit ``torch.Generator``
(same generator state, same clips); everything runs batched on the clips' device with no
Python loop over samples, frames or pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice, check_int
from dsm_lightning.disturb.fame import foreground_mask
from dsm_lightning.evaluation.backgrounds import (
    draw_other_class,
    fill_holes,
    middle_frame,
    procedural_backgrounds,
)

__all__ = [
    "BACKGROUNDS", "TESTS", "VARIANTS", "OutOfContextBatch", "check_masks",
    "conflict_scores", "draw_other_class", "estimate_foreground", "foreground_iou",
    "insert_static_foreground", "make_backgrounds", "other_class_backgrounds",
    "procedural_backgrounds", "static_copy", "swap_background", "synthesize",
    "synthesize_tests",
]

#: Background makers, by name.
BACKGROUNDS = ("other_class", "stripes", "noise")
#: Kinds of out-of-context clip.
TESTS = ("swap", "static", "conflict")
#: ``synthesize`` variants: every test on every background.
VARIANTS = tuple(f"{test}_{background}" for test in TESTS for background in BACKGROUNDS)


class OutOfContextBatch(NamedTuple):
    """Synthesized clips and what they hold.

    Attributes:
        clips: (B, C, T, H, W) float synthesized clips.
        labels: (B,) int64 label of each clip's moving foreground (the input labels).
        background_labels: (B,) int64 label of the clip the background came from, -1 for a
            class-free background.
        still_labels: (B,) int64 label of the inserted still foreground (``conflict``), else
            -1.
        background_index: (B,) int64 batch index of the background donor, -1 if none.
        still_index: (B,) int64 batch index of the still-foreground donor, -1 if none.
    """

    clips: Tensor
    labels: Tensor
    background_labels: Tensor
    still_labels: Tensor
    background_index: Tensor
    still_index: Tensor


def _check_clips(clips: Tensor) -> None:
    if not isinstance(clips, Tensor) or clips.dim() != 5 or not clips.is_floating_point():
        shape = tuple(clips.shape) if isinstance(clips, Tensor) else type(clips).__name__
        raise ValueError(f"clips must be a float (B, C, T, H, W) tensor, got {shape}")


def check_masks(masks: Tensor, clips: Tensor, allow_empty: bool = False) -> Tensor:
    """Validate foreground masks against their clips; return them as broadcastable weights.

    Args:
        masks: (B, H, W) static or (B, T, H, W) per-frame masks, bool or 0/1 numbers.
        clips: (B, C, T, H, W) float clips.
        allow_empty: accept a mask with no foreground pixel (a donor frame may have none).

    Returns:
        (B, 1, 1 or T, H, W) bool masks on the clips' device.

    Raises:
        ValueError: wrong shape, a value other than 0 and 1, a clip whose mask has no
            foreground pixel (empty) or no background pixel (full); the message names the
            clips concerned.
    """
    _check_clips(clips)
    batch, _, frames, height, width = clips.shape
    allowed = ((batch, height, width), (batch, frames, height, width))
    if not isinstance(masks, Tensor) or tuple(masks.shape) not in allowed:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be (B, H, W) = {allowed[0]} or (B, T, H, W) = "
                         f"{allowed[1]} for clips {tuple(clips.shape)}, got {shape}")
    masks = masks.to(clips.device)
    if masks.dtype != torch.bool:
        binary = (masks == 0) | (masks == 1)
        if not bool(binary.all()):
            bad = masks[~binary].flatten()[0].item()
            raise ValueError(f"masks must be binary (0 or 1), found the value {bad}")
        masks = masks == 1
    counts = masks.flatten(1).sum(dim=1)
    for problem, which in (("empty (no foreground pixel)", counts == 0),
                           ("full (no background pixel)", counts == masks[0].numel())):
        if bool(which.any()) and not (allow_empty and problem.startswith("empty")):
            clips_named = which.nonzero().flatten().tolist()
            raise ValueError(f"the mask of clip(s) {clips_named} is {problem}")
    return masks[:, None] if masks.dim() == 4 else masks[:, None, None]


def estimate_foreground(
    clips: Tensor, foreground_ratio: float = 0.5, fg_sample_ratio: float = 0.5,
    bg_sample_ratio: float = 0.1, color_bins: int = 10, blur_fraction: float = 0.1,
) -> Tensor:
    """FAME's static foreground mask of each clip (``disturb.fame.foreground_mask``).

    Args:
        clips: (B, 3, T, H, W) float RGB clips in [0, 1], T >= 2.
        foreground_ratio: fraction of each frame in the mask (FAME's ``beta``, 0.5).
        fg_sample_ratio: most salient fraction whose colours model the foreground (0.5).
        bg_sample_ratio: least salient fraction whose colours model the background (0.1).
        color_bins: quantisation levels per colour axis (10).
        blur_fraction: Gaussian kernel side as a fraction of the frame side (0.1).

    Returns:
        (B, H, W) bool masks.

    Raises:
        ValueError: bad shapes or ratios (from ``foreground_mask``).
    """
    _check_clips(clips)
    return foreground_mask(clips, foreground_ratio, fg_sample_ratio, bg_sample_ratio,
                           color_bins, blur_fraction) > 0.5


def swap_background(clips: Tensor, masks: Tensor, backgrounds: Tensor) -> Tensor:
    """Each clip's foreground on a new background: ``where(mask, clip, background)``.

    Args:
        clips: (B, C, T, H, W) float clips.
        masks: (B, H, W) or (B, T, H, W) binary foreground masks (``check_masks``).
        backgrounds: (B, C, H, W) still images or (B, C, T, H, W) clips.

    Returns:
        (B, C, T, H, W): the clip's pixels inside its mask, the background's outside.

    Raises:
        ValueError: bad masks or a background shape that does not fit the clips.
    """
    weights = check_masks(masks, clips)
    batch, channels, frames, height, width = clips.shape
    if backgrounds.dim() == 4:
        backgrounds = backgrounds[:, :, None]
    if backgrounds.dim() != 5 or tuple(backgrounds.shape) not in (
            (batch, channels, 1, height, width), tuple(clips.shape)):
        raise ValueError(f"backgrounds must be (B, C, H, W) or (B, C, T, H, W) for clips "
                         f"{tuple(clips.shape)}, got {tuple(backgrounds.shape)}")
    return torch.where(weights, clips, backgrounds.to(clips))


def other_class_backgrounds(
    clips: Tensor, labels: Tensor, masks: Tensor, generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Backgrounds taken from clips of other classes (see the module docstring).

    Args:
        clips: (B, C, T, H, W) float clips.
        labels: (B,) int64 labels.
        masks: (B, H, W) or (B, T, H, W) binary foreground masks of the clips.
        generator: random source of the donor draw.

    Returns:
        ``(backgrounds (B, C, H, W), donor_index (B,))``: the middle frame of clip
        ``donor_index[i]`` (another class) with its own foreground filled in.

    Raises:
        ValueError: bad masks, or a clip with no other class in the batch.
    """
    weights = check_masks(masks, clips)
    donor = draw_other_class(labels.to(clips.device), generator)
    frame, frame_mask = middle_frame(clips, weights)
    return fill_holes(frame, frame_mask)[donor], donor


def make_backgrounds(
    kind: str, clips: Tensor, labels: Tensor, masks: Tensor, generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Backgrounds of one kind (``BACKGROUNDS``) for a batch.

    Args:
        kind: ``"other_class"``, ``"stripes"`` or ``"noise"``.
        clips: (B, C, T, H, W) float clips.
        labels: (B,) int64 labels.
        masks: (B, H, W) or (B, T, H, W) binary foreground masks.
        generator: random source.

    Returns:
        ``(backgrounds (B, C, H, W), donor_index (B,))``, ``donor_index`` -1 for class-free
        kinds.

    Raises:
        ValueError: unknown kind, bad masks, or no other class for some clip.
    """
    check_choice("background", kind, BACKGROUNDS)
    if kind == "other_class":
        return other_class_backgrounds(clips, labels, masks, generator)
    batch, channels, _, height, width = clips.shape
    images = procedural_backgrounds(kind, (batch, channels, height, width), generator,
                                    clips.device)
    return images.to(clips.dtype), torch.full((batch,), -1, dtype=torch.long, device=clips.device)


def static_copy(clips: Tensor, frame_index: int | Tensor) -> Tensor:
    """One frame of each clip repeated over time (SCUFO-like: no motion left).

    Args:
        clips: (B, C, T, H, W) clips.
        frame_index: the frame to repeat: an int for every clip or a (B,) int64 tensor.

    Returns:
        (B, C, T, H, W) new contiguous tensor.

    Raises:
        ValueError: a frame index outside [0, T).
    """
    frames = clips.shape[2]
    index = torch.as_tensor(frame_index, device=clips.device).long().expand(clips.shape[0])
    if bool(((index < 0) | (index >= frames)).any()):
        raise ValueError(f"frame_index must be in [0, {frames}), got {frame_index}")
    picked = clips[torch.arange(clips.shape[0], device=clips.device), :, index]  # (B, C, H, W)
    return picked[:, :, None].expand_as(clips).contiguous()


def insert_static_foreground(
    clips: Tensor, donor_frames: Tensor, donor_masks: Tensor, keep_masks: Tensor | None = None,
) -> Tensor:
    """Paste a still foreground into every frame of each clip (the conflict clip).

    Args:
        clips: (B, C, T, H, W) float clips (usually background-swapped).
        donor_frames: (B, C, H, W) still images holding the inserted foreground.
        donor_masks: (B, H, W) binary masks of that foreground (may be empty).
        keep_masks: (B, H, W) or (B, T, H, W) binary masks of the clips' own moving
            foreground, kept on top of the insert; None = the insert covers everything.

    Returns:
        (B, C, T, H, W): the donor's pixels where its mask is set (and no kept foreground
        is), the clip's elsewhere; the inserted pixels are the same in every frame.

    Raises:
        ValueError: bad masks or a donor frame shape that does not fit the clips.
    """
    batch, channels, _, height, width = clips.shape
    if tuple(donor_frames.shape) != (batch, channels, height, width):
        raise ValueError(f"donor_frames must be (B, C, H, W) = {(batch, channels, height, width)},"
                         f" got {tuple(donor_frames.shape)}")
    if donor_masks.dim() != 3:
        raise ValueError(f"donor_masks must be static (B, H, W), got {tuple(donor_masks.shape)}")
    paste = check_masks(donor_masks, clips, allow_empty=True)
    if keep_masks is not None:
        paste = paste & ~check_masks(keep_masks, clips)
    return torch.where(paste, donor_frames[:, :, None].to(clips), clips)


def foreground_iou(estimated: Tensor, truth: Tensor) -> Tensor:
    """Intersection over union of two foreground masks, per clip.

    A static (B, H, W) mask against per-frame (B, T, H, W) masks counts as the same mask in
    every frame.

    Args:
        estimated: (B, H, W) or (B, T, H, W) binary masks.
        truth: (B, H, W) or (B, T, H, W) binary masks.

    Returns:
        (B,) float IoU in [0, 1] (1 when both are empty).

    Raises:
        ValueError: shapes that do not broadcast as described.
    """
    a, b = estimated.bool(), truth.to(estimated.device).bool()
    a = a[:, None] if a.dim() == 3 else a
    b = b[:, None] if b.dim() == 3 else b
    if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:] or (
            a.shape[1] != b.shape[1] and 1 not in (a.shape[1], b.shape[1])):
        raise ValueError(f"masks must be (B, H, W) or (B, T, H, W) of one geometry, got "
                         f"{tuple(estimated.shape)} and {tuple(truth.shape)}")
    shape = (a.shape[0], max(a.shape[1], b.shape[1]), *a.shape[2:])
    a, b = a.expand(shape), b.expand(shape)
    inter = (a & b).flatten(1).sum(dim=1).float()
    union = (a | b).flatten(1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def synthesize(
    variant: str, clips: Tensor, labels: Tensor, masks: Tensor | None,
    generator: torch.Generator,
) -> OutOfContextBatch:
    """Out-of-context clips of one variant (``VARIANTS``) for a batch.

    Draw order (fixed, so a generator state gives one result): the background (donor
    indices or procedural images), then the still-foreground donor (``conflict``).

    Args:
        variant: ``"<test>_<background>"``, test in ``TESTS``, background in ``BACKGROUNDS``.
        clips: (B, C, T, H, W) float clips in [0, 1].
        labels: (B,) int64 labels.
        masks: (B, H, W) or (B, T, H, W) binary foreground masks (e.g. the true masks of a
            synthetic source); None = ``estimate_foreground(clips)``.
        generator: random source.

    Returns:
        An ``OutOfContextBatch``.

    Raises:
        ValueError: unknown variant, bad clips / masks / labels, or a clip with no other
            class in the batch (``other_class`` and ``conflict``).
    """
    check_choice("variant", variant, VARIANTS)
    test, background = variant.split("_", 1)
    return synthesize_tests(background, clips, labels, masks, generator, (test,))[test]


def synthesize_tests(
    background: str, clips: Tensor, labels: Tensor, masks: Tensor | None,
    generator: torch.Generator, tests: tuple[str, ...] = TESTS,
) -> dict[str, OutOfContextBatch]:
    """Several tests (``TESTS``) of one background on a single draw: the swap clip is built
    once, ``static`` and ``conflict`` are made from it; each equals ``synthesize`` of its
    variant from the same generator state (same draw order).

    Returns:
        ``{test: OutOfContextBatch}`` for each of ``tests``.

    Raises:
        ValueError: as ``synthesize``.
    """
    check_choice("background", background, BACKGROUNDS)
    for test in tests:
        check_choice("test", test, TESTS)
    _check_clips(clips)
    check_int("batch size", clips.shape[0])
    labels = labels.to(clips.device).long()
    if labels.shape != (clips.shape[0],):
        raise ValueError(f"labels must be (B,) = ({clips.shape[0]},), got {tuple(labels.shape)}")
    if masks is None:
        masks = estimate_foreground(clips)
    images, background_index = make_backgrounds(background, clips, labels, masks, generator)
    swap = swap_background(clips, masks, images)
    none = torch.full_like(labels, -1)
    background_labels = torch.where(background_index >= 0, labels[background_index.clamp_min(0)],
                                    none)

    def batch(out: Tensor, still_index: Tensor) -> OutOfContextBatch:
        still_labels = torch.where(still_index >= 0, labels[still_index.clamp_min(0)], none)
        return OutOfContextBatch(out, labels, background_labels, still_labels,
                                 background_index, still_index)

    made = {}
    for test in tests:
        if test == "swap":
            made[test] = batch(swap, none)
        elif test == "static":
            made[test] = batch(static_copy(swap, clips.shape[2] // 2), none)
        else:  # conflict: the only test that draws again (after the background)
            still_index = draw_other_class(labels, generator)
            frame, frame_mask = middle_frame(clips, check_masks(masks, clips))
            made[test] = batch(insert_static_foreground(swap, frame[still_index],
                                                        frame_mask[still_index, 0],
                                                        keep_masks=masks), still_index)
    return made


def conflict_scores(scores: Tensor, labels: Tensor, still_labels: Tensor) -> dict[str, float]:
    """The conflicting-foreground test's three numbers.

    Args:
        scores: (N, K) class scores of the conflict clips.
        labels: (N,) int64 labels of the moving foregrounds.
        still_labels: (N,) int64 labels of the inserted still foregrounds.

    Returns:
        ``{"moving_accuracy", "still_accuracy", "moving_beats_still"}``: top-1 accuracy
        against the moving label, against the still label, and the fraction of clips where
        the moving label's score is above the still label's.

    Raises:
        ValueError: shapes that do not match.
    """
    if scores.dim() != 2 or labels.shape != (scores.shape[0],) or still_labels.shape != labels.shape:
        raise ValueError(f"scores must be (N, K) with (N,) labels, got {tuple(scores.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(still_labels.shape)}")
    pred = scores.argmax(dim=1)
    moving = scores.gather(1, labels[:, None].long())[:, 0]
    still = scores.gather(1, still_labels[:, None].long())[:, 0]
    return {"moving_accuracy": (pred == labels).float().mean().item(),
            "still_accuracy": (pred == still_labels).float().mean().item(),
            "moving_beats_still": (moving > still).float().mean().item()}
