"""Datasets and VideoDataModule: items, determinism, sharding, bad input, synthetic source."""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers.video_fixtures import copy_video, frame_ids, make_bad_files, make_known_video
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from dsm_lightning.data.datamodule import ClipSpec, VideoDataModule
from dsm_lightning.data.datasets import (
    EpochSampler,
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoSkippedWarning,
)
from dsm_lightning.data.loaders import device_generator
from dsm_lightning.data.sources import AnnotationError, SyntheticSource, VideoRecord
from dsm_lightning.data.synthetic import generate_synthetic, render_video, synthetic_settings
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.triplet import TripletBuilder

CLIP = dict(num_frames=4, stride=2, frame_size=32, crop_size=28)


@pytest.fixture(scope="module")
def known_dir(tmp_path_factory):
    """Folder-per-class tree of known-frame videos (30 frames) in several containers."""
    root = tmp_path_factory.mktemp("known")
    base = make_known_video(str(root / "_src" / "v.mp4"), 30)
    other = make_known_video(str(root / "_src" / "v.webm"), 30, codec="libvpx")
    for cls in ("a", "b"):
        for i in range(3):
            copy_video(base if i % 2 == 0 else other, str(root / "train" / cls / f"{i}.{'mp4' if i % 2 == 0 else 'webm'}"))
        copy_video(base, str(root / "test" / cls / "t.mp4"))
    return root


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def synthetic(cache_dir: str) -> SyntheticSource:
    """The tests' small synthetic set (4 classes, 8 train videos each, 20 frames of 32 px)."""
    return SyntheticSource(num_classes=4, videos_per_class=8, eval_videos_per_class=4,
                           num_frames=20, size=32, bias=0.75, cache_dir=cache_dir)


def records(root, n=4):
    path = make_known_video(str(root / "k.mp4"), 30)
    return [VideoRecord(path, i % 2, f"k{i}") for i in range(n)]


# ----------------------------------------------------------------------------- datasets


def test_pretrain_item_contract_and_temporal_shift(tmp_path):
    ds = PretrainClipDataset(records(tmp_path), min_gap=3, num_frames=5, stride=3, frame_size=16)
    for index in range(4):
        item = ds[index]
        assert set(item) == {"video", "video_shift", "label", "index"}
        for key in ("video", "video_shift"):
            clip = item[key]
            assert clip.shape == (3, 5, 16, 16) and clip.dtype == torch.uint8
            assert clip.is_contiguous()
        a, b = frame_ids(item["video"]), frame_ids(item["video_shift"])
        assert a == list(range(a[0], a[0] + 13, 3)) and b == list(range(b[0], b[0] + 13, 3))
        assert abs(a[0] - b[0]) >= 3
        assert item["label"].dtype == torch.int64 and int(item["index"]) == index


@pytest.mark.parametrize("policy, expected", [("loop", [0, 2, 4, 1]), ("pad", [0, 2, 4, 4])])
def test_short_video_policy(tmp_path, policy, expected):
    path = make_known_video(str(tmp_path / "short.mkv"), 5)
    ds = LabelledClipDataset([VideoRecord(path, 0, "s")], num_frames=4, stride=2, frame_size=16,
                             short_video=policy)
    assert frame_ids(ds[0]["video"]) == expected


def test_multiview_windows_and_segment(tmp_path):
    path = make_known_video(str(tmp_path / "k.avi"), 30, codec="mpeg4")
    ds = MultiViewClipDataset([VideoRecord(path, 1, "k")], n_clips=3, num_frames=3, stride=2,
                              frame_size=16)
    video = ds[0]["video"]
    assert video.shape == (3, 3, 3, 16, 16)
    assert [frame_ids(v)[0] for v in video] == [4, 12, 21]  # max_start 25: round(25 * (2i + 1) / 6)
    # an untrimmed video's labelled segment [0.4 s, 0.8 s) = frames 10..19 at 25 fps
    seg = LabelledClipDataset([VideoRecord(path, 0, "k", 0.4, 0.8)], random_clip=True,
                              num_frames=3, stride=2, frame_size=16)
    for epoch in range(5):
        ids = frame_ids(seg[(0, epoch)]["video"])
        assert all(10 <= i < 20 for i in ids)


