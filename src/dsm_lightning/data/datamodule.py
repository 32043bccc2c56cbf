"""``VideoDataModule``: any registered source behind one LightningDataModule.

Workers decode uint8 clips (``datasets``); on the device, ``views(batch, stage)`` turns them
into the model's inputs, the one place this is done: the view builder (``augment``, a
``TripletBuilder`` by default) makes the pretraining views, the ``ClipTransform``
(``transform``) augments fine-tuning clips and crops evaluation clips;
``on_after_batch_transfer`` picks the stage. Every training draw comes from a generator
seeded per batch from (seed, epoch, batch position, rank).

The source says how it is read (``VideoSource.build_dataset`` / ``build_loader``: map-style
files by default, a stream for ``source="shards"``). The training loader counts the batches
it yields and is resumable (``state_dict`` / ``load_state_dict``); this module's own state
carries that position, which Lightning restores before any loader is built, so a run
resumed from a checkpoint is the uninterrupted run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

from dsm_lightning import distributed
from dsm_lightning._checks import check_choice, check_fraction, check_int
from dsm_lightning.data import shards  # noqa: F401 - registers source="shards"
from dsm_lightning.data.datasets import ON_ERROR
from dsm_lightning.data.loaders import (
    LoaderSettings,
    SkipReports,
    TrainingCursor,
    device_generator,
    log_skip_summary,
)
from dsm_lightning.data.reading import SourceReader, resolve_source, source_name
from dsm_lightning.data.sampling import SHORT_VIDEO_POLICIES
from dsm_lightning.data.sources import SkippedItem, VideoRecord, VideoSource
from dsm_lightning.data.video_io import DECODERS
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.triplet import TripletBuilder
from dsm_lightning.disturb.views import ViewBuilder
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD

__all__ = ["DECODERS", "STAGES", "TASKS", "ClipSpec", "VideoDataModule", "device_generator",
           "log_skip_summary"]

TASKS = ("pretrain", "classify", "retrieval")
#: Stages of ``VideoDataModule.views``: pretraining views, labelled training clips, evaluation.
STAGES = ("pretrain", "train", "eval")


class ClipSpec(NamedTuple):
    """What an encoder file records about its input (``VideoDataModule.clip_spec``).

    Attributes:
        num_frames: Frames per clip T.
        crop_size: Side S of the square model input, in pixels.
        mean: Normalisation mean per RGB channel (inputs in [0, 1]).
        std: Normalisation std per RGB channel.
        n_clips: Temporal windows per evaluation video.
        n_crops: Spatial crops per evaluation window.
    """

    num_frames: int | None = None
    crop_size: int | None = None
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    n_clips: int = 1
    n_crops: int = 1


def clip_spec_of(datamodule: object) -> ClipSpec:
    """``datamodule.clip_spec``, or the defaults (unknown clip size, the default
    normalisation) for a data module that has none, or no data module at all."""
    spec = getattr(datamodule, "clip_spec", None)
    return spec if isinstance(spec, ClipSpec) else ClipSpec()


def _training_epoch(datamodule: pl.LightningDataModule) -> int | None:
    """The current epoch of ``datamodule``'s trainer while it trains, else None."""
    trainer = datamodule.trainer
    if not getattr(trainer, "training", False):
        return None
    return int(getattr(trainer, "current_epoch", 0) or 0)


