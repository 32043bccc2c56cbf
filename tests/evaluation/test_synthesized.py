"""The out-of-context tests of a study, synthesized from a split's batches: seeded, cached,
the windows of a video sharing their donors, true-mask IoU when the masks are known."""

import pytest
import torch

from dsm_lightning.evaluation.out_of_context import TESTS, foreground_iou
from dsm_lightning.evaluation.synthesized import OutOfContextTests, synthesize_split

B, V, T, S = 12, 2, 6, 24


def _split(seed: int = 0) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Batches of uint8 (B, V, 3, T, S, S) clips: a bright square moving right on a still
    textured scene per video (3 classes), and the square's true (B, V, T, S, S) masks."""
    g = torch.Generator().manual_seed(seed)
    scene = (torch.rand(B, 3, 1, S, S, generator=g) * 120).expand(B, 3, T, S, S).clone()
    masks = torch.zeros(B, T, S, S, dtype=torch.bool)
    for t in range(T):  # building the fixture, not the code under test
        masks[:, t, 8:14, 2 + 2 * t:8 + 2 * t] = True
    video = torch.where(masks[:, None], torch.tensor(250.0), scene)
    video = video[:, None].expand(B, V, 3, T, S, S).to(torch.uint8)
    labels = torch.arange(B) % 3
    batches = [{"video": video[i:i + 4], "label": labels[i:i + 4], "index": torch.arange(i, i + 4)}
               for i in range(0, B, 4)]
    return batches, masks[:, None].expand(B, V, T, S, S)


def test_same_seed_same_clips_another_seed_other_clips():
    batches, _ = _split()
    a = synthesize_split(batches, "stripes", seed=3)
    b = synthesize_split(batches, "stripes", seed=3)
    c = synthesize_split(batches, "stripes", seed=4)
    for test in TESTS:
        assert a.clips[test].shape == (B, V, 3, T, S, S) and a.clips[test].dtype == torch.uint8
        assert torch.equal(a.clips[test], b.clips[test]), test
        assert not torch.equal(a.clips[test], c.clips[test]), test
    assert torch.equal(a.labels, torch.arange(B) % 3) and torch.equal(a.index, torch.arange(B))


def test_static_is_the_swap_clips_middle_frame_and_conflict_keeps_its_background():
    batches, truth = _split()
    tests = OutOfContextTests(backgrounds=("other_class",), masks="source")
    out = synthesize_split(batches, "other_class", seed=1, tests=tests,
                           true_masks=lambda index: truth[index])
    swap, static, conflict = (out.clips[t].float() for t in TESTS)
    middle = swap[:, :, :, T // 2: T // 2 + 1].expand_as(swap)
    assert torch.equal(static, middle)  # SCUFO: the swap clip with its motion removed
    inside = truth[:, :, None].expand_as(swap)  # the moving square keeps the clip's pixels
    assert torch.equal(swap[inside], batches_video(batches).float()[inside])
    assert (out.still_labels != out.labels).all()  # a still foreground of another class
    assert (conflict != swap).any()  # the still donor was pasted ...
    outside = ~truth.any(dim=2)[:, :, None, None].expand(B, V, 3, T, S, S)  # ... and away
    static_part = torch.where(outside, conflict, 0.0)  # from the moving square, the conflict
    assert torch.equal(static_part, static_part[:, :, :, :1].expand_as(static_part))  # is still
    # the IoU is always FAME's estimate against the truth: a static half-frame mask holding
    # the whole 6 x 6 square of every frame scores 36 / (24 * 24 / 2) = 0.125 at best
    assert out.mask_iou == pytest.approx(36 / 288)


def batches_video(batches):
    return torch.cat([b["video"] for b in batches])


def test_the_windows_of_a_video_share_their_donors():
    batches, _ = _split()
    out = synthesize_split(batches, "noise", seed=2)
    swap = out.clips["swap"].float()
    video = batches_video(batches).float()
    outside = (swap[:, 0] != video[:, 0])  # the background pixels of view 0 ...
    assert torch.equal(swap[:, 0][outside], swap[:, 1][outside])  # ... are view 1's too


def test_cache_is_read_back_and_refreshed_when_the_inputs_change(tmp_path):
    batches, _ = _split()
    path = tmp_path / "test_stripes_seed0.pt"
    first = synthesize_split(batches, "stripes", 0, cache=path, identity={"n": 1})
    assert path.is_file()
    again = synthesize_split([], "stripes", 0, cache=path, identity={"n": 1})  # no batch read
    assert torch.equal(again.clips["swap"], first.clips["swap"])
    with pytest.raises(ValueError, match="no video"):  # other inputs: synthesized again
        synthesize_split([], "stripes", 0, cache=path, identity={"n": 2})


def test_one_window_per_video_and_bad_settings():
    batches, _ = _split()
    single = [dict(b, video=b["video"][:, 0]) for b in batches]  # (B, C, T, H, W)
    out = synthesize_split(single, "stripes", 0)
    assert out.clips["static"].shape == (B, 1, 3, T, S, S)
    with pytest.raises(ValueError, match="foreground_masks"):
        synthesize_split(batches, "stripes", 0, OutOfContextTests(masks="source"))
    for bad, match in (({"backgrounds": ("sky",)}, "backgrounds"), ({"masks": "depth"}, "masks"),
                       ({"chunk": 1}, "chunk"), ({"backgrounds": ("noise", "noise")}, "repeats")):
        with pytest.raises(ValueError, match=match):
            OutOfContextTests(**bad)


def test_estimated_masks_beat_a_random_mask_against_the_truth():
    batches, truth = _split()
    out = synthesize_split(batches, "stripes", 0, true_masks=lambda index: truth[index])
    random = torch.rand(B, S, S, generator=torch.Generator().manual_seed(0)) < 0.5
    floor = foreground_iou(random, truth[:, 0]).mean().item()
    assert out.mask_iou is not None and out.mask_iou > 1.5 * floor