def test_items_depend_on_seed_epoch_index_only(tmp_path):
    ds = PretrainClipDataset(records(tmp_path, 8), num_frames=3, stride=2, frame_size=24)
    ds_same = PretrainClipDataset(records(tmp_path, 8), num_frames=3, stride=2, frame_size=24)
    for index in range(8):
        first = ds[(index, 0)]
        assert all(torch.equal(first[k], ds_same[(index, 0)][k]) for k in first)
    starts = {tuple(frame_ids(ds[(3, e)]["video"])) for e in range(8)}
    assert len(starts) > 2  # the epoch changes the clip


def test_workers_and_shards_give_identical_items(tmp_path):
    ds = PretrainClipDataset(records(tmp_path, 10), num_frames=3, stride=2, frame_size=16)

    def collect(num_workers, replicas=1, rank=0, epoch=0):
        sampler = EpochSampler(ds, num_replicas=replicas, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=num_workers)
        return {int(i): v for b in loader for i, v in zip(b["index"], b["video_shift"])}

    single = collect(0)
    assert sorted(single) == list(range(10))
    workers = collect(2)
    assert all(torch.equal(single[i], workers[i]) for i in single)
    shards = [collect(0, 2, r) for r in (0, 1)]
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(10))
    assert all(torch.equal(single[i], s[i]) for s in shards for i in s)
    other_epoch = collect(0, epoch=1)
    assert any(not torch.equal(single[i], other_epoch[i]) for i in single)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_generation_is_deterministic_and_cached(tmp_path):
    settings = synthetic_settings(4, 4, 2, 16, 32, 0.75, seed=5)
    manifest = generate_synthetic(str(tmp_path / "a"), settings, workers=1, progress=False)
    again = generate_synthetic(str(tmp_path / "b"), settings, workers=1, progress=False)
    assert manifest["splits"] == again["splits"]
    for split in ("train", "balanced_test_static"):
        rel = manifest["splits"][split][0]["path"]
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    mtime = os.path.getmtime(tmp_path / "a" / "manifest.json")
    generate_synthetic(str(tmp_path / "a"), settings, workers=1, progress=False)
    assert os.path.getmtime(tmp_path / "a" / "manifest.json") == mtime  # reused
    with open(tmp_path / "a" / "manifest.json") as handle:
        assert json.load(handle)["settings"] == settings


def test_synthetic_split_design(synth_dir):
    settings = synthetic_settings(4, 8, 4, 20, 32, 0.75, seed=0)
    splits = generate_synthetic(synth_dir, settings, progress=False)["splits"]
    own = [v["label"] == v["scene"] for v in splits["train"]]
    assert sum(own) == 4 * 6  # round(0.75 * 8) per class on its own scene
    assert not any(v["label"] == v["scene"] for v in splits["swapped_test"])
    counts = np.zeros((4, 4), int)
    for v in splits["balanced_train"]:
        counts[v["label"], v["scene"]] += 1
    assert (counts == 2).all()  # every class on every scene equally often
    for name in ("test", "swapped_test", "balanced_test"):
        plain, static = splits[name], splits[f"{name}_static"]
        assert [(v["label"], v["scene"]) for v in plain] == [(v["label"], v["scene"]) for v in static]


