"""``VideoDataModule``: any registered source behind one LightningDataModule.

Workers decode uint8 clips (``datasets``); on the device, ``on_after_batch_transfer`` turns
them into normalised clips: the view builder (``augment``, a ``TripletBuilder`` by default)
makes the pretraining views, the ``ClipTransform`` (``transform``) augments fine-tuning clips
and crops evaluation clips. Every device-side draw comes from a generator seeded per batch
from (seed, epoch, batch, rank), and the training loader restarts a resumed epoch at the
batch it stopped at, so a run resumed from a checkpoint is the uninterrupted run.

A ``StreamingSource`` (``source="shards"``: videos packed by ``dsm prepare``) builds its own
datasets and loaders through ``build_dataset`` / ``build_loader``; the tasks, the per-item
randomness and the device side stay the same.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

from dsm_lightning import distributed
from dsm_lightning._checks import check_choice
from dsm_lightning.data import shards  # noqa: F401 - registers source="shards"
from dsm_lightning.data.datasets import (
    ON_ERROR,
    EpochSampler,
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoDataset,
    VideoSkippedWarning,
)
from dsm_lightning.data.loaders import (
    LoaderSettings,
    ResumableSampler,
    StreamingSource,
    TrainLoader,
    VideoLoader,
    device_generator,
    log_skip_summary,
)
from dsm_lightning.data.sampling import SHORT_VIDEO_POLICIES
from dsm_lightning.data.sources import (
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
)
from dsm_lightning.data.video_io import DECODERS
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.triplet import TripletBuilder
from dsm_lightning.disturb.views import ViewBuilder

__all__ = ["DECODERS", "TASKS", "VideoDataModule", "device_generator", "log_skip_summary"]

log = logging.getLogger(__name__)

TASKS = ("pretrain", "classify", "retrieval")
#: Location arguments forwarded to a named source (those it accepts).
LOCATION_ARGS = ("root", "annotations", "split", "test_root", "val_annotations",
                 "test_annotations", "cache_dir")


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


class VideoDataModule(pl.LightningDataModule):
    """Video clips for DSM pretraining, fine-tuning, evaluation and retrieval.

    ``source`` is a registered name (``dsm_lightning.data.sources.list_sources()``: synthetic,
    folder, ucf101, hmdb51, kinetics_csv, list, shards, and any registered by the user) or a
    ``VideoSource`` instance; see docs/data.md for each layout and docs/scale.md for shards
    (a ``StreamingSource`` builds its own datasets and loaders). The location arguments
    (``root``, ``annotations``, ``split``, ``test_root``, ``val_annotations``,
    ``test_annotations``, ``cache_dir``) are handed to a named source's constructor; an
    argument it does not accept is an error. ``source="synthetic"`` uses the default
    ``SyntheticSource``; its settings are set with
    ``source=SyntheticSource(num_classes=..., ...)`` (YAML: ``source: {class_path:
    SyntheticSource, init_args: {...}}``).

    Batches (before the device transform) follow docs/architecture.md: uint8 ``video``
    (B, C, T, H, W) (multi-view (B, V, C, T, H, W)), ``video_shift`` (pretraining),
    int64 ``label`` and ``index``. After ``on_after_batch_transfer``: float
    ``anchor``/``positive``/``negative`` (pretraining) or normalised ``video``.

    The device-side settings are written once: ``crop_size`` here, the simple augmentation
    and normalisation in ``transform`` (shared by pretraining, fine-tuning and evaluation),
    the disturbances in ``augment``.

    Args:
        source: Registered source name or a ``VideoSource``.
        root: Directory holding the videos (file sources).
        annotations: Split directory (UCF101/HMDB51), CSV file or directory (kinetics_csv),
            train list file (list).
        split: Official split 1, 2 or 3 (UCF101, HMDB51); None = the source's default (1).
        test_root: Folder-per-class directory used as the test split (file sources).
        val_annotations: Validation list file (list).
        test_annotations: Test list / CSV file (list, kinetics_csv).
        cache_dir: Directory of the generated videos (synthetic); local cache of chunks
            streamed from an object store (shards).
        val_split: Fraction of training videos held out as validation (per class, seeded,
            at least one per class with two or more videos);
            0 uses the source's own validation split if any (synthetic, kinetics, list,
            shards). Must be 0 with a ``StreamingSource`` (hold out when packing).
        task: ``"pretrain"`` (clip pairs), ``"classify"`` (labelled clips) or
            ``"retrieval"`` (test loaders = [gallery = train, queries = test]).
        num_frames: Frames per clip T (>= 2: a clip needs two frames to hold motion).
        stride: Step between sampled frames.
        frame_size: Worker output H = W: short-side resize then square crop (random position
            for training, centre for evaluation).
        crop_size: Device crop S (<= ``frame_size``), handed to ``transform``.
        min_gap: Minimum start difference of the temporal-shift clip, in frames.
        n_clips: Temporal windows per video for evaluation (test / predict / retrieval).
        n_crops: Spatial crops per window in evaluation (``transform.eval``): 1, 3 or 5.
        batch_size: Batch size of every loader (per process).
        eval_batch_size: Batch size of evaluation loaders (None = ``batch_size``).
        num_workers: Decoding worker processes per loader.
        pin_memory: Pin host memory (useful on GPUs).
        persistent_workers: Keep workers between epochs (needs ``num_workers > 0``).
        prefetch_factor: Batches prefetched per worker (``num_workers > 0``).
        drop_last: Drop the last incomplete training batch (keeps gathered shapes equal).
        seed: Seed of clip sampling, crops, shuffling, validation hold-out, device-side draws
            and of a source built without its own seed (synthetic).
        short_video: Videos shorter than the clip span: ``"loop"`` (wrap) or ``"pad"``
            (repeat the last frame).
        on_error: Bad input: ``"skip"`` (warn, count; training replaces the video, evaluation
            leaves it out) or ``"raise"``.
        decoder: Decoding backend of the workers, ``"pyav"`` or ``"torchcodec"``.
        transform: Simple augmentation, evaluation crops and normalisation, shared by every
            stage; None builds ``ClipTransform()``. Its output side is ``crop_size``.
        augment: Pretraining view builder (``ViewBuilder``); None builds a ``TripletBuilder``
            (DSM's default disturbances). It is called with ``transform`` and ``crop_size``.

    Raises:
        ValueError: An argument is invalid (message names it).
    """

    def __init__(
        self,
        source: str | VideoSource = "synthetic",
        root: str | None = None,
        annotations: str | None = None,
        split: int | None = None,
        test_root: str | None = None,
        val_annotations: str | None = None,
        test_annotations: str | None = None,
        cache_dir: str | None = None,
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
        decoder: str = "pyav",
        transform: ClipTransform | None = None,
        augment: ViewBuilder | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source", "transform", "augment"])
        check_choice("task", task, TASKS)
        check_choice("short_video", short_video, SHORT_VIDEO_POLICIES)
        check_choice("on_error", on_error, ON_ERROR)
        check_choice("decoder", decoder, DECODERS)
        for name, value in (("num_frames", num_frames), ("stride", stride),
                            ("frame_size", frame_size), ("crop_size", crop_size),
                            ("min_gap", min_gap), ("n_clips", n_clips), ("n_crops", n_crops),
                            ("batch_size", batch_size), ("prefetch_factor", prefetch_factor)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if num_frames < 2:
            raise ValueError(
                f"num_frames must be >= 2 (a clip needs two frames to hold motion), "
                f"got num_frames={num_frames}"
            )
        if n_crops not in (1, 3, 5):
            raise ValueError(f"n_crops must be 1, 3 or 5, got n_crops={n_crops}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= val_split < 1.0:
            raise ValueError(f"val_split must be in [0, 1), got val_split={val_split}")
        self.source = self._build_source(
            source, dict(root=root, annotations=annotations, split=split, test_root=test_root,
                         val_annotations=val_annotations, test_annotations=test_annotations,
                         cache_dir=cache_dir))
        self.source.adopt_seed(seed)
        if isinstance(self.source, StreamingSource) and val_split > 0:
            raise ValueError(
                f"val_split={val_split} with source {type(self.source).__name__}: a streamed "
                "source's splits are fixed when it is packed; hold out the validation videos "
                "then (dsm prepare --data.val_split ...) and use val_split=0 here"
            )
        self.hparams["source"] = (
            source if isinstance(source, str) else (source.name or type(source).__name__)
        )
        if crop_size > frame_size:
            raise ValueError(f"crop_size={crop_size} exceeds frame_size={frame_size}")
        self.transform = transform if transform is not None else ClipTransform()
        self.augment = augment if augment is not None else TripletBuilder()
        self._source: SourceSplits | None = None
        self._datasets: dict[tuple, VideoDataset] = {}
        self._loaders: weakref.WeakSet[VideoLoader] = weakref.WeakSet()
        self._loose_batches = 0  # device batches seen outside a Lightning fit loop
        self.skipped_at_setup: list[SkippedItem] = []

    @staticmethod
    def _build_source(source: str | VideoSource, location: dict[str, Any]) -> VideoSource:
        given = [name for name in LOCATION_ARGS if location[name] is not None]
        if isinstance(source, VideoSource):
            if given:
                raise ValueError(
                    f"{', '.join(given)} given with a VideoSource instance: pass them to the "
                    f"source's constructor ({type(source).__name__}) instead"
                )
            return source
        if not isinstance(source, str):
            raise ValueError(f"source must be a registered name or a VideoSource, got {source!r}")
        return create_source(source, **location)

    # -- data preparation -----------------------------------------------------------------

    def prepare_data(self) -> None:
        """Let the source create its files once (synthetic: generate the videos)."""
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Read the source, drop missing / unknown entries (or raise), build splits.

        With ``stage="fit"`` also checks that ``batch_size`` fits the training split.

        Raises:
            AnnotationError: An annotation file is missing or malformed (names file, line).
            ValueError: ``on_error="raise"`` and an entry was missing or of unknown class;
                ``batch_size`` larger than the per-process training split with
                ``drop_last=True``.
        """
        if self._source is None:
            source = self._read_source()
            if source.skipped:
                if self.hparams.on_error == "raise":
                    listed = "; ".join(f"{s.item} ({s.split}): {s.reason}"
                                       for s in source.skipped[:5])
                    raise ValueError(f"{len(source.skipped)} bad annotation entries "
                                     f"(on_error='raise'): {listed}")
                for item in source.skipped:
                    message = f"skipping {item.item} ({item.split}): {item.reason}"
                    warnings.warn(message, VideoSkippedWarning, stacklevel=2)
            self.skipped_at_setup = list(source.skipped)
            self._source = source
        if stage == "fit":
            self._check_batch_fits()

    def teardown(self, stage: str | None = None) -> None:
        """Report the skipped / left-out videos not reported yet (the last pass of each loader)."""
        for loader in list(self._loaders):
            loader.report()
        for dataset in self._datasets.values():
            self._report_skips(dataset, None, training=False)

    def _read_source(self) -> SourceSplits:
        hp = self.hparams
        source = self.source.read()
        if hp.val_split > 0:
            train, val = _hold_out(source.splits.get("train", []), hp.val_split, hp.seed)
            source = SourceSplits({**source.splits, "train": train, "val": val},
                                  source.class_names, source.skipped)
        if isinstance(self.source, StreamingSource):
            return source  # records are not files
        return drop_missing(source)

    def _splits(self) -> SourceSplits:
        if self._source is None:
            self.setup()
        assert self._source is not None
        return self._source

    def _world_size(self) -> int:
        trainer = self.trainer
        return int(getattr(trainer, "world_size", 0) or distributed.world_size())

    def _check_batch_fits(self) -> None:
        hp = self.hparams
        count = len(self._splits().splits.get("train", []))
        if not hp.drop_last or count == 0:
            return
        world = self._world_size()
        per_process = math.ceil(count / world)
        if hp.batch_size > per_process:
            raise ValueError(
                f"batch_size={hp.batch_size} exceeds the {per_process} training videos per "
                f"process ({count} videos, {world} process(es)): with drop_last=True not one "
                "batch would be trained; lower batch_size or set drop_last=False"
            )

    # -- public properties ----------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """Class names (index = label); asks the source on first use."""
        if self._source is not None:
            return list(self._source.class_names)
        return self.source.class_names()

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

    def _common(self, split: str, evaluation: bool) -> dict[str, Any]:
        hp = self.hparams
        kwargs = dict(num_frames=hp.num_frames, stride=hp.stride, frame_size=hp.frame_size,
                      short_video=hp.short_video, seed=hp.seed, on_error=hp.on_error,
                      split=split, decoder=hp.decoder, substitute_bad=not evaluation)
        return kwargs

    def dataset(self, kind: str, split: str, n_clips: int = 1, random_clip: bool = False,
                evaluation: bool = False) -> VideoDataset:
        """The (cached) dataset of a split.

        Args:
            kind: ``"pretrain"``, ``"clip"`` or ``"multiview"``.
            split: Split name.
            n_clips: Windows per video (``"multiview"``).
            random_clip: Random clip and crop (``"clip"``).
            evaluation: Leave bad videos out instead of replacing them.

        Returns:
            A ``VideoDataset``.
        """
        key = (kind, split, n_clips, random_clip, evaluation)
        if key not in self._datasets:
            classes = {"pretrain": PretrainClipDataset, "clip": LabelledClipDataset,
                       "multiview": MultiViewClipDataset}
            if kind not in classes:
                raise ValueError(f"kind must be pretrain, clip or multiview, got {kind!r}")
            records = self.records(split)
            kwargs = self._common(split, evaluation)
            kwargs.update({"pretrain": {"min_gap": self.hparams.min_gap},
                           "clip": {"random_clip": random_clip},
                           "multiview": {"n_clips": n_clips}}[kind])
            ds = None
            if isinstance(self.source, StreamingSource):
                ds = self.source.build_dataset(kind, records, evaluation, **kwargs)
            self._datasets[key] = ds if ds is not None else classes[kind](records, **kwargs)
        return self._datasets[key]

    def _loader(
        self, dataset: VideoDataset, batch_size: int, shuffle: bool, sampled: bool,
        training: bool = False,
    ) -> DataLoader:
        hp = self.hparams
        workers = hp.num_workers
        report = functools.partial(self._report_skips, training=training)
        if isinstance(self.source, StreamingSource):
            settings = LoaderSettings(
                batch_size=batch_size, training=training, shuffle=shuffle or training,
                seed=hp.seed, num_workers=workers, pin_memory=hp.pin_memory,
                persistent_workers=hp.persistent_workers and workers > 0,
                prefetch_factor=hp.prefetch_factor if workers > 0 else None,
                drop_last=hp.drop_last and training,
                worker_init_fn=_worker_init if workers > 0 else None, report=report,
                epoch=self._fit_epoch, position=self._batches_done)
            custom = self.source.build_loader(dataset, settings)
            if custom is not None:
                if isinstance(custom, VideoLoader):
                    self._loaders.add(custom)
                return custom
        sampler, extra = None, {}
        if training:
            sampler = ResumableSampler(dataset, num_replicas=distributed.world_size(),
                                        rank=distributed.rank(), shuffle=True, seed=hp.seed,
                                        drop_last=False)
            cls, extra = TrainLoader, {"position": self._batches_done}
        else:
            if sampled:
                sampler = EpochSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle,
                                       seed=hp.seed, drop_last=False)
            cls = VideoLoader
            extra = {"collate_fn": dataset.collate_fn}
        loader = cls(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=hp.pin_memory,
            drop_last=hp.drop_last and training,
            persistent_workers=hp.persistent_workers and workers > 0,
            prefetch_factor=hp.prefetch_factor if workers > 0 else None,
            worker_init_fn=_worker_init if workers > 0 else None,
            report=report,
            **extra,
        )
        self._loaders.add(loader)
        return loader

    @property
    def _eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def train_dataloader(self) -> DataLoader:
        """Pretraining pairs (``task="pretrain"``) or labelled random clips, shuffled per epoch.

        Raises:
            ValueError: ``batch_size`` exceeds the per-process training split with
                ``drop_last=True``.
        """
        hp = self.hparams
        if hp.task == "pretrain":
            dataset = self.dataset("pretrain", "train")
        else:
            dataset = self.dataset("clip", "train", random_clip=True)
        self._check_batch_fits()
        return self._loader(dataset, hp.batch_size, shuffle=True, sampled=True, training=True)

    @property
    def val_dataloader(self) -> Callable[[], DataLoader | list] | None:  # type: ignore[override]
        """The validation loader factory: ``val_dataloader()`` gives labelled centre clips of
        the validation split ([] when there is none).

        None while pretraining a model without ``validation_step``: Lightning then skips the
        validation loop (no warning, no decoding for nothing).
        """
        trainer = self.trainer
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        if self.hparams.task == "pretrain" and module is not None and not is_overridden(
            "validation_step", module
        ):
            return None
        return self._val_dataloader

    def _val_dataloader(self) -> DataLoader | list:
        if not self._splits().splits.get("val"):
            return []
        dataset = self.dataset("clip", "val", evaluation=True)
        return self._loader(dataset, self._eval_batch_size, False, False)

    def _multiview_loader(self, split: str) -> DataLoader:
        dataset = self.dataset("multiview", split, n_clips=self.hparams.n_clips, evaluation=True)
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

        Every process gets the whole split (no sharding); bad videos are left out (not
        replaced). Synthetic splits include ``balanced_train``, ``balanced_test``,
        ``swapped_test`` and ``*_static``.

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
            dataset = self.dataset("clip", split, random_clip=random_clip, evaluation=True)
        else:
            dataset = self.dataset("multiview", split, n_clips=n_clips, evaluation=True)
        return self._loader(dataset, batch_size or self._eval_batch_size, shuffle=shuffle,
                            sampled=shuffle)

    # -- skip reports ---------------------------------------------------------------------

    def _report_skips(self, dataset: VideoDataset, epoch: int | None, training: bool) -> None:
        """Warn about a pass's skipped videos and log the count (training: every pass)."""
        report = log_skip_summary(dataset, epoch)
        if training:
            metrics = {"data/skipped_videos": float(len(report)),
                       "data/skipped_items": float(sum(report.values()))}
        elif report:
            metrics = {f"data/left_out_videos/{dataset.split}": float(len(report))}
        else:
            return
        trainer = self.trainer
        for logger in getattr(trainer, "loggers", None) or ():
            logger.log_metrics(metrics, step=int(trainer.global_step))

    # -- device side ----------------------------------------------------------------------

    def _batches_done(self) -> int | None:
        """Batches of the current epoch the fitting trainer is past (None when not fitting).

        Lightning's ``batch_progress.current.ready``: during a batch's transfer it is the
        batch's position in the epoch; when a pass starts, the batches already done (0, or the
        restored count after a resume).
        """
        trainer = self.trainer
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if loop is None or not getattr(trainer, "training", False):
            return None
        return int(loop.batch_progress.current.ready)

    def _fit_epoch(self) -> int | None:
        """The trainer's current epoch while fitting, else None."""
        if self._batches_done() is None:
            return None
        return int(self.trainer.current_epoch)

    def _device_generator(self) -> torch.Generator:
        """The generator of the current training batch: (seed, epoch, batch, rank)."""
        trainer = self.trainer
        batch = self._batches_done()  # read before Lightning counts this batch
        if batch is None:
            batch, self._loose_batches = self._loose_batches, self._loose_batches + 1
        epoch = int(getattr(trainer, "current_epoch", 0) or 0)
        rank = getattr(trainer, "global_rank", None)
        rank = distributed.rank() if rank is None else int(rank)
        return device_generator(self.hparams.seed, epoch, batch, rank)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """Turn uint8 clips into normalised float clips on the device.

        Training + pretrain: ``video``/``video_shift`` -> the view builder's ``anchor`` /
        ``positive`` / ``negative``; training + classify: ``transform.train``; everything
        else: ``transform.eval`` (multi-view input gets ``n_crops`` crops per window).
        Training draws come from ``device_generator(seed, epoch, batch, rank)``.
        """
        trainer = self.trainer
        training = bool(trainer is not None and trainer.training)
        video = batch["video"]
        batch = dict(batch)
        size = self.hparams.crop_size
        if training and self.hparams.task == "pretrain":
            batch.pop("video")
            batch.update(self.augment(video, batch.pop("video_shift", None),
                                      transform=self.transform, size=size,
                                      generator=self._device_generator()))
        elif training:
            batch["video"] = self.transform.train(video, size, generator=self._device_generator())
        else:
            n_crops = self.hparams.n_crops if video.ndim == 6 else 1
            batch["video"] = self.transform.eval(video, size, n_crops=n_crops)
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
