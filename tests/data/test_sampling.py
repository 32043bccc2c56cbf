"""Clip samplers: boundary tables, the min-gap invariant, determinism."""

from __future__ import annotations

import pytest
import torch

from dsm_lightning.data.sampling import (
    ClipPair,
    ClipSample,
    MultiClipSample,
    PairClipSampler,
    RandomClipSampler,
    UniformClipSampler,
    clip_span,
    make_clip,
)


@pytest.mark.parametrize(
    "start, video_frames, num_frames, stride, policy, expected, short",
    [
        (0, 10, 4, 2, "loop", (0, 2, 4, 6), False),
        (3, 10, 4, 2, "loop", (3, 5, 7, 9), False),  # ends exactly on the last frame
        (4, 10, 4, 2, "loop", (4, 6, 8, 0), True),  # one past: wraps
        (4, 10, 4, 2, "pad", (4, 6, 8, 9), True),  # one past: repeats the last frame
        (0, 3, 5, 1, "loop", (0, 1, 2, 0, 1), True),
        (0, 3, 5, 1, "pad", (0, 1, 2, 2, 2), True),
        (0, 1, 3, 4, "pad", (0, 0, 0), True),
        (0, 7, 1, 9, "loop", (0,), False),
    ],
)
def test_make_clip_table(start, video_frames, num_frames, stride, policy, expected, short):
    clip = make_clip(start, video_frames, num_frames, stride, policy)
    assert isinstance(clip, ClipSample)
    assert clip.frame_indices == expected
    assert clip.is_short == short
    assert clip_span(num_frames, stride) == (num_frames - 1) * stride + 1


@pytest.mark.parametrize("bad", [dict(num_frames=0), dict(stride=0), dict(short_video="wrap")])
def test_samplers_reject_bad_arguments(bad):
    kwargs = dict(num_frames=4, stride=2, short_video="loop") | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        RandomClipSampler(**kwargs)
    with pytest.raises(ValueError):
        PairClipSampler(min_gap=0, num_frames=4, stride=2)


@pytest.mark.parametrize("video_frames", [7, 8, 9, 20, 100])
def test_random_clip_in_range_and_covers_all_starts(video_frames):
    sampler = RandomClipSampler(num_frames=4, stride=2)
    generator = torch.Generator().manual_seed(0)
    max_start = video_frames - clip_span(4, 2)
    starts = set()
    for _ in range(400):
        clip = sampler(video_frames, generator)
        assert all(0 <= i < video_frames for i in clip.frame_indices)
        starts.add(clip.start)
        if max_start >= 0:
            assert not clip.is_short
            assert clip.frame_indices == tuple(clip.start + 2 * k for k in range(4))
    if max_start >= 0 and max_start < 40:
        assert starts == set(range(max_start + 1))


@pytest.mark.parametrize("video_frames, min_gap", [(9, 2), (10, 2), (11, 4), (12, 2), (60, 4)])
def test_pair_respects_min_gap_without_fallback(video_frames, min_gap):
    sampler = PairClipSampler(num_frames=4, stride=2, min_gap=min_gap)
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        pair = sampler(video_frames, generator)
        assert isinstance(pair, ClipPair)
        assert not pair.fallback
        assert abs(pair.shift.start - pair.anchor.start) >= min_gap
        assert pair.gap == pair.shift.start - pair.anchor.start
        for clip in (pair.anchor, pair.shift):
            assert not clip.is_short
            assert max(clip.frame_indices) < video_frames


@pytest.mark.parametrize("video_frames", [3, 5, 7, 8])
def test_pair_fallback_for_short_videos_shifts_and_wraps(video_frames):
    sampler = PairClipSampler(num_frames=4, stride=2, min_gap=2)  # span 7: needs 9 frames
    generator = torch.Generator().manual_seed(2)
    for _ in range(50):
        pair = sampler(video_frames, generator)
        assert pair.fallback
        assert pair.gap == max(2, video_frames // 3) + (max(2, video_frames // 3) % video_frames == 0)
        expected = tuple((pair.anchor.start + pair.gap + 2 * k) % video_frames for k in range(4))
        assert pair.shift.frame_indices == expected
        assert pair.shift.frame_indices != pair.anchor.frame_indices


def test_samplers_deterministic_given_generator_state():
    sampler = PairClipSampler(num_frames=8, stride=3, min_gap=4)
    first = [sampler(120, torch.Generator().manual_seed(s)) for s in range(20)]
    again = [sampler(120, torch.Generator().manual_seed(s)) for s in range(20)]
    assert first == again
    assert len({p.anchor.start for p in first}) > 5  # different seeds give different clips


@pytest.mark.parametrize(
    "video_frames, n_clips, starts",
    [
        (100, 1, [36]),  # centre clip: max_start 71 -> round(35.5) = 36
        (37, 4, [1, 3, 5, 7]),  # max_start 8
        (29, 3, [0, 0, 0]),  # exactly one window
        (10, 2, [0, 0]),  # shorter than the span: both windows at 0
    ],
)
def test_uniform_windows(video_frames, n_clips, starts):
    sample = UniformClipSampler(num_frames=8, stride=4, n_clips=n_clips)(video_frames)
    assert isinstance(sample, MultiClipSample)
    assert [c.start for c in sample.clips] == starts
    for clip in sample.clips:
        assert len(clip.frame_indices) == 8
        assert all(0 <= i < video_frames for i in clip.frame_indices)


def test_uniform_windows_cover_the_video_evenly():
    sample = UniformClipSampler(num_frames=4, stride=1, n_clips=10)(1004)
    starts = [c.start for c in sample.clips]
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    assert gaps == {100}
    assert starts[0] == 50 and starts[-1] == 950