def test_synthetic_motion_visible_and_static_sets_frozen(synth_dir):
    dm = VideoDataModule(source=synthetic(synth_dir), num_workers=0, batch_size=16, **CLIP)
    assert dm.num_classes == 4 and dm.class_names[0] == "move_right"
    moving = next(iter(dm.clip_dataloader("balanced_test")))["video"].float()
    static = next(iter(dm.clip_dataloader("balanced_test_static")))["video"].float()
    frame_change = (moving[:, :, 1:] - moving[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
    assert (frame_change > 0.25).all()  # every clip moves between sampled frames
    assert (static[:, :, 1:] - static[:, :, :-1]).abs().max() <= 2  # codec noise only
    # static clip = the middle frame of the moving video
    full = dm.records("balanced_test")[0].path
    assert os.path.basename(full) == "balanced_test_00000.mp4"


def test_synthetic_motion_defines_the_class():
    """On a flat scene the sprite's circular centroid moves along its class direction and
    its area grows (zoom in) or shrinks (zoom out), whatever its random appearance."""
    settings = synthetic_settings(8, 1, 1, 20, 64)
    flat = np.full((64, 64, 3), 128, np.uint8)
    angles = 2 * np.pi * (np.arange(64) + 0.5) / 64
    directions = {0: (1, 0), 1: (-1, 0), 2: (0, -1), 3: (0, 1)}  # (dx, dy), y points down
    for seed in range(6):
        for label in range(8):
            video = render_video(label, flat, settings, np.random.default_rng([seed, label]))
            background = np.median(video.reshape(-1, 3), axis=0)  # flat, brightness-jittered
            mask = (np.abs(video - background).sum(-1) > 30).astype(float)  # (T, H, W)
            if label in directions:
                cx = np.angle((mask.sum(1) * np.exp(1j * angles)).sum(-1))
                cy = np.angle((mask.sum(2) * np.exp(1j * angles)).sum(-1))
                step = lambda c: np.angle(np.exp(1j * (c[4] - c[0]))) * 64 / (2 * np.pi)  # noqa: E731
                dx, dy = step(cx), step(cy)
                ex, ey = directions[label]
                assert dx * ex + dy * ey > 4 and abs(dx * ey - dy * ex) < 2, (label, dx, dy)
            elif label in (6, 7):
                area = mask.sum((1, 2))
                assert (area[-1] > 1.5 * area[0]) == (label == 6), (label, area[0], area[-1])


def test_synthetic_sprites_share_the_motion_and_cover_more_of_the_frame():
    flat = np.full((64, 64, 3), 128, np.uint8)
    covered = {}
    for sprites in (1, 3):
        settings = synthetic_settings(8, 1, 1, 12, 64, sprites=sprites)
        fractions = []
        for seed in range(4):
            video = render_video(0, flat, settings, np.random.default_rng([seed, 0]))
            changed = np.abs(np.diff(video.astype(int), axis=0)).sum(-1) > 30
            fractions.append(changed.mean())
        covered[sprites] = float(np.mean(fractions))
    assert covered[3] > 1.8 * covered[1]
    with pytest.raises(ValueError, match="sprites"):
        synthetic_settings(sprites=0)


# ----------------------------------------------------------------------------- datamodule


def test_datamodule_loaders_and_device_transforms(synth_dir):
    dm = VideoDataModule(source=synthetic(synth_dir), num_workers=0, batch_size=4, n_clips=3,
                         n_crops=3, **CLIP)
    dm.prepare_data()
    dm.setup("fit")
    assert {"train", "val", "test", "balanced_train", "swapped_test_static"} <= set(dm.split_names)
    train = next(iter(dm.train_dataloader()))
    assert train["video"].shape == train["video_shift"].shape == (4, 3, 4, 32, 32)
    dm.trainer = SimpleNamespace(training=True)
    out = dm.on_after_batch_transfer(train, 0)
    assert set(out) >= {"anchor", "positive", "negative", "label", "index"}
    assert "video" not in out and out["anchor"].shape == (4, 3, 4, 28, 28)
    assert out["anchor"].dtype == torch.float32
    val = next(iter(dm.val_dataloader()))
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(val, 0)["video"].shape == (4, 3, 4, 28, 28)
    test = next(iter(dm.test_dataloader()))
    assert test["video"].shape == (4, 3, 3, 4, 32, 32)
    assert dm.on_after_batch_transfer(test, 0)["video"].shape == (4, 9, 3, 4, 28, 28)
    dm.trainer = None  # no trainer attached: evaluation transform
    assert dm.on_after_batch_transfer(val, 0)["video"].dtype == torch.float32
    views = next(iter(dm.clip_dataloader("balanced_test", n_clips=2)))["video"]
    assert views.shape == (4, 2, 3, 4, 32, 32)
    assert isinstance(dm.augment, TripletBuilder) and isinstance(dm.transform, ClipTransform)


def test_views_are_the_one_place_per_stage(synth_dir):
    """``views(batch, stage)``: what ``on_after_batch_transfer`` gives, from the training
    loader's batch position by default or an explicit generator; eval is deterministic."""
    dm = VideoDataModule(source=synthetic(synth_dir), num_workers=0, batch_size=4, n_clips=2,
                         n_crops=3, seed=7, **CLIP)
    train = next(iter(dm.train_dataloader()))  # batch 0 of epoch 0 of the training loader

    def draws() -> torch.Generator:
        return device_generator(7, 0, 0, 0)

    views = dm.views(train, "pretrain", generator=draws())
    assert set(views) == {"anchor", "positive", "negative", "label", "index"}
    assert views["anchor"].shape == (4, 3, 4, 28, 28) and views["anchor"].dtype == torch.float32
    again = dm.views(train, "pretrain", generator=draws())
    dm.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0)
    hooked = dm.on_after_batch_transfer(train, 0)  # the loader's position: the same draws
    for key in ("anchor", "positive", "negative"):
        assert torch.equal(views[key], again[key]) and torch.equal(views[key], hooked[key])
    assert train["video"].dtype == torch.uint8 and "video_shift" in train  # input untouched
    clips = dm.views(train, "train", generator=draws())
    assert torch.equal(clips["video"], dm.transform.train(train["video"], 28, generator=draws()))
    test = next(iter(dm.test_dataloader()))
    evaluated = dm.views(test, "eval")
    assert evaluated["video"].shape == (4, 6, 3, 4, 28, 28)  # 2 windows x 3 crops
    assert torch.equal(evaluated["video"], dm.views(test, "eval")["video"])
    dm.trainer = SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(test, 0)["video"], evaluated["video"])
    with pytest.raises(ValueError, match="stage must be one of"):
        dm.views(train, "fit")
    spec = dm.clip_spec
    assert spec == ClipSpec(num_frames=4, crop_size=28, mean=dm.transform.mean,
                            std=dm.transform.std, n_clips=2, n_crops=3)
    assert all(isinstance(v, float) for v in spec.mean + spec.std)


