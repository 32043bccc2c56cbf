"""Retrieval protocols on videos whose frames are known: "centre" encodes exactly the centre
window (the public DSM code's one clip per video), "average" the mean of the n_clips
windows; a data module giving several views is refused by "centre"."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.video_fixtures import make_known_video
from torch import nn

from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.sampling import UniformClipSampler
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.evaluation.retrieval import encode_videos, pool_view_features
from dsm_lightning.modules.retrieval import RetrievalModule

NUM_FRAMES, STRIDE = 4, 2
LENGTHS = {"train": (20, 27, 13), "test": (24, 7)}  # frames per video (>= 7 = one span)


class FrameLevels(nn.Module):
    """Features = the grey level of each frame, (B, T): a known-frame clip's frame indices
    are ``(level * 255 - 4) / 8`` (tests/helpers/video_fixtures.py)."""

    feature_dim = NUM_FRAMES

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        levels = video.mean(dim=(1, 3, 4)) * self.scale  # (B, T)
        self.seen.append(levels.detach().clone())
        return levels


def frame_indices(levels: torch.Tensor) -> list[list[int]]:
    return ((levels * 255 - 4) / 8).round().long().tolist()


@pytest.fixture(scope="module")
def known_tree(tmp_path_factory):
    """Known-frame videos in class folders; returns the root and {path: frame count}."""
    root = tmp_path_factory.mktemp("known")
    lengths = {}
    for split, counts in LENGTHS.items():
        for i, count in enumerate(counts):
            path = make_known_video(str(root / split / f"class{i % 2}" / f"v{i}.mp4"), count)
            lengths[path] = count
    return root, lengths


def datamodule(root, n_clips: int, n_crops: int = 1) -> VideoDataModule:
    return VideoDataModule(
        source="folder", root=str(root / "train"), test_root=str(root / "test"),
        task="retrieval", num_frames=NUM_FRAMES, stride=STRIDE, frame_size=32, crop_size=32,
        n_clips=n_clips, n_crops=n_crops, batch_size=2, num_workers=0,
        transform=ClipTransform(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
    )


def run(tree, protocol: str, n_clips: int) -> tuple[RetrievalModule, FrameLevels, list[int]]:
    """Test a RetrievalModule; returns it, its encoder and the frame counts of the videos in
    the order they were encoded (gallery = train split, then queries = test split)."""
    root, lengths = tree
    net = FrameLevels()
    module = RetrievalModule(backbone=net, protocol=protocol, ks=(1,))
    data = datamodule(root, n_clips)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.test(module, data, verbose=False)
    order = [lengths[r.path] for split in ("train", "test") for r in data.records(split)]
    return module, net, order


def expected_windows(length: int, n_clips: int) -> list[list[int]]:
    sampler = UniformClipSampler(NUM_FRAMES, STRIDE, n_clips)
    return [list(clip.frame_indices) for clip in sampler(length).clips]


def test_centre_protocol_encodes_exactly_the_centre_window(known_tree):
    module, net, lengths = run(known_tree, "centre", n_clips=1)
    seen = frame_indices(torch.cat(net.seen))  # gallery (train) then queries (test)
    assert seen == [expected_windows(n, 1)[0] for n in lengths]
    # the centre window starts half-way through the free range: 20 frames -> 6..12
    by_length = dict(zip(lengths, seen))
    assert by_length[20] == [6, 8, 10, 12] and by_length[13] == [3, 5, 7, 9]
    assert by_length[7] == [0, 2, 4, 6]  # exactly one span: the only window
    assert module.recalls.keys() == {1}


def test_average_protocol_is_the_mean_of_the_n_clips_windows(known_tree):
    _, net, lengths = run(known_tree, "average", n_clips=3)
    seen = torch.cat(net.seen)  # (videos * 3, T): view-major within each video
    assert frame_indices(seen) == [w for n in lengths for w in expected_windows(n, 3)]
    per_video = seen.view(len(lengths), 3, NUM_FRAMES)
    mean = F.normalize(F.normalize(per_video, dim=-1).mean(dim=1), dim=-1)
    torch.testing.assert_close(pool_view_features(per_video, "mean"), mean)
    # the centre window alone gives another feature than the average of three
    centre = F.normalize(per_video[:, 1], dim=-1)
    assert not torch.allclose(mean, centre)


def test_centre_protocol_refuses_several_views(known_tree):
    with pytest.raises(ValueError, match="n_clips=3, n_crops=1: set both to 1"):
        run(known_tree, "centre", n_clips=3)
    with pytest.raises(ValueError, match="the batch holds 3 views per video"):
        encode_videos(nn.Identity(), torch.zeros(2, 3, 3, 4, 8, 8), protocol="centre")
    one_view = torch.rand(2, 1, 3, 4, 8, 8)
    torch.testing.assert_close(encode_videos(FrameLevels(), one_view, protocol="centre"),
                               encode_videos(FrameLevels(), one_view[:, 0]))
    with pytest.raises(ValueError, match="protocol"):
        RetrievalModule(backbone="tiny3d", backbone_kwargs={"width": 2}, protocol="middle")
    with pytest.raises(ValueError, match="clip_reduction='first'"):
        RetrievalModule(backbone="tiny3d", backbone_kwargs={"width": 2}, protocol="centre",
                        clip_reduction="first")
