"""Sharded videos (``dsm prepare`` + ``source="shards"``) give the clips of the files.

A tiny synthetic set is packed once; every test compares what the shards give with what
the original files give under the same seed: decoded items (tensor equality), the device
side's triplets, evaluation batches, and a run resumed mid-epoch through the CLI.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.fit_configs import fit_trainer_yaml, logged_losses
from helpers.video_corpus import make_corpus
from helpers.video_fixtures import make_bad_files, make_known_video
from torch.utils.data import default_collate

pytest.importorskip("litdata")

from dsm_lightning import cli  # noqa: E402
from dsm_lightning.data import shard_stream  # noqa: E402
from dsm_lightning.data.datamodule import VideoDataModule  # noqa: E402
from dsm_lightning.data.datasets import VideoSkippedWarning  # noqa: E402
from dsm_lightning.data.shards import MANIFEST, ShardSource, read_manifest  # noqa: E402
from dsm_lightning.data.sources import FolderSource, SyntheticSource  # noqa: E402
from dsm_lightning.data.video_io import VideoDecodeError, VideoReader, load_frame_index  # noqa: E402
from dsm_lightning.prepare import prepare_shards  # noqa: E402

CLIP = dict(num_frames=4, stride=2, frame_size=32, crop_size=28, batch_size=2)
N_TRAIN = 16  # 2 classes x 8 videos


def synthetic(cache_dir: str) -> SyntheticSource:
    return SyntheticSource(num_classes=2, videos_per_class=8, eval_videos_per_class=2,
                           num_frames=12, size=32, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(files data module kwargs, shard root): the synthetic set and its shards."""
    root = tmp_path_factory.mktemp("packed")
    source = synthetic(str(root / "videos"))
    files = VideoDataModule(source=source, num_workers=0, **CLIP)
    # small chunks: several per split, so shuffling, splitting and resuming cross chunks
    prepare_shards(files, str(root / "shards"), chunk_bytes=20_000, progress=False)
    return source, str(root / "shards")


def pair(packed, **kwargs):
    """(files, shards) data modules with the same settings."""
    source, shards = packed
    settings = {**CLIP, "num_workers": 0, **kwargs}
    return (VideoDataModule(source=source, **settings),
            VideoDataModule(source="shards", root=shards, **settings))


def fake_training(dm: VideoDataModule) -> VideoDataModule:
    """Let ``on_after_batch_transfer`` take the training path outside a Trainer."""
    dm.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0)
    return dm


# ----------------------------------------------------------------------------- packing


def test_manifest_lists_every_split_with_records_in_order(packed):
    source, root = packed
    manifest = read_manifest(root)
    read = source.read()
    assert manifest["class_names"] == read.class_names
    for name, records in read.splits.items():
        rows = manifest["splits"][name]["records"]
        assert [row[0] for row in rows] == [r.video_id for r in records]
        assert [row[1] for row in rows] == [r.label for r in records]
        positions = [row[5] for row in rows]
        assert sorted(positions) == list(range(len(records)))
    # samples are stored in a shuffled order, so chunks mix the classes
    assert [row[5] for row in manifest["splits"]["train"]["records"]] != list(range(N_TRAIN))
    assert len(os.listdir(Path(root) / "train")) > 3  # index.json + several chunks


def test_shard_source_reads_the_splits_without_files(packed):
    source, root = packed
    shards = ShardSource(root)
    read, original = shards.read(), source.read()
    assert shards.class_names() == original.class_names
    for name in original.splits:
        assert [(r.video_id, r.label) for r in read.splits[name]] == [
            (r.video_id, r.label) for r in original.splits[name]]
        assert all(r.path.startswith(root) and not os.path.exists(r.path)
                   for r in read.splits[name])
    dm = VideoDataModule(source="shards", root=root, **CLIP)
    dm.setup()
    assert dm.split_names == [n for n, r in original.splits.items() if r]
    assert dm.num_classes == 2


