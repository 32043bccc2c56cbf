"""A source says how it is read: its flags and builders, and what the data module reads."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from helpers.video_fixtures import make_known_video

from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.datasets import (
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoSkippedWarning,
)
from dsm_lightning.data.loaders import TrainLoader, VideoLoader
from dsm_lightning.data.reading import (
    SourceReader,
    hold_out,
    read_splits,
    resolve_source,
    source_name,
)
from dsm_lightning.data.sources import (
    FolderSource,
    SourceSplits,
    StreamingSource,
    SyntheticSource,
    VideoRecord,
    VideoSource,
    base,
)

CLIP = dict(num_frames=4, stride=2, frame_size=32, crop_size=28)
CLIP_ITEM = dict(num_frames=4, stride=2, frame_size=32)  # the datasets' share of CLIP


class _Listed(VideoSource):
    """Two classes of one real file each (x3), plus a record whose file is missing."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> SourceSplits:
        train = [VideoRecord(self.path, i % 2, f"v{i}") for i in range(6)]
        return SourceSplits({"train": train + [VideoRecord("/nowhere.mp4", 0, "gone")],
                             "test": train[:2]}, ["a", "b"], [])


class _Streamed(StreamingSource):
    """A streamed source that keeps the map-style datasets and loaders (``super()``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> SourceSplits:
        return _Listed(self.path).read()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_known_video(str(tmp_path_factory.mktemp("reading") / "v.mp4"), 30)


def test_a_source_says_how_it_is_read():
    assert (VideoSource.records_are_files, VideoSource.fixed_splits) == (True, False)
    assert (StreamingSource.records_are_files, StreamingSource.fixed_splits) == (False, True)
    from dsm_lightning.data.shards import ShardSource

    assert issubclass(ShardSource, StreamingSource) and not ShardSource.records_are_files


@pytest.mark.parametrize("kind, cls", [("pretrain", PretrainClipDataset),
                                       ("clip", LabelledClipDataset),
                                       ("multiview", MultiViewClipDataset)])
def test_default_builders_are_map_style(video, kind, cls):
    source = _Listed(video)
    records = source.read().splits["test"]
    dataset = source.build_dataset(kind, records, False, split="test", **CLIP_ITEM)
    assert type(dataset) is cls and dataset.records == records
    with pytest.raises(ValueError, match="kind must be one of"):
        source.build_dataset("triplet", records, False)


def test_streamed_source_reads_without_files_and_with_fixed_splits(video):
    with pytest.raises(ValueError, match=r"val_split=0.5 with source _Streamed: its splits"):
        VideoDataModule(source=_Streamed(video), val_split=0.5, **CLIP)
    dm = VideoDataModule(source=_Streamed(video), num_workers=0, batch_size=2, **CLIP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped: records need not be files
        assert len(dm.records("train")) == 7
    files = VideoDataModule(source=_Listed(video), num_workers=0, batch_size=2, **CLIP)
    with pytest.warns(VideoSkippedWarning, match="nowhere.mp4"):
        assert len(files.records("train")) == 6
    assert files.skipped_videos == {"train": ["/nowhere.mp4"]}
    assert isinstance(files.train_dataloader(), TrainLoader)
    assert type(files.clip_dataloader("test")) is VideoLoader


def test_resolve_source_by_name_or_instance(tmp_path):
    source = resolve_source("folder", 3, root=str(tmp_path), cache_dir=None)
    assert isinstance(source, FolderSource) and source.root == str(tmp_path)
    synthetic = SyntheticSource()
    assert resolve_source(synthetic, 5) is synthetic and synthetic.settings["seed"] == 5
    with pytest.raises(ValueError, match="root given with a VideoSource instance"):
        resolve_source(SyntheticSource(), 0, root=".")
    with pytest.raises(ValueError, match="registered name or a VideoSource"):
        resolve_source(3, 0)  # type: ignore[arg-type]
    assert source_name("folder") == "folder" and source_name(synthetic) == "synthetic"
    assert source_name(_Listed("x")) == "_Listed"


def test_hold_out_per_class_seeded_never_a_class_s_last():
    records = [VideoRecord(f"{c}{i}", c, f"{c}{i}") for c, n in ((0, 10), (1, 3), (2, 1))
               for i in range(n)]
    train, val = hold_out(records, 0.2, seed=4)
    assert [r.label for r in val].count(0) == 2 and [r.label for r in val].count(1) == 1
    assert [r.label for r in train].count(2) == 1  # a class of one video keeps it
    assert sorted(train + val) == sorted(records) and not set(train) & set(val)
    assert hold_out(records, 0.2, seed=4) == (train, val)
    assert hold_out(records, 0.2, seed=5) != (train, val)
    assert train == [r for r in records if r in train]  # input order kept


def test_read_splits_policies(video):
    with pytest.raises(ValueError, match=r"1 bad annotation entries \(on_error='raise'\)"):
        read_splits(_Listed(video), 0.0, 0, "raise")
    with pytest.warns(VideoSkippedWarning, match="file not found"):
        splits = read_splits(_Listed(video), 0.34, 0, "skip")
    # the hold-out is drawn from the listed records, then missing files are dropped
    train, val = hold_out(_Listed(video).read().splits["train"], 0.34, 0)
    assert len(val) == 2
    assert splits.splits["train"] == [r for r in train if r.path == video]
    assert splits.splits["val"] == [r for r in val if r.path == video]
    assert [s.item for s in splits.skipped] == ["/nowhere.mp4"]


def test_source_reader_reads_once_and_caches_datasets(video):
    reader = SourceReader(_Streamed(video), "streamed", 0.0, "skip", seed=0, min_gap=3,
                          **CLIP_ITEM)
    assert not reader.is_read and reader.class_names() == ["a", "b"]
    assert reader.split_names() == ["train", "test"] and reader.is_read
    first = reader.dataset("multiview", "test", n_clips=2, evaluation=True)
    assert reader.dataset("multiview", "test", n_clips=2, evaluation=True) is first
    assert first.n_clips == 2 and not first.substitute_bad
    assert reader.dataset("pretrain", "train").sampler.min_gap == 3
    with pytest.raises(ValueError, match="split 'val' has no videos for source='streamed'"):
        reader.records("val")


def test_sources_base_imports_without_torch():
    code = ("import sys, importlib.util as u; sys.modules['torch'] = None; "
            f"spec = u.spec_from_file_location('source_base', {base.__file__!r}); "
            "m = u.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(m.VideoSource.records_are_files)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