def test_classify_and_retrieval_tasks(known_dir):
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"),
                         test_root=str(known_dir / "test"), task="retrieval", num_workers=0,
                         batch_size=2, n_clips=2, val_split=0.34, **CLIP)
    assert dm.num_classes == 2 and dm.class_names == ["a", "b"]
    gallery, queries = dm.test_dataloader()
    assert len(gallery.dataset) == 4 and len(queries.dataset) == 2  # 2 of 6 held out for val
    assert len(dm.val_dataloader().dataset) == 2
    assert next(iter(queries))["video"].shape == (2, 2, 3, 4, 32, 32)
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"), task="classify",
                         num_workers=0, batch_size=2, **CLIP)
    assert set(next(iter(dm.train_dataloader()))) == {"video", "label", "index"}
    assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="pass test_root"):
        dm.test_dataloader()
    dm.trainer = SimpleNamespace(training=True)
    batch = next(iter(dm.train_dataloader()))
    assert dm.on_after_batch_transfer(batch, 0)["video"].shape == (2, 3, 4, 28, 28)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(source="ucf"), "unknown source 'ucf'; registered sources: diving48, folder, hmdb51"),
        (dict(task="probe"), "task must be one of"),
        (dict(num_frames=0), "num_frames"),
        (dict(num_frames=1), r"num_frames must be >= 2 \(a clip needs two frames"),
        (dict(frame_size=64, crop_size=112), "crop_size=112 exceeds frame_size=64"),
        (dict(short_video="mirror"), "short_video"),
        (dict(on_error="ignore"), "on_error"),
        (dict(decoder="opencv"), "decoder must be one of"),
        (dict(val_split=1.0), "val_split"),
        (dict(source="folder"), "source 'folder' needs root"),
        (dict(source="list", root="."), "source 'list' needs annotations"),
        (dict(source="ucf101", root=".", split=4), "split must be 1, 2 or 3"),
        (dict(source="synthetic", root="."), "source 'synthetic' does not accept root"),
        (dict(source="folder", root=".", annotations="a.txt"), "does not accept annotations"),
        (dict(source=SyntheticSource(), cache_dir="."), "cache_dir given with a VideoSource"),
        (dict(source=3), "source must be a registered name or a VideoSource"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VideoDataModule(**kwargs)
    with pytest.raises(ValueError, match="bias"):  # a source checks its own settings
        SyntheticSource(bias=1.5)


def test_sources_by_name_or_instance(synth_dir, known_dir):
    dm = VideoDataModule(num_workers=0, seed=3)
    assert isinstance(dm.source, SyntheticSource) and dm.source.settings["seed"] == 3
    assert dm.hparams.source == "synthetic" and dm.num_classes == 8  # default settings
    source = synthetic(synth_dir)
    dm = VideoDataModule(source=source, num_workers=0, **CLIP)
    assert dm.source is source and dm.hparams.source == "synthetic"
    assert dm.source.settings["seed"] == 0  # seed=None: the data module's
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"),
                         test_root=str(known_dir / "test"), num_workers=0, **CLIP)
    assert (dm.source.root, dm.source.test_root) == (str(known_dir / "train"),
                                                      str(known_dir / "test"))
    assert dm.class_names == ["a", "b"] and len(dm.records("test")) == 2