@pytest.mark.parametrize("kwargs, error, match", [
    ({"val_split": 0.25}, ValueError, "val_split=0.25"),
    ({"decoder": "torchcodec"}, ValueError, "torchcodec"),
])
def test_invalid_settings_for_shards(packed, kwargs, error, match):
    with pytest.raises(error, match=match):
        dm = VideoDataModule(source="shards", root=packed[1], **CLIP, **kwargs)
        dm.train_dataloader()


def test_missing_manifest_and_existing_output(tmp_path, packed):
    with pytest.raises(FileNotFoundError, match=MANIFEST):
        VideoDataModule(source="shards", root=str(tmp_path), **CLIP).setup()
    with pytest.raises(ValueError, match="exists"):
        prepare_shards(packed[0], packed[1], progress=False)
    with pytest.raises(ValueError, match="already streams"):
        prepare_shards(VideoDataModule(source="shards", root=packed[1], **CLIP),
                       str(tmp_path / "again"), progress=False)


def test_bad_videos_are_left_out_when_packing(tmp_path):
    good = make_known_video(str(tmp_path / "src" / "good.mp4"), 24)
    bad = make_bad_files(str(tmp_path / "bad"), good)
    tree = tmp_path / "tree"
    for cls in ("a", "b"):
        (tree / cls).mkdir(parents=True)
        for i in range(2):
            (tree / cls / f"{i}.mp4").write_bytes(Path(good).read_bytes())
    (tree / "b" / "broken.avi").write_bytes(Path(bad["not_video"]).read_bytes())
    with pytest.warns(VideoSkippedWarning, match="broken.avi"):
        manifest = prepare_shards("folder", str(tmp_path / "shards"), root=str(tree),
                                  progress=False)
    assert [row[0] for row in manifest["splits"]["train"]["records"]] == [
        "a/0.mp4", "a/1.mp4", "b/0.mp4", "b/1.mp4"]
    assert [(s[0], os.path.basename(s[1])) for s in manifest["skipped"]] == [
        ("train", "broken.avi")]
    with pytest.warns(VideoSkippedWarning, match="broken.avi"):  # named again at setup
        VideoDataModule(source="shards", root=str(tmp_path / "shards"), **CLIP).setup()
    strict = VideoDataModule(source=FolderSource(str(tree)), on_error="raise", **CLIP)
    with pytest.raises(VideoDecodeError, match="broken.avi"):
        prepare_shards(strict, str(tmp_path / "strict"), progress=False)


# ----------------------------------------------------------------------------- same clips


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("corpus")))


