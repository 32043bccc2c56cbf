"""Bad videos in datasets: training substitutes, evaluation leaves them out and counts them."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from helpers.video_corpus import make_corpus
from helpers.video_fixtures import frame_ids, make_bad_files, make_known_video
from torch.utils.data import DataLoader

from dsm_lightning.data.datasets import (
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoSkippedWarning,
    collate_drop_bad,
)
from dsm_lightning.data.frame_index import INDEX_DIR_ENV
from dsm_lightning.data.sources import VideoRecord

CLIP = dict(num_frames=4, stride=2, frame_size=16)


@pytest.fixture(autouse=True)
def index_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(INDEX_DIR_ENV, str(tmp_path / "frame_index"))


@pytest.fixture
def mixed(tmp_path):
    """Records: good, zero-byte, good, truncated, good (labels 0..4)."""
    good = make_known_video(str(tmp_path / "good.mp4"), 30)
    bad = make_bad_files(str(tmp_path / "bad"), good)
    paths = [good, bad["zero_byte"], good, bad["truncated"], good]
    return [VideoRecord(p, i, f"v{i}") for i, p in enumerate(paths)]


def _collect(dataset, batch_size, epochs=1):
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate_fn)
    return [batch for _ in range(epochs) for batch in loader]


def test_evaluation_leaves_bad_videos_out_and_counts_them(mixed, caplog):
    ds = LabelledClipDataset(mixed, substitute_bad=False, split="test", **CLIP)
    with pytest.warns(VideoSkippedWarning) as record, caplog.at_level(logging.WARNING):
        batches = _collect(ds, batch_size=2, epochs=2)
    assert [b["index"].tolist() for b in batches] == [[0], [2], [4]] * 2
    assert all(set(b) == {"video", "label", "index"} for b in batches)
    assert all(b["video"].shape[1:] == (3, 4, 16, 16) for b in batches)
    assert [b["label"].tolist() for b in batches[:3]] == [[0], [2], [4]]  # no copies
    # one warning per bad video (not per epoch, not twice through logging)
    assert len(record) == 2
    assert {str(w.message).split()[2] for w in record} == {mixed[1].path, mixed[3].path}
    assert all("left out" in str(w.message) for w in record)
    assert not [r for r in caplog.records if r.name.startswith("dsm_lightning.data.datasets")]
    assert sorted(ds.bad_videos) == sorted([mixed[1].path, mixed[3].path])
    assert ds.take_skip_report() == {mixed[1].path: 2, mixed[3].path: 2}  # both epochs
    assert ds.take_skip_report() == {}


def test_training_still_substitutes_deterministically(mixed):
    ds = PretrainClipDataset(mixed, **CLIP)
    with pytest.warns(VideoSkippedWarning, match="replaced by another video"):
        items = [ds[(i, 0)] for i in range(5)]
    assert [int(item["index"]) for item in items] == [0, 2, 2, 4, 4]
    assert torch.equal(items[1]["video"], items[2]["video"])
    assert ds.collate_fn is not collate_drop_bad
    assert ds.bad_videos == [mixed[1].path, mixed[3].path]


def test_an_all_bad_batch_is_an_empty_batch(mixed):
    ds = MultiViewClipDataset([mixed[1], mixed[3]], n_clips=3, substitute_bad=False, **CLIP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        (batch,) = _collect(ds, batch_size=2)
    assert set(batch) == {"video", "label", "index"}
    assert batch["video"].shape == (0, 3, 3, 4, 16, 16) and batch["video"].dtype == torch.uint8
    assert batch["label"].shape == (0,) and batch["index"].dtype == torch.int64
    assert len(ds.bad_videos) == 2


def test_marker_items_carry_the_item_shapes(mixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        pretrain = PretrainClipDataset(mixed, substitute_bad=False, **CLIP)[1]
        multi = MultiViewClipDataset(mixed, n_clips=2, substitute_bad=False, **CLIP)[3]
    assert pretrain["skipped"] and pretrain["video_shift"].shape == (3, 4, 16, 16)
    assert multi["video"].shape == (2, 3, 4, 16, 16) and int(multi["index"]) == 3
    good = LabelledClipDataset(mixed, substitute_bad=False, **CLIP)[0]
    batch = collate_drop_bad([multi, {**good, "video": good["video"][None].repeat(2, 1, 1, 1, 1)}])
    assert batch["index"].tolist() == [0] and "skipped" not in batch


def test_a_clip_through_damaged_frames_is_a_counted_named_skip(tmp_path):
    damaged = next(c for c in make_corpus(str(tmp_path / "corpus")) if c.name == "damaged")
    record = [VideoRecord(damaged.path, 1, "damaged")]
    # the centre clip (frames 25-34) lies before the damaged group: decoded normally
    centre = LabelledClipDataset(record, substitute_bad=False, num_frames=4, stride=3,
                                 frame_size=16)[0]
    assert "skipped" not in centre and centre["video"].shape == (3, 4, 16, 16)
    # ten windows cover the whole video: one crosses the damaged group -> left out
    multi = MultiViewClipDataset(record, n_clips=10, substitute_bad=False, num_frames=4,
                                 stride=3, frame_size=16)
    with pytest.warns(VideoSkippedWarning, match=r"damaged\.mp4.*frame \d+ of 60 cannot be "
                                                  r"decoded cleanly"):
        item = multi[0]
    assert item["skipped"] and multi.take_skip_report() == {damaged.path: 1}


def test_decoder_is_a_checked_dataset_argument(mixed):
    with pytest.raises(ValueError, match="decoder must be one of"):
        LabelledClipDataset(mixed, decoder="opencv", **CLIP)
    ds = LabelledClipDataset(mixed[:1], decoder="pyav", **CLIP)
    assert frame_ids(ds[0]["video"]) == [12, 14, 16, 18]  # centre clip