def test_one_clip_transform_and_crop_size_for_every_path(known_dir):
    """The data module's transform and crop_size reach the view builder, the fine-tuning and
    the evaluation clips: the builder holds no transform of its own."""
    transform = ClipTransform(flip_prob=0.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    builder = TripletBuilder(negative_kinds=("reverse",))
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"), num_workers=0,
                         batch_size=2, transform=transform, augment=builder,
                         **{**CLIP, "crop_size": 24})
    assert dm.transform is transform and not hasattr(builder, "transform")
    dm.trainer = SimpleNamespace(training=True)
    batch = next(iter(dm.train_dataloader()))
    out = dm.on_after_batch_transfer(batch, 0)
    assert out["anchor"].shape[-2:] == out["negative"].shape[-2:] == (24, 24)
    dm.trainer = SimpleNamespace(training=False)
    clips = dm.on_after_batch_transfer(dict(batch), 0)["video"]
    assert clips.shape[-2:] == (24, 24)
    torch.testing.assert_close(clips, transform.eval(batch["video"], 24))  # its statistics


def test_batch_larger_than_the_training_split_is_rejected(known_dir):
    kwargs = dict(source="folder", root=str(known_dir / "train"), num_workers=0, **CLIP)
    with pytest.raises(ValueError, match=r"batch_size=7 exceeds the 6 training videos per proc"):
        VideoDataModule(batch_size=7, **kwargs).setup("fit")
    VideoDataModule(batch_size=7, drop_last=False, **kwargs).setup("fit")  # a short batch: fine
    VideoDataModule(batch_size=7, **kwargs).setup("test")  # evaluation only: no training batch
    ddp = VideoDataModule(batch_size=4, **kwargs)
    ddp.trainer = SimpleNamespace(world_size=2)  # 3 videos per process
    with pytest.raises(ValueError, match=r"3 training videos per process \(6 videos, 2 process"):
        ddp.setup("fit")
    with pytest.raises(ValueError, match="batch_size=4"):
        ddp.train_dataloader()


def test_decoder_reaches_the_datasets(known_dir, monkeypatch):
    from dsm_lightning.data import datasets, torchcodec_backend

    # The wiring is under test, not torchcodec: pretend the backend loads where it is absent.
    monkeypatch.setattr(torchcodec_backend, "unavailable_reason", lambda: "")
    seen = {}

    class Capture(datasets.PretrainClipDataset):
        def __init__(self, records, **kwargs):
            seen.update(kwargs)
            super().__init__(records, **kwargs)

    monkeypatch.setitem(datasets.DATASET_KINDS, "pretrain", Capture)
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"), num_workers=0,
                         decoder="torchcodec", **CLIP)
    dm.dataset("pretrain", "train")
    assert seen["decoder"] == "torchcodec" and seen["substitute_bad"] is True