def test_in_memory_reader_decodes_like_the_file(corpus):
    """Every corpus file (open GOPs, AVI, program streams, VFR, damaged): same frames or
    the same error from its bytes as from its path."""
    for video in corpus:
        index = load_frame_index(video.path)
        data = Path(video.path).read_bytes()
        wanted = sorted({0, 1, video.num_frames // 2, video.num_frames - 1})
        outcomes = []
        for kwargs in ({}, {"data": data, "index": index}, {"data": data}):
            try:
                with VideoReader(video.path, **kwargs) as reader:
                    frames = {**reader.read_frames(wanted, 24, (0.3, 0.7)),
                              **reader.read_frames(list(range(video.num_frames)))}
                outcomes.append(frames)
            except VideoDecodeError as err:
                outcomes.append(str(err))
        assert isinstance(outcomes[0], str) == (video.damaged_pts is not None), video.name
        for other in outcomes[1:]:
            if isinstance(outcomes[0], str):
                assert other == outcomes[0], video.name
            else:
                assert other.keys() == outcomes[0].keys(), video.name
                for key, frame in outcomes[0].items():
                    assert np.array_equal(other[key], frame), (video.name, key)


@pytest.mark.parametrize("task", ["pretrain", "classify"])
def test_streamed_items_equal_the_files_every_epoch(packed, task):
    """2 workers: each video once per epoch, in another order each epoch, and each item is
    the file's item of the same (seed, epoch, index)."""
    files, shards = pair(packed, task=task, num_workers=2)
    kind = ("pretrain", False) if task == "pretrain" else ("clip", True)
    reference = files.dataset(kind[0], "train", random_clip=kind[1])
    loader = shards.train_dataloader()
    assert isinstance(loader, shard_stream.ShardLoader) and len(loader) == N_TRAIN // 2
    orders = []
    for epoch in (0, 1):
        loader.start_at(epoch)
        batches = list(loader)
        order = [i for b in batches for i in b["index"].tolist()]
        assert sorted(order) == list(range(N_TRAIN)), order
        orders.append(order)
        for batch in batches:
            for j, index in enumerate(batch["index"].tolist()):
                item = reference[(index, epoch)]
                for key in ("video", "video_shift", "label"):
                    if key in item:
                        assert torch.equal(batch[key][j], item[key]), (epoch, index, key)
    assert orders[0] != orders[1]


def test_persistent_workers_follow_the_trainer_epoch(packed):
    """Persistent workers get each pass's epoch, also after a pass left unfinished."""
    files, shards = pair(packed, num_workers=2, persistent_workers=True)
    reference = files.dataset("pretrain", "train")
    loader = shards.train_dataloader()
    loader.start_at(0)
    for i, _ in enumerate(loader):  # noqa: B007 - a pass the trainer stopped early
        if i == 1:
            break
    for epoch in (3, 4):
        loader.start_at(epoch)
        batches = list(loader)
        assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(N_TRAIN))
        for batch in batches:
            for j, index in enumerate(batch["index"].tolist()):
                assert torch.equal(batch["video"][j], reference[(index, epoch)]["video"])


@pytest.mark.parametrize("task", ["pretrain", "classify"])
def test_device_side_gives_the_same_triplets(packed, task):
    files, shards = map(fake_training, pair(packed, task=task))
    kind = ("pretrain", False) if task == "pretrain" else ("clip", True)
    reference = files.dataset(kind[0], "train", random_clip=kind[1])
    for batch in list(shards.train_dataloader())[:2]:
        same = default_collate([reference[(i, 0)] for i in batch["index"].tolist()])
        from_shards = shards.on_after_batch_transfer(batch, 0)
        from_files = files.on_after_batch_transfer(same, 0)
        keys = ("anchor", "positive", "negative") if task == "pretrain" else ("video",)
        for key in keys:
            assert from_shards[key].dtype == torch.float32
            assert torch.equal(from_shards[key], from_files[key]), key


def test_evaluation_batches_equal_the_files(packed):
    files, shards = pair(packed, task="retrieval", n_clips=2, eval_batch_size=3)
    for a, b in zip(files.clip_dataloader("test", n_clips=2),
                    shards.clip_dataloader("test", n_clips=2), strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
    for loader_a, loader_b in zip(files.test_dataloader(), shards.test_dataloader(), strict=True):
        for a, b in zip(loader_a, loader_b, strict=True):
            assert a["video"].shape[1] == 2 and torch.equal(a["video"], b["video"])
    (a,), (b,) = list(files.clip_dataloader("val", batch_size=4)), list(
        shards.clip_dataloader("val", batch_size=4))
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])


def test_object_store_url_reads_through_the_cache(packed, tmp_path):
    """``local:`` goes through LitData's object-store path (download into ``cache_dir``)."""
    _, local = pair(packed)
    remote = VideoDataModule(source="shards", root="local:" + packed[1],
                             cache_dir=str(tmp_path / "cache"), **{**CLIP, "num_workers": 0})
    first = next(iter(remote.train_dataloader()))
    again = next(iter(local.train_dataloader()))
    assert torch.equal(first["video"], again["video"])
    assert torch.equal(next(iter(remote.clip_dataloader("test")))["video"],
                       next(iter(local.clip_dataloader("test")))["video"])
    assert any(p.suffix == ".bin" for p in (tmp_path / "cache").rglob("*"))