def _check_settings(hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first invalid ``VideoDataModule`` argument."""
    check_choice("task", hp["task"], TASKS)
    check_choice("short_video", hp["short_video"], SHORT_VIDEO_POLICIES)
    check_choice("on_error", hp["on_error"], ON_ERROR)
    check_choice("decoder", hp["decoder"], DECODERS)
    for name in ("num_frames", "stride", "frame_size", "crop_size", "min_gap", "n_clips",
                 "n_crops", "batch_size", "prefetch_factor"):
        check_int(name, hp[name])
    if hp["num_frames"] < 2:
        raise ValueError(f"num_frames must be >= 2 (a clip needs two frames to hold motion), "
                         f"got num_frames={hp['num_frames']}")
    check_choice("n_crops", hp["n_crops"], (1, 3, 5))
    if hp["eval_batch_size"] is not None:
        check_int("eval_batch_size", hp["eval_batch_size"])
    check_int("num_workers", hp["num_workers"], minimum=0)
    if check_fraction("val_split", hp["val_split"]) == 1.0:
        raise ValueError("val_split must be < 1 (training videos must remain), got val_split=1.0")
    if hp["crop_size"] > hp["frame_size"]:
        raise ValueError(f"crop_size={hp['crop_size']} exceeds frame_size={hp['frame_size']}")


class VideoDataModule(pl.LightningDataModule):
    """Video clips for DSM pretraining, fine-tuning, evaluation and retrieval.

    ``source`` is a registered name (``list_sources()``: synthetic, folder, ucf101, hmdb51,
    kinetics_csv, list, ssv2, diving48, shards, and the user's) or a ``VideoSource`` (YAML:
    ``source: {class_path: SyntheticSource, init_args: {...}}``); the source says how it is
    read (docs/data.md, docs/scale.md). The location arguments go to a named source's
    constructor (one it does not accept is an error). Batches follow docs/architecture.md;
    ``views(batch, stage)`` turns them into the model's inputs, ``clip_spec`` is what an
    encoder file records, and ``state_dict`` is the training loader's position (exact
    resume, docs/data.md). ``crop_size`` is written here only; ``transform`` (simple
    augmentation, normalisation) serves every stage, ``augment`` the pretraining views.

    Args:
        source: Registered source name or a ``VideoSource``.
        root: Directory holding the videos (file sources).
        annotations: Split directory (UCF101/HMDB51), CSV file / directory (kinetics_csv),
            train list file (list).
        split: Official split 1, 2 or 3 (UCF101, HMDB51); None = the source's default (1).
        test_root: Folder-per-class directory used as the test split (file sources).
        val_annotations: Validation list file (list).
        test_annotations: Test list / CSV file (list, kinetics_csv).
        cache_dir: Directory of the generated videos (synthetic); local cache of chunks
            streamed from an object store (shards).
        val_split: Fraction of training videos held out as validation (per class, seeded,
            at least one per class with two or more videos); 0 uses the source's own, if any.
            Must be 0 with a source whose ``fixed_splits`` (shards: hold out when packing).
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
        root: str | None = None, annotations: str | None = None, split: int | None = None,
        test_root: str | None = None, val_annotations: str | None = None,
        test_annotations: str | None = None, cache_dir: str | None = None,
        val_split: float = 0.0, task: str = "pretrain",
        num_frames: int = 16, stride: int = 4, frame_size: int = 128, crop_size: int = 112,
        min_gap: int = 2, n_clips: int = 10, n_crops: int = 1,
        batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 2,
        pin_memory: bool = False, persistent_workers: bool = False, prefetch_factor: int = 2,
        drop_last: bool = True, seed: int = 0,
        short_video: str = "loop", on_error: str = "skip", decoder: str = "pyav",
        transform: ClipTransform | None = None, augment: ViewBuilder | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source", "transform", "augment"])
        _check_settings(self.hparams)
        self.source = resolve_source(
            source, seed, root=root, annotations=annotations, split=split, test_root=test_root,
            val_annotations=val_annotations, test_annotations=test_annotations,
            cache_dir=cache_dir)
        self.hparams["source"] = source_name(source)
        self.reader = SourceReader(
            self.source, self.hparams["source"], val_split, on_error, num_frames=num_frames,
            stride=stride, frame_size=frame_size, short_video=short_video, seed=seed,
            decoder=decoder, min_gap=min_gap)
        self.transform = transform if transform is not None else ClipTransform()
        self.augment = augment if augment is not None else TripletBuilder()
        self.reports = SkipReports(functools.partial(getattr, self, "trainer"))
        self.cursor = TrainingCursor(seed)

    def prepare_data(self) -> None:
        """Let the source create its files once (synthetic: generate the videos)."""
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Read the source once (``reading.read_splits``); ``stage="fit"`` also checks that
        ``batch_size`` fits the training split.

        Raises:
            AnnotationError: An annotation file is missing or malformed (names file, line).
            ValueError: ``on_error="raise"`` and an entry was missing or of unknown class;
                ``batch_size`` exceeds the per-process training split with ``drop_last``.
        """
        self.reader.splits()
        if stage == "fit":
            self._check_batch_fits()

    def teardown(self, stage: str | None = None) -> None:
        """Report the skipped / left-out videos not reported yet (each loader's last pass)."""
        self.reports.close(self.reader.datasets.values())

    def _check_batch_fits(self) -> None:
        world = getattr(self.trainer, "world_size", 0) or distributed.world_size()
        self.reader.batch_fits(self.hparams.batch_size, int(world), self.hparams.drop_last)

    @property
    def class_names(self) -> list[str]:
        """Class names (index = label); asks the source on first use."""
        return self.reader.class_names()

    @property
    def num_classes(self) -> int:
        """Number of classes (available right after construction: the CLI links it)."""
        return len(self.class_names)

    @property
    def split_names(self) -> list[str]:
        """Names of the splits with at least one video."""
        return self.reader.split_names()

    def records(self, split: str) -> list[VideoRecord]:
        """Videos of a split (``ValueError`` for an unknown or empty one)."""
        return self.reader.records(split)

    @property
    def skipped_at_setup(self) -> list[SkippedItem]:
        """Entries dropped when the source was read (missing files, unknown classes)."""
        return self.reader.skipped_at_setup()

    @property
    def skipped_videos(self) -> dict[str, list[str]]:
        """Videos skipped so far, per split (setup-time entries and decode failures)."""
        return self.reader.skipped()

    def dataset(self, kind: str, split: str, n_clips: int = 1, random_clip: bool = False,
                evaluation: bool = False) -> Any:
        """The (cached) dataset of a split, built by the source: ``kind`` is ``"pretrain"``,
        ``"clip"`` or ``"multiview"`` (see ``reading.SourceReader.dataset``)."""
        return self.reader.dataset(kind, split, n_clips, random_clip, evaluation)

    def _loader(self, dataset: Any, batch_size: int | None = None, shuffle: bool = False,
                training: bool = False) -> DataLoader:
        hp = self.hparams
        settings = LoaderSettings(
            batch_size=batch_size or hp.eval_batch_size or hp.batch_size, training=training,
            shuffle=shuffle or training, seed=hp.seed, num_workers=hp.num_workers,
            pin_memory=hp.pin_memory, persistent_workers=hp.persistent_workers,
            prefetch_factor=hp.prefetch_factor, drop_last=hp.drop_last,
            report=self.reports.reporter(training),
            epoch=functools.partial(_training_epoch, self) if training else None)
        return self.reports.track(self.source.build_loader(dataset, settings))

    def train_dataloader(self) -> DataLoader:
        """Pretraining pairs (``task="pretrain"``) or labelled random clips, shuffled per
        epoch; resumable (it starts at a position given to ``load_state_dict``).

        Raises:
            ValueError: ``batch_size`` exceeds the per-process training split with
                ``drop_last=True``.
        """
        if self.hparams.task == "pretrain":
            dataset = self.dataset("pretrain", "train")
        else:
            dataset = self.dataset("clip", "train", random_clip=True)
        self._check_batch_fits()
        return self.cursor.attach(self._loader(dataset, self.hparams.batch_size, training=True))

    @property
    def val_dataloader(self) -> Callable[[], DataLoader | list] | None:  # type: ignore[override]
        """The validation loader factory (labelled centre clips of the validation split, []
        when there is none); None while pretraining a model without ``validation_step``:
        Lightning then skips the validation loop (no warning, no decoding for nothing)."""
        module = getattr(self.trainer, "lightning_module", None)
        if self.hparams.task == "pretrain" and module is not None and not is_overridden(
            "validation_step", module
        ):
            return None
        return self._val_dataloader

    def _val_dataloader(self) -> DataLoader | list:
        if not self.reader.splits().splits.get("val"):
            return []
        return self._loader(self.dataset("clip", "val", evaluation=True))

    def _multiview_loader(self, split: str) -> DataLoader:
        return self._loader(self.dataset("multiview", split, n_clips=self.hparams.n_clips,
                                         evaluation=True))

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Multi-view test split; ``task="retrieval"``: [gallery = train, queries = test]."""
        if self.hparams.task == "retrieval":
            return [self._multiview_loader("train"), self._multiview_loader("test")]
        return self._multiview_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Multi-view test split."""
        return self._multiview_loader("test")

    def clip_dataloader(self, split: str, n_clips: int = 1, shuffle: bool = False,
                        batch_size: int | None = None, random_clip: bool = False) -> DataLoader:
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
        check_int("n_clips", n_clips)
        if n_clips == 1:
            dataset = self.dataset("clip", split, random_clip=random_clip, evaluation=True)
        else:
            dataset = self.dataset("multiview", split, n_clips=n_clips, evaluation=True)
        return self._loader(dataset, batch_size, shuffle=shuffle)

    def state_dict(self) -> dict[str, Any]:
        """``{"train_loader": {"epoch", "batches"}}``: the training loader's position
        (Lightning saves it in checkpoints; see docs/data.md)."""
        return self.cursor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training loader at a saved position (Lightning calls this before any
        loader is built, also when ``estimated_stepping_batches`` builds one early)."""
        self.cursor.load_state_dict(state_dict)

    @property
    def clip_spec(self) -> ClipSpec:
        """What an encoder file records about the model's input (docs/architecture.md)."""
        hp, transform = self.hparams, self.transform
        return ClipSpec(hp.num_frames, hp.crop_size,
                        tuple(float(v) for v in transform.mean),
                        tuple(float(v) for v in transform.std), hp.n_clips, hp.n_crops)

    def views(self, batch: Mapping[str, Any], stage: str,
              generator: torch.Generator | None = None) -> dict[str, Any]:
        """The model's inputs for ``stage`` from a uint8 batch (the one place they are made).

        ``"pretrain"``: ``video``, ``video_shift`` -> the view builder's float ``anchor``,
        ``positive`` [, ``negative``] (B, C, T, S, S); ``"train"``: ``transform.train`` of
        ``video``; ``"eval"``: ``transform.eval`` (deterministic; (B, V, C, T, H, W) input
        gets ``n_crops`` crops per window: (B, V * n_crops, C, T, S, S)).

        Args:
            batch: ``video`` uint8 (B, C, T, H, W) or (B, V, C, T, H, W), ``video_shift``
                for ``"pretrain"``; other keys are passed on (docs/architecture.md).
            stage: ``"pretrain"``, ``"train"`` or ``"eval"``.
            generator: Source of the training stages' draws; None: ``device_generator(seed,
                epoch, batch position, rank)`` of the batch the training loader yielded last.

        Returns:
            A new dict with the inputs of ``stage`` (``ValueError`` for an unknown one).
        """
        check_choice("stage", stage, STAGES)
        video, batch, size = batch["video"], dict(batch), self.hparams.crop_size
        if stage == "eval":
            n_crops = self.hparams.n_crops if video.ndim == 6 else 1
            batch["video"] = self.transform.eval(video, size, n_crops=n_crops)
            return batch
        g = generator if generator is not None else self.cursor.generator(self.trainer)
        if stage == "pretrain":
            batch.pop("video")
            batch.update(self.augment(video, batch.pop("video_shift", None),
                                      transform=self.transform, size=size, generator=g))
        else:
            batch["video"] = self.transform.train(video, size, generator=g)
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        """``views`` of the batch's stage: while the trainer trains, ``"pretrain"``
        (``task="pretrain"``) or ``"train"``; otherwise ``"eval"``."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            return self.views(batch, "pretrain" if self.hparams.task == "pretrain" else "train")
        return self.views(batch, "eval")