def test_bad_videos_are_skipped_counted_and_summarised(tmp_path):
    good = make_known_video(str(tmp_path / "train" / "a" / "good0.mp4"), 30)
    copy_video(good, str(tmp_path / "train" / "a" / "good1.mp4"))
    bad = make_bad_files(str(tmp_path / "train" / "b"), good)
    kwargs = dict(source="folder", root=str(tmp_path / "train"), batch_size=7, drop_last=False,
                  **CLIP)
    dm = VideoDataModule(num_workers=2, **kwargs)
    with pytest.warns(VideoSkippedWarning) as record:
        batches = list(dm.train_dataloader())
    assert sum(len(b["index"]) for b in batches) == 7  # every slot filled with a good video
    messages = " ".join(str(w.message) for w in record)
    assert "5 unreadable video(s)" in messages  # end-of-epoch summary, main process
    for path in bad.values():
        assert os.path.basename(path) in messages
    assert sorted(dm.skipped_videos["train"]) == sorted(bad.values())
    for batch in batches:
        assert set(batch["label"].tolist()) == {0}  # substitutes are the good class-a videos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = VideoDataModule(num_workers=0, on_error="raise", **kwargs)
        with pytest.raises(Exception, match=r"(zero|truncated|text|two|one)\.(mp4|avi|mkv)"):
            list(strict.train_dataloader())


def test_annotation_problems_at_setup(tmp_path):
    good = make_known_video(str(tmp_path / "v" / "a.mp4"), 30)
    train = tmp_path / "train.txt"
    train.write_text(f"{os.path.basename(good)} 0\nmissing.mp4 1\n")
    test = tmp_path / "test.txt"
    test.write_text("a.mp4 5\n")
    kwargs = dict(source="list", root=str(tmp_path / "v"), annotations=str(train),
                  test_annotations=str(test), num_workers=0, batch_size=1, **CLIP)
    dm = VideoDataModule(**kwargs)
    with pytest.warns(VideoSkippedWarning, match="missing.mp4"):
        dm.setup("fit")
    assert len(dm.records("train")) == 1 and dm.num_classes == 2
    assert dm.skipped_videos["test"][0].endswith("a.mp4")  # unknown class 5
    with pytest.raises(ValueError, match="missing.mp4"):
        VideoDataModule(**{**kwargs, "on_error": "raise"}).setup("fit")
    train.write_text("a.mp4 0\njust-a-path\n")
    with pytest.raises(AnnotationError, match=r"train.txt, line 2"):
        VideoDataModule(**kwargs).setup("fit")