def test_a_bad_streamed_video_is_replaced_and_reported(packed, monkeypatch):
    _, shards = pair(packed)
    stream_item = shard_stream.ShardStream._clip_item
    bad = 5

    def flaky(self, sample):
        if int(sample["index"]) == bad:
            self.clips._mark_bad(bad, VideoDecodeError("synthetic damage"), "replaced")
            return None
        return stream_item(self, sample)

    monkeypatch.setattr(shard_stream.ShardStream, "_clip_item", flaky)
    loader = shards.train_dataloader()
    with pytest.warns(VideoSkippedWarning) as caught:
        order = [i for b in loader for i in b["index"].tolist()]
    assert len(order) == N_TRAIN and bad not in order
    assert sorted(set(order)) == sorted(set(range(N_TRAIN)) - {bad})
    messages = " ".join(str(w.message) for w in caught)
    assert "synthetic damage" in messages and "1 unreadable video" in messages
    assert shards.skipped_videos["train"] == [shards.records("train")[bad].path]


# ----------------------------------------------------------------------------- CLI, resume

FIT = """\
model:
  class_path: DSMLightningModule
  init_args: {{backbone: tiny3d, backbone_kwargs: {{width: 4}}, queue_size: 16}}
data:
  class_path: VideoDataModule
  init_args:
    source: {source}
    num_frames: 4
    stride: 2
    frame_size: 32
    crop_size: 32
    batch_size: 2
    num_workers: 2
"""


@pytest.fixture()
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dsm"])


@pytest.mark.usefixtures("_plain_argv")
def test_prepare_then_fit_and_resume_mid_epoch_through_the_cli(tmp_path):
    """``dsm prepare`` packs a fit config's data; ``dsm fit`` on the shards resumed from a
    mid-epoch checkpoint (epoch 1, batch 3 of 8, 2 workers) ends with the uninterrupted
    run's weights, queue and per-step losses: it streamed exactly the remaining batches."""
    videos = tmp_path / "videos"
    source = ("{class_path: SyntheticSource, init_args: {num_classes: 2, videos_per_class: 8, "
              f"eval_videos_per_class: 1, num_frames: 12, size: 32, cache_dir: '{videos}'}}}}")
    config = tmp_path / "files.yaml"
    config.write_text(fit_trainer_yaml(tmp_path / "unused", every_n_train_steps=11)
                      + FIT.format(source=source))
    shards = tmp_path / "shards"
    assert cli.main(["prepare", "--config", str(config), "--output", str(shards),
                     "--splits", "[train]", "--chunk_bytes", "20000"]) == 0
    assert list(json.loads((shards / MANIFEST).read_text())["splits"]) == ["train"]

    def fit(name: str, *extra: str) -> Path:
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(fit_trainer_yaml(run, every_n_train_steps=11)
                                         + FIT.format(source=f"shards\n    root: '{shards}'"))
        assert cli.main(["fit", "--config", str(run / "config.yaml"), *extra]) == 0
        return run

    full = fit("full")
    resumed = fit("resumed", "--ckpt_path", str(full / "ckpt" / "step=11.ckpt"))
    reference = torch.load(full / "ckpt" / "epoch=1.ckpt", weights_only=False)
    state = torch.load(resumed / "ckpt" / "epoch=1.ckpt", weights_only=False)
    assert reference["global_step"] == state["global_step"] == 2 * N_TRAIN // 2
    assert any(k.startswith("queue.") for k in reference["state_dict"])
    for key, value in reference["state_dict"].items():
        assert torch.equal(state["state_dict"][key], value), key
    full_losses, resumed_losses = logged_losses(full)[0], logged_losses(resumed)[0]
    assert sorted(resumed_losses) == list(range(11, 16))
    assert resumed_losses == {step: full_losses[step] for step in resumed_losses}


def test_litdata_state_dict_resumes_a_loader(packed):
    """Outside a Trainer, LitData's own state_dict / load_state_dict resume a pass."""
    _, shards = pair(packed, num_workers=2)
    loader = shards.train_dataloader()
    whole = [b["index"].tolist() for b in loader]
    loader = VideoDataModule(source="shards", root=packed[1], **{**CLIP, "num_workers": 2}
                             ).train_dataloader()
    iterator = iter(loader)
    head = [next(iterator)["index"].tolist() for _ in range(3)]
    state = loader.state_dict()
    del iterator
    fresh = VideoDataModule(source="shards", root=packed[1], **{**CLIP, "num_workers": 2}
                            ).train_dataloader()
    fresh.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tail = [b["index"].tolist() for b in fresh]
    assert head + tail == whole
