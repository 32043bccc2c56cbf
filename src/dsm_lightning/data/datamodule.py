"""``VideoDataModule``: every data layout behind one LightningDataModule.

Workers decode uint8 clips (``datasets``); the device-side ``TripletBuilder`` turns them
into normalised anchor / positive / negative clips in ``on_after_batch_transfer``.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dsm_lightning import distributed
from dsm_lightning._checks import check_choice
from dsm_lightning.data import synthetic
from dsm_lightning.data.datasets import (
    ON_ERROR,
    EpochSampler,
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoDataset,
    VideoSkippedWarning,
)
from dsm_lightning.data.sampling import SHORT_VIDEO_POLICIES
from dsm_lightning.data.sources import (
    SkippedItem,
    SourceSplits,
    VideoRecord,
    drop_missing,
    read_folder,
    read_hmdb51,
    read_kinetics_csv,
    read_list_files,
    read_ucf101,
    scan_folder,
)
from dsm_lightning.disturb.triplet import TripletBuilder

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "folder", "ucf101", "hmdb51", "kinetics_csv", "list")
TASKS = ("pretrain", "classify", "retrieval")


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def log_skip_summary(dataset: VideoDataset) -> dict[str, int]:
    """Warn once with the videos skipped since the last summary of ``dataset``.

    Args:
        dataset: A dataset whose workers may have skipped videos.

    Returns:
        ``{path: times skipped}`` for this period (empty when nothing was skipped).
    """
    report = dataset.take_skip_report()
    if report:
        listed = ", ".join(f"{os.path.basename(p)} (x{n})" for p, n in sorted(report.items()))
        message = (
            f"split {dataset.split!r}: {sum(report.values())} item(s) skipped this epoch, "
            f"{len(report)} unreadable video(s): {listed}"
        )
        warnings.warn(message, VideoSkippedWarning, stacklevel=2)
        log.warning(message)
    return report


class _ReportingDataLoader(DataLoader):
    """A ``DataLoader`` that logs the skipped-video summary when an epoch ends."""

    def __iter__(self):  # type: ignore[override]
        yield from super().__iter__()
        if isinstance(self.dataset, VideoDataset):
            log_skip_summary(self.dataset)


class VideoDataModule(pl.LightningDataModule):
    """Video clips for DSM pretraining, fine-tuning, evaluation and retrieval.

    Sources (``source``); see docs/data.md for each layout:

    - ``"synthetic"``: generated motion-defined, scene-biased videos (``data.synthetic``),
      written once to ``cache_dir``; extra splits ``balanced_train``, ``balanced_test``,
      ``swapped_test`` and ``*_static``.
    - ``"folder"``: ``<root>/<class>/<video>``; ``test_root`` a second such tree.
    - ``"ucf101"`` / ``"hmdb51"``: official split files in ``annotations`` (default: the
      official folder name inside ``root``), ``split`` 1-3.
    - ``"kinetics_csv"``: ``annotations`` = CSV (or directory of CSVs) with
      ``label,youtube_id,time_start,time_end,split``.
    - ``"list"``: ``annotations`` = ``relative/path label`` list (train), plus
      ``val_annotations`` / ``test_annotations``.

    Batches (before the device transform) follow docs/architecture.md: uint8 ``video``
    (B, C, T, H, W) (multi-view (B, V, C, T, H, W)), ``video_shift`` (pretraining),
    int64 ``label`` and ``index``. After ``on_after_batch_transfer``: float
    ``anchor``/``positive``/``negative`` (pretraining) or normalised ``video``.

    Args:
        source: Layout, one of ``SOURCES``.
        root: Directory holding the videos (all sources but synthetic).
        annotations: Split directory (UCF101/HMDB51), CSV file or directory (kinetics_csv),
            train list file (list).
        split: Official split 1, 2 or 3 (UCF101, HMDB51).
        test_root: Folder-per-class directory used as the test split (any source).
        val_annotations: Validation list / CSV file (list, kinetics_csv).
        test_annotations: Test list / CSV file (list, kinetics_csv).
        val_split: Fraction of training videos held out as validation (per class, seeded,
            at least one per class with two or more videos);
            0 uses the source's own validation split if any (synthetic, kinetics, list).
        task: ``"pretrain"`` (clip pairs), ``"classify"`` (labelled clips) or
            ``"retrieval"`` (test loaders = [gallery = train, queries = test]).
        num_frames: Frames per clip T.
        stride: Step between sampled frames.
        frame_size: Worker output H = W: short-side resize then square crop (random position
            for training, centre for evaluation).
        crop_size: Device crop S of the default ``TripletBuilder`` (<= ``frame_size``).
        min_gap: Minimum start difference of the temporal-shift clip, in frames.
        n_clips: Temporal windows per video for evaluation (test / predict / retrieval).
        n_crops: Spatial crops per window in evaluation (``eval_transform``): 1, 3 or 5.
        batch_size: Batch size of every loader.
        eval_batch_size: Batch size of evaluation loaders (None = ``batch_size``).
        num_workers: Decoding worker processes per loader.
        pin_memory: Pin host memory (useful on GPUs).
        persistent_workers: Keep workers between epochs (needs ``num_workers > 0``).
        prefetch_factor: Batches prefetched per worker (``num_workers > 0``).
        drop_last: Drop the last incomplete training batch (keeps gathered shapes equal).
        seed: Seed of clip sampling, crops, shuffling, validation hold-out and synthetic data.
        short_video: Videos shorter than the clip span: ``"loop"`` (wrap) or ``"pad"``
            (repeat the last frame).
        on_error: Bad input: ``"skip"`` (warn, count, replace) or ``"raise"``.
        cache_dir: Synthetic data directory (None = ``~/.cache/dsm_lightning/synthetic-<hash>``).
        synthetic_classes: Synthetic motion classes (and scenes), 1-12.
        synthetic_videos: Synthetic train (and balanced_train) videos per class.
        synthetic_eval_videos: Synthetic videos per class in each test split.
        synthetic_frames: Frames per synthetic video.
        synthetic_size: Synthetic frame size in pixels.
        bias: Fraction of each class on its own scene in the synthetic train/val/test splits.
        synthetic_sprites: Sprites per synthetic video (all share the class motion).
        augment: Device-side ``TripletBuilder``; None builds ``TripletBuilder(crop_size)``.

    Raises:
        ValueError: An argument is invalid (message names it).
    """

    def __init__(
        self,
        source: str = "synthetic",
        root: str | None = None,
        annotations: str | None = None,
        split: int = 1,
        test_root: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        val_split: float = 0.0,
        task: str = "pretrain",
        num_frames: int = 16,
        stride: int = 4,
        frame_size: int = 128,
        crop_size: int = 112,
        min_gap: int = 2,
        n_clips: int = 10,
        n_crops: int = 1,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int = 2,
        drop_last: bool = True,
        seed: int = 0,
        short_video: str = "loop",
        on_error: str = "skip",
        cache_dir: str | None = None,
        synthetic_classes: int = 8,
        synthetic_videos: int = 48,
        synthetic_eval_videos: int = 16,
        synthetic_frames: int = 48,
        synthetic_size: int = 64,
        bias: float = 0.9,
        synthetic_sprites: int = 3,
        augment: TripletBuilder | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["augment"])
        check_choice("source", source, SOURCES)
        check_choice("task", task, TASKS)
        check_choice("short_video", short_video, SHORT_VIDEO_POLICIES)
        check_choice("on_error", on_error, ON_ERROR)
        for name, value in (("num_frames", num_frames), ("stride", stride),
                            ("frame_size", frame_size), ("crop_size", crop_size),
                            ("min_gap", min_gap), ("n_clips", n_clips), ("n_crops", n_crops),
                            ("batch_size", batch_size), ("prefetch_factor", prefetch_factor)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if n_crops not in (1, 3, 5):
            raise ValueError(f"n_crops must be 1, 3 or 5, got n_crops={n_crops}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if split not in (1, 2, 3):
            raise ValueError(f"split must be 1, 2 or 3, got split={split!r}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got val_split={val_split}")
        if source != "synthetic" and root is None:
            raise ValueError(f"source={source!r} needs root (the video directory)")
        if source in ("kinetics_csv", "list") and annotations is None:
            raise ValueError(f"source={source!r} needs annotations (the CSV / list file)")
        self.augment = augment if augment is not None else TripletBuilder(crop_size=crop_size)
        if self.augment.crop_size > frame_size:
            raise ValueError(
                f"crop_size={self.augment.crop_size} exceeds frame_size={frame_size}"
            )
        self.synthetic_settings = synthetic.synthetic_settings(
            synthetic_classes, synthetic_videos, synthetic_eval_videos, synthetic_frames,
            synthetic_size, bias, seed, synthetic_sprites,
        )
        self.cache_dir = cache_dir or synthetic.default_cache_dir(self.synthetic_settings)
        self._source: SourceSplits | None = None
        self._datasets: dict[tuple, VideoDataset] = {}
        self.skipped_at_setup: list[SkippedItem] = []

    # -- data preparation -----------------------------------------------------------------

    def prepare_data(self) -> None:
        """Generate the synthetic videos once (rank 0); other sources need nothing."""
        if self.hparams.source == "synthetic":
            synthetic.generate_synthetic(self.cache_dir, self.synthetic_settings)

    def setup(self, stage: str | None = None) -> None:
        """Read the layout, drop missing / unknown entries (or raise), build splits.

        Raises:
            AnnotationError: An annotation file is missing or malformed (names file, line).
            ValueError: ``on_error="raise"`` and an entry was missing or of unknown class.
        """
        if self._source is not None:
            return
        source = self._read_source(generate=True)
        if source.skipped:
            if self.hparams.on_error == "raise":
                listed = "; ".join(f"{s.item} ({s.split}): {s.reason}" for s in source.skipped[:5])
                raise ValueError(
                    f"{len(source.skipped)} bad annotation entries (on_error='raise'): {listed}"
                )
            for item in source.skipped:
                message = f"skipping {item.item} ({item.split}): {item.reason}"
                warnings.warn(message, VideoSkippedWarning, stacklevel=2)
                log.warning(message)
        self.skipped_at_setup = list(source.skipped)
        self._source = source

    def _read_source(self, generate: bool) -> SourceSplits:
        hp = self.hparams
        if hp.source == "synthetic":
            if generate:
                manifest = synthetic.generate_synthetic(self.cache_dir, self.synthetic_settings)
            else:
                manifest = synthetic.read_manifest(self.cache_dir)
                if manifest is None:
                    names = list(synthetic.MOTIONS[: self.synthetic_settings["num_classes"]])
                    return SourceSplits({}, names, [])
            splits = {
                name: [
                    VideoRecord(os.path.join(self.cache_dir, v["path"]), v["label"], v["path"])
                    for v in videos
                ]
                for name, videos in manifest["splits"].items()
            }
            source = SourceSplits(splits, list(manifest["class_names"]), [])
        elif hp.source == "folder":
            source = read_folder(hp.root, None)
        elif hp.source == "ucf101":
            source = read_ucf101(hp.root, hp.annotations, hp.split)
        elif hp.source == "hmdb51":
            source = read_hmdb51(hp.root, hp.annotations, hp.split)
        elif hp.source == "kinetics_csv":
            source = read_kinetics_csv(hp.root, hp.annotations, hp.test_annotations)
        else:
            source = read_list_files(
                hp.root, hp.annotations, hp.val_annotations, hp.test_annotations
            )
        if hp.test_root is not None:
            test, _, skipped = scan_folder(hp.test_root, source.class_names, "test")
            source = SourceSplits({**source.splits, "test": test}, source.class_names,
                                  source.skipped + skipped)
        if hp.val_split > 0:
            train, val = _hold_out(source.splits.get("train", []), hp.val_split, hp.seed)
            source = SourceSplits({**source.splits, "train": train, "val": val},
                                  source.class_names, source.skipped)
        return drop_missing(source)

    def _splits(self) -> SourceSplits:
        if self._source is None:
            self.setup()
        assert self._source is not None
        return self._source

    # -- public properties ----------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """Class names (index = label); reads the annotations on first use."""
        if self._source is not None:
            return list(self._source.class_names)
        return self._read_source(generate=False).class_names

    @property
    def num_classes(self) -> int:
        """Number of classes (available right after construction: the CLI links it)."""
        return len(self.class_names)

    @property
    def split_names(self) -> list[str]:
        """Names of the splits with at least one video."""
        return [name for name, records in self._splits().splits.items() if records]

    def records(self, split: str) -> list[VideoRecord]:
        """Videos of a split.

        Raises:
            ValueError: Unknown or empty split.
        """
        splits = self._splits().splits
        if not splits.get(split):
            raise ValueError(
                f"split {split!r} has no videos for source={self.hparams.source!r}; "
                f"available: {self.split_names}"
                + ("; pass test_root or test_annotations" if split == "test" else "")
            )
        return splits[split]

    @property
    def skipped_videos(self) -> dict[str, list[str]]:
        """Videos skipped so far, per split (setup-time entries and decode failures)."""
        out: dict[str, list[str]] = {}
        for item in self.skipped_at_setup:
            out.setdefault(item.split, []).append(item.item)
        for dataset in self._datasets.values():
            for path in dataset.bad_videos:
                if path not in out.setdefault(dataset.split, []):
                    out[dataset.split].append(path)
        return out

    # -- datasets and loaders -------------------------------------------------------------

    def _common(self, split: str) -> dict[str, Any]:
        hp = self.hparams
        return dict(num_frames=hp.num_frames, stride=hp.stride, frame_size=hp.frame_size,
                    short_video=hp.short_video, seed=hp.seed, on_error=hp.on_error, split=split)

    def dataset(self, kind: str, split: str, n_clips: int = 1, random_clip: bool = False):
        """The (cached) dataset of a split.

        Args:
            kind: ``"pretrain"``, ``"clip"`` or ``"multiview"``.
            split: Split name.
            n_clips: Windows per video (``"multiview"``).
            random_clip: Random clip and crop (``"clip"``).

        Returns:
            A ``VideoDataset``.
        """
        key = (kind, split, n_clips, random_clip)
        if key not in self._datasets:
            records = self.records(split)
            if kind == "pretrain":
                ds = PretrainClipDataset(records, min_gap=self.hparams.min_gap,
                                         **self._common(split))
            elif kind == "clip":
                ds = LabelledClipDataset(records, random_clip=random_clip, **self._common(split))
            elif kind == "multiview":
                ds = MultiViewClipDataset(records, n_clips=n_clips, **self._common(split))
            else:
                raise ValueError(f"kind must be pretrain, clip or multiview, got {kind!r}")
            self._datasets[key] = ds
        return self._datasets[key]

    def _loader(
        self, dataset: VideoDataset, batch_size: int, shuffle: bool, sampled: bool,
        drop_last: bool = False, sharded: bool = False,
    ) -> DataLoader:
        hp = self.hparams
        sampler = None
        if sampled:
            replicas, rank = (distributed.world_size(), distributed.rank()) if sharded else (1, 0)
            sampler = EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle,
                                   seed=hp.seed, drop_last=False)
        workers = hp.num_workers
        return _ReportingDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=hp.pin_memory,
            drop_last=drop_last,
            persistent_workers=hp.persistent_workers and workers > 0,
            prefetch_factor=hp.prefetch_factor if workers > 0 else None,
            worker_init_fn=_worker_init if workers > 0 else None,
        )

    @property
    def _eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def train_dataloader(self) -> DataLoader:
        """Pretraining pairs (``task="pretrain"``) or labelled random clips, shuffled per epoch."""
        hp = self.hparams
        if hp.task == "pretrain":
            dataset = self.dataset("pretrain", "train")
        else:
            dataset = self.dataset("clip", "train", random_clip=True)
        return self._loader(dataset, hp.batch_size, shuffle=True, sampled=True,
                            drop_last=hp.drop_last, sharded=True)

    def val_dataloader(self) -> DataLoader | list:
        """Labelled centre clips of the validation split ([] when there is none)."""
        if not self._splits().splits.get("val"):
            return []
        return self._loader(self.dataset("clip", "val"), self._eval_batch_size, False, False)

    def _multiview_loader(self, split: str) -> DataLoader:
        dataset = self.dataset("multiview", split, n_clips=self.hparams.n_clips)
        return self._loader(dataset, self._eval_batch_size, False, False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Multi-view test split; ``task="retrieval"``: [gallery = train, queries = test]."""
        if self.hparams.task == "retrieval":
            return [self._multiview_loader("train"), self._multiview_loader("test")]
        return self._multiview_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Multi-view test split."""
        return self._multiview_loader("test")

    def clip_dataloader(
        self,
        split: str,
        n_clips: int = 1,
        shuffle: bool = False,
        batch_size: int | None = None,
        random_clip: bool = False,
    ) -> DataLoader:
        """Labelled clips of any named split (kNN monitor, linear probes, demo).

        Every process gets the whole split (no sharding). Synthetic splits include
        ``balanced_train``, ``balanced_test``, ``swapped_test`` and ``*_static``.

        Args:
            split: Split name (``"train"``, ``"val"``, ``"test"``, ...).
            n_clips: 1 gives ``video`` (C, T, H, W) per item; more gives (V, C, T, H, W).
            shuffle: Shuffle (seeded per epoch).
            batch_size: Batch size (None = evaluation batch size).
            random_clip: Random clip and crop instead of the centre (``n_clips == 1``).

        Returns:
            A ``DataLoader`` of ``video``, ``label``, ``index`` batches.
        """
        if n_clips < 1:
            raise ValueError(f"n_clips must be >= 1, got {n_clips}")
        if n_clips == 1:
            dataset = self.dataset("clip", split, random_clip=random_clip)
        else:
            dataset = self.dataset("multiview", split, n_clips=n_clips)
        return self._loader(dataset, batch_size or self._eval_batch_size, shuffle=shuffle,
                            sampled=shuffle)

    # -- device side ----------------------------------------------------------------------

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """Turn uint8 clips into normalised float clips on the device.

        Training + pretrain: ``video``/``video_shift`` -> ``anchor``/``positive``/``negative``
        via ``augment``; training + classify: ``augment.train_transform``; everything else:
        ``augment.eval_transform`` (multi-view input gets ``n_crops`` crops per window).
        """
        trainer = getattr(self, "trainer", None)
        training = bool(trainer is not None and trainer.training)
        video = batch["video"]
        augment = self.augment.to(video.device)
        batch = dict(batch)
        if training and self.hparams.task == "pretrain":
            batch.pop("video")
            batch.update(augment(video, batch.pop("video_shift", None)))
        elif training:
            batch["video"] = augment.train_transform(video)
        else:
            n_crops = self.hparams.n_crops if video.ndim == 6 else 1
            batch["video"] = augment.eval_transform(video, n_crops=n_crops)
        return batch




def _hold_out(
    records: list[VideoRecord], fraction: float, seed: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split off ``fraction`` of each class (seeded); returns (train, val) in input order."""
    by_class: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        by_class.setdefault(record.label, []).append(i)
    rng = np.random.default_rng([seed, 7])
    held: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        if count > 0:
            held.update(members[j] for j in rng.permutation(len(members))[:count])
    train = [r for i, r in enumerate(records) if i not in held]
    val = [r for i, r in enumerate(records) if i in held]
    return train, val