class Recorder(pl.LightningModule):
    """Trains one weight on whatever clip the batch holds; records what each stage saw."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.raw: list[tuple[int, list[int], torch.Tensor]] = []
        self.seen: dict[str, list[int]] = {"train": [], "test": []}

    def on_before_batch_transfer(self, batch, dataloader_idx):
        if self.trainer.training:
            self.raw.append((self.current_epoch, batch["index"].tolist(),
                             batch["video"].clone()))
        return batch

    def training_step(self, batch, batch_idx):
        self.seen["train"] += batch["index"].tolist()
        clip = batch["anchor"] if "anchor" in batch else batch["video"]
        return (clip.mean() * self.weight).sum()

    def test_step(self, batch, batch_idx):
        self.seen["test"] += batch["index"].tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ValidatingRecorder(Recorder):
    def validation_step(self, batch, batch_idx):
        self.seen.setdefault("val", []).extend(batch["index"].tolist())


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def _metric_rows(logger_dir, name: str) -> list[float]:
    with open(os.path.join(logger_dir, "metrics.csv"), newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def test_lightning_fit_passes_epoch_to_persistent_workers(synth_dir):
    """Under a real Trainer the epoch reaches persistent workers and the hook runs; a
    pretraining model without validation_step gets no validation loader (and no warning)."""
    dm = VideoDataModule(source=synthetic(synth_dir), num_workers=2, persistent_workers=True,
                         batch_size=8, **CLIP)
    model = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(limit_train_batches=2).fit(model, datamodule=dm)
    assert not [w for w in caught if "validation_step" in str(w.message)]
    assert dm.val_dataloader is None  # the synthetic source has a val split, unused here
    assert [epoch for epoch, _, _ in model.raw] == [0, 0, 1, 1]
    dataset = dm.dataset("pretrain", "train")
    for epoch, indices, video in model.raw:
        for index, clip in zip(indices, video):
            assert torch.equal(clip, dataset[(index, epoch)]["video"])


def test_validation_loader_when_the_model_validates(synth_dir):
    dm = VideoDataModule(source=synthetic(synth_dir), num_workers=0, batch_size=8, **CLIP)
    assert callable(dm.val_dataloader)  # no trainer attached: the plain loader factory
    model = ValidatingRecorder()
    _trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0).fit(model, datamodule=dm)
    assert sorted(model.seen["val"]) == list(range(len(dm.records("val"))))


def test_skip_summary_once_per_epoch_and_logged_under_fit(tmp_path):
    """Lightning stops after len(loader) batches: the summary of an epoch comes when the next
    one starts, the last one at teardown; the count goes to the logger every epoch."""
    good = make_known_video(str(tmp_path / "train" / "a" / "good0.mp4"), 30)
    copy_video(good, str(tmp_path / "train" / "a" / "good1.mp4"))
    bad = make_bad_files(str(tmp_path / "train" / "b"), good)
    dm = VideoDataModule(source="folder", root=str(tmp_path / "train"), batch_size=2,
                         num_workers=0, **CLIP)
    logger = CSVLogger(str(tmp_path / "logs"), name="", version="")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(logger=logger, log_every_n_steps=1).fit(Recorder(), datamodule=dm)
    summaries = [str(w.message) for w in caught if "unreadable video(s)" in str(w.message)]
    assert len(summaries) == 2, summaries  # one per epoch, the last one at teardown
    counts = []
    for epoch, message in enumerate(summaries):
        match = re.match(rf"split 'train', epoch {epoch}: (\d+) item\(s\) skipped .*, "
                         r"(\d+) unreadable video\(s\): ", message)
        assert match, message
        named = [name for name in map(os.path.basename, bad.values()) if name in message]
        assert len(named) == int(match.group(2)) >= 3  # the truncated file may decode a clip
        counts.append((float(match.group(2)), float(match.group(1))))
    assert "zero.mp4" in summaries[0] and "text.avi" in summaries[1]  # never readable
    assert _metric_rows(logger.log_dir, "data/skipped_videos") == [c[0] for c in counts]
    assert _metric_rows(logger.log_dir, "data/skipped_items") == [c[1] for c in counts]


def test_evaluation_reports_the_videos_left_out(tmp_path, known_dir):
    test_dir = tmp_path / "test"
    for cls in ("a", "b"):
        copy_video(str(known_dir / "test" / cls / "t.mp4"), str(test_dir / cls / "t.mp4"))
    (test_dir / "b" / "broken.mp4").write_bytes(b"")
    dm = VideoDataModule(source="folder", root=str(known_dir / "train"), test_root=str(test_dir),
                         task="classify", n_clips=2, batch_size=3, num_workers=0, **CLIP)
    logger = CSVLogger(str(tmp_path / "logs"), name="", version="")
    model = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(logger=logger).test(model, datamodule=dm)
    reports = [str(w.message) for w in caught if str(w.message).startswith("split 'test'")]
    assert len(reports) == 1 and "broken.mp4" in reports[0], reports
    assert _metric_rows(logger.log_dir, "data/left_out_videos/test") == [1.0]
    assert "left out of the metrics" in reports[0]
    records = dm.records("test")
    bad = next(i for i, r in enumerate(records) if r.path.endswith("broken.mp4"))
    # the bad video is not in the metrics, and no other video stands in for it
    assert sorted(model.seen["test"]) == sorted(set(range(len(records))) - {bad})
