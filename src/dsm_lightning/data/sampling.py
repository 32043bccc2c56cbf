"""Clip samplers: which frame indices of a video make a clip.

Every sampler returns one typed NamedTuple and draws randomness only from an explicit
``torch.Generator``. A clip of ``num_frames`` frames with frame ``stride`` spans
``(num_frames - 1) * stride + 1`` frames of the video.

Short videos (fewer frames than the span) follow ``short_video``:

- ``"loop"``: indices wrap around to the start of the video (``i % num_video_frames``).
- ``"pad"``: indices past the end repeat the last frame.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dsm_lightning._checks import check_choice

SHORT_VIDEO_POLICIES = ("loop", "pad")


class ClipSample(NamedTuple):
    """One clip.

    Attributes:
        start: Index of the clip's first frame (before wrapping / padding).
        frame_indices: ``num_frames`` frame indices in ``[0, video_frames)``, clip order.
        is_short: The video was shorter than the clip span and the policy was applied.
    """

    start: int
    frame_indices: tuple[int, ...]
    is_short: bool


class ClipPair(NamedTuple):
    """An anchor clip and its temporal-shift partner from the same video.

    Attributes:
        anchor: The anchor clip.
        shift: The second clip; ``|shift.start - anchor.start| >= min_gap``.
        gap: ``shift.start - anchor.start`` (signed, before wrapping).
        fallback: The video was too short for two in-range starts ``min_gap`` apart, so
            ``shift`` starts ``gap`` frames later and wraps around (loop), see
            ``PairClipSampler``.
    """

    anchor: ClipSample
    shift: ClipSample
    gap: int
    fallback: bool


class MultiClipSample(NamedTuple):
    """Uniformly spaced clips of one video (video-level evaluation).

    Attributes:
        clips: ``n_clips`` clips in temporal order.
    """

    clips: tuple[ClipSample, ...]


def clip_span(num_frames: int, stride: int) -> int:
    """Number of video frames covered by a clip.

    Args:
        num_frames: Frames per clip.
        stride: Step between sampled frames.

    Returns:
        ``(num_frames - 1) * stride + 1``.
    """
    return (num_frames - 1) * stride + 1


def make_clip(
    start: int, video_frames: int, num_frames: int, stride: int, short_video: str = "loop"
) -> ClipSample:
    """Frame indices of the clip starting at ``start``.

    Args:
        start: First frame index (>= 0).
        video_frames: Number of frames in the video (>= 1).
        num_frames: Frames per clip.
        stride: Step between frames.
        short_video: ``"loop"`` wraps indices past the end, ``"pad"`` repeats the last frame.

    Returns:
        The ``ClipSample``.

    Raises:
        ValueError: Unknown ``short_video`` or ``video_frames < 1``.
    """
    check_choice("short_video", short_video, SHORT_VIDEO_POLICIES)
    if video_frames < 1:
        raise ValueError(f"video_frames must be >= 1, got {video_frames}")
    raw = [start + i * stride for i in range(num_frames)]
    is_short = raw[-1] >= video_frames
    if short_video == "loop":
        indices = tuple(i % video_frames for i in raw)
    else:
        indices = tuple(min(i, video_frames - 1) for i in raw)
    return ClipSample(start=start, frame_indices=indices, is_short=is_short)


def _check(num_frames: int, stride: int, short_video: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    check_choice("short_video", short_video, SHORT_VIDEO_POLICIES)


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    return low + int(torch.randint(high - low + 1, (1,), generator=generator))


class RandomClipSampler:
    """One clip at a uniformly random start (training).

    Args:
        num_frames: Frames per clip.
        stride: Step between frames.
        short_video: Policy for videos shorter than the span (``"loop"`` starts at a random
            frame and wraps; ``"pad"`` starts at 0 and repeats the last frame).

    Raises:
        ValueError: Invalid argument.
    """

    def __init__(self, num_frames: int, stride: int, short_video: str = "loop") -> None:
        _check(num_frames, stride, short_video)
        self.num_frames, self.stride, self.short_video = num_frames, stride, short_video

    def __call__(self, video_frames: int, generator: torch.Generator) -> ClipSample:
        """Sample a clip of a video with ``video_frames`` frames."""
        max_start = video_frames - clip_span(self.num_frames, self.stride)
        if max_start >= 0:
            start = _randint(0, max_start, generator)
        elif self.short_video == "loop":
            start = _randint(0, video_frames - 1, generator)
        else:
            start = 0
        return make_clip(start, video_frames, self.num_frames, self.stride, self.short_video)


class PairClipSampler:
    """Anchor clip plus a temporal-shift clip of the same video (docs/method.md, TLD).

    Both starts are uniform over the in-range starts ``[0, video_frames - span]`` subject to
    ``|shift - anchor| >= min_gap``. Fallback when no such pair exists (the video is shorter
    than ``span + min_gap``): the shift clip starts ``gap = max(min_gap, video_frames // 3)``
    frames after the anchor (a third of the video, as in the public DSM code) and its
    indices wrap around to the start of the video; ``ClipPair.fallback`` is then True.

    Args:
        num_frames: Frames per clip.
        stride: Step between frames.
        min_gap: Minimum start difference in frames (>= 1).
        short_video: Policy for videos shorter than the span.

    Raises:
        ValueError: Invalid argument.
    """

    def __init__(
        self, num_frames: int, stride: int, min_gap: int = 2, short_video: str = "loop"
    ) -> None:
        _check(num_frames, stride, short_video)
        if min_gap < 1:
            raise ValueError(f"min_gap must be >= 1, got {min_gap}")
        self.num_frames, self.stride = num_frames, stride
        self.min_gap, self.short_video = min_gap, short_video
        self._anchor_sampler = RandomClipSampler(num_frames, stride, short_video)

    def __call__(self, video_frames: int, generator: torch.Generator) -> ClipPair:
        """Sample a pair from a video with ``video_frames`` frames."""
        max_start = video_frames - clip_span(self.num_frames, self.stride)
        gap_min = self.min_gap
        if max_start >= gap_min:
            starts = torch.arange(max_start + 1)
            valid = (starts >= gap_min) | (starts + gap_min <= max_start)
            anchor_choices = starts[valid]
            a = int(anchor_choices[_randint(0, len(anchor_choices) - 1, generator)])
            partner = starts[(starts - a).abs() >= gap_min]
            b = int(partner[_randint(0, len(partner) - 1, generator)])
            make = self._make
            return ClipPair(make(a, video_frames), make(b, video_frames), b - a, False)
        anchor = self._anchor_sampler(video_frames, generator)
        gap = max(gap_min, video_frames // 3)
        if gap % video_frames == 0:
            gap += 1  # a whole-period shift would repeat the anchor exactly
        shift = make_clip(anchor.start + gap, video_frames, self.num_frames, self.stride, "loop")
        return ClipPair(anchor, shift._replace(is_short=True), gap, True)

    def _make(self, start: int, video_frames: int) -> ClipSample:
        return make_clip(start, video_frames, self.num_frames, self.stride, self.short_video)


class UniformClipSampler:
    """``n_clips`` deterministic windows at the centres of equal segments (evaluation).

    Window ``i`` starts at ``round(max_start * (2 i + 1) / (2 n_clips))``, so one clip is
    the centre clip and ten clips cover the video evenly. Short videos give ``n_clips``
    copies of the clip at start 0 (under ``short_video``).

    Args:
        num_frames: Frames per clip.
        stride: Step between frames.
        n_clips: Number of windows (>= 1).
        short_video: Policy for videos shorter than the span.

    Raises:
        ValueError: Invalid argument.
    """

    def __init__(
        self, num_frames: int, stride: int, n_clips: int = 10, short_video: str = "loop"
    ) -> None:
        _check(num_frames, stride, short_video)
        if n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {n_clips}")
        self.num_frames, self.stride = num_frames, stride
        self.n_clips, self.short_video = n_clips, short_video

    def __call__(
        self, video_frames: int, generator: torch.Generator | None = None
    ) -> MultiClipSample:
        """Windows of a video with ``video_frames`` frames (``generator`` is unused)."""
        max_start = max(0, video_frames - clip_span(self.num_frames, self.stride))
        n = self.n_clips
        starts = [int(round(max_start * (2 * i + 1) / (2 * n))) for i in range(n)]
        return MultiClipSample(
            tuple(
                make_clip(s, video_frames, self.num_frames, self.stride, self.short_video)
                for s in starts
            )
        )
