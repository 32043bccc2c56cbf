"""Loaders of ``VideoDataModule``: one loader factory, skip reports, resumable passes.

- ``LoaderSettings`` is what the data module asks of a loader; ``loader_kwargs`` turns it
  into the ``DataLoader`` keyword arguments (the one place they are built) and
  ``map_loader`` into the loader of a map-style dataset (a source's default
  ``build_loader``; streamed sources build theirs from the same ``loader_kwargs``).
- ``VideoLoader`` reports the videos skipped in each pass once, also under ``Trainer.fit``
  (which stops after ``len(loader)`` batches, so nothing after a pass's last batch runs);
  ``SkipReports`` collects the reports of one data module.
- ``TrainLoader`` counts the batches of its pass (``PassPosition``) and is resumable through
  ``state_dict`` / ``load_state_dict`` (``{"epoch", "batches"}``): the next pass of that
  epoch starts at the batch the state was saved after.
- ``device_generator`` seeds the device-side draws of one training batch.
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dsm_lightning import distributed
from dsm_lightning.data.datasets import EpochSampler, VideoDataset, VideoSkippedWarning

__all__ = ["LoaderSettings", "PassPosition", "ResumableSampler", "SkipReports", "TrainLoader",
           "TrainingCursor", "VideoLoader", "device_generator", "loader_kwargs",
           "log_skip_summary", "map_loader", "worker_init"]

# Separates the device-side random stream from the workers' (seed, epoch, index) streams.
_DEVICE_STREAM = 0x5EED


def device_generator(seed: int, epoch: int, batch: int, rank: int) -> torch.Generator:
    """CPU generator of one training batch's device-side draws.

    Args:
        seed: The data module's seed.
        epoch: Epoch number.
        batch: Position of the batch in its epoch.
        rank: Global rank of the process.

    Returns:
        A ``torch.Generator`` seeded from ``(seed, epoch, batch, rank)`` (independent streams).
    """
    state = np.random.SeedSequence([seed, epoch, batch, rank, _DEVICE_STREAM]).generate_state(
        2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def log_skip_summary(dataset: VideoDataset, epoch: int | None = None) -> dict[str, int]:
    """Warn once with the videos skipped since the last summary of ``dataset``.

    Training datasets replace a bad video by the next readable one ("skipped"); evaluation
    datasets built with ``substitute_bad=False`` leave it out of the batch ("left out").

    Args:
        dataset: A dataset whose workers may have skipped videos.
        epoch: The epoch the skips happened in (named in the message), or None.

    Returns:
        ``{path: times skipped}`` for this period (empty when nothing was skipped).
    """
    report = dataset.take_skip_report()
    if report:
        listed = ", ".join(f"{os.path.basename(p)} (x{n})" for p, n in sorted(report.items()))
        where = f"split {dataset.split!r}" + (f", epoch {epoch}" if epoch is not None else "")
        if getattr(dataset, "substitute_bad", True):
            message = (f"{where}: {sum(report.values())} item(s) skipped (replaced by readable "
                       f"videos), {len(report)} unreadable video(s): {listed}")
        else:
            message = f"{where}: {len(report)} bad video(s) left out of the metrics: {listed}"
        warnings.warn(message, VideoSkippedWarning, stacklevel=2)
    return report


def worker_init(worker_id: int) -> None:
    """Loader worker start: one intra-op thread per worker (the workers already run in
    parallel)."""
    torch.set_num_threads(1)


class LoaderSettings(NamedTuple):
    """What ``VideoDataModule`` asks of a loader (handed to ``VideoSource.build_loader``).

    Attributes:
        batch_size: Batch size per process.
        training: The training loader (shuffled, split across processes, resumable).
        shuffle: Shuffle (training always does).
        seed: The data module's seed.
        num_workers: Worker processes.
        pin_memory: Pin host memory.
        persistent_workers: Keep workers between passes (only with workers).
        prefetch_factor: Batches prefetched per worker (only with workers).
        drop_last: Drop the last incomplete batch (training only).
        report: ``report(dataset, epoch)`` reports a pass's skipped videos, or None.
        epoch: ``epoch()`` is the trainer's current epoch while it trains, else None (a
            streamed loader has no sampler for Lightning's ``set_epoch``).
        worker_init_fn: Called in each worker.
    """

    batch_size: int
    training: bool
    shuffle: bool
    seed: int
    num_workers: int
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int = 2
    drop_last: bool = False
    report: Callable[[Any, int | None], None] | None = None
    epoch: Callable[[], int | None] | None = None
    worker_init_fn: Callable[[int], None] | None = worker_init


def loader_kwargs(settings: LoaderSettings) -> dict[str, Any]:
    """The ``DataLoader`` keyword arguments of ``settings`` (the one place they are built).

    Returns:
        ``batch_size``, ``num_workers``, ``pin_memory``, ``persistent_workers``,
        ``prefetch_factor``, ``drop_last`` and ``worker_init_fn`` (the worker-only ones off
        without workers; ``drop_last`` only for the training loader).
    """
    workers = settings.num_workers
    return dict(batch_size=settings.batch_size, num_workers=workers,
                pin_memory=settings.pin_memory,
                persistent_workers=settings.persistent_workers and workers > 0,
                prefetch_factor=settings.prefetch_factor if workers > 0 else None,
                drop_last=settings.drop_last and settings.training,
                worker_init_fn=settings.worker_init_fn if workers > 0 else None)


def map_loader(dataset: Dataset, settings: LoaderSettings) -> VideoLoader:
    """The loader of a map-style dataset (``VideoSource.build_loader``'s default).

    Training: a ``TrainLoader`` over a ``ResumableSampler`` split across the processes;
    otherwise a ``VideoLoader`` over the whole split (an ``EpochSampler`` when shuffled),
    collated with the dataset's ``collate_fn`` (bad videos left out).

    Args:
        dataset: A ``VideoDataset``.
        settings: The data module's settings.

    Returns:
        The loader.
    """
    common = dict(loader_kwargs(settings), report=settings.report)
    if settings.training:
        sampler = ResumableSampler(dataset, num_replicas=distributed.world_size(),
                                   rank=distributed.rank(), shuffle=True, seed=settings.seed,
                                   drop_last=False)
        return TrainLoader(dataset, sampler=sampler, **common)
    sampler = EpochSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=settings.seed,
                           drop_last=False) if settings.shuffle else None
    return VideoLoader(dataset, sampler=sampler, collate_fn=dataset.collate_fn, **common)


class ResumableSampler(EpochSampler):
    """``EpochSampler`` whose next pass can start ``skip`` items in (mid-epoch resume)."""

    skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class PassPosition:
    """Where a training loader stands: the epoch of its pass and the batches of it yielded.

    A loader calls ``begin`` when a pass starts (it returns the batches to skip: those of a
    loaded state of the same epoch), ``advance`` before yielding each batch and ``end``
    after the last, so while the consumer holds batch ``k`` (0-based) of the epoch,
    ``batches == k + 1`` and ``current() == (epoch, k)``. Lightning does not prefetch from
    a sized training loader, so a checkpoint saved after batch ``k`` holds ``k + 1``.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.batches = 0
        self._yielding = False
        self._pending: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: the pass's epoch and its batches yielded (or the state
        loaded for the next pass, before it starts)."""
        epoch, batches = self._pending or (self.epoch or 0, self.batches)
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Start the next pass of ``state["epoch"]`` after ``state["batches"]`` batches."""
        self._pending = (int(state["epoch"]), int(state["batches"]))

    def next_epoch(self, length: int | None) -> int | None:
        """The epoch a loaded state resumes (the next one when it ended its epoch), or None."""
        if self._pending is None:
            return None
        epoch, batches = self._pending
        return epoch + 1 if length is not None and batches >= length else epoch

    def begin(self, epoch: int | None, length: int | None) -> tuple[int, int]:
        """Start a pass; returns ``(epoch, batches to skip)``.

        Args:
            epoch: The pass's epoch (the trainer's / sampler's); None: a loaded state's, else
                the one after the last pass (0 first).
            length: Batches per pass (a loaded state of a finished epoch resumes the next).
        """
        resumed, pending, self._pending = self.next_epoch(length), self._pending, None
        if epoch is None:
            epoch = resumed if resumed is not None else (
                0 if self.epoch is None else self.epoch + 1)
        skip = pending[1] if pending is not None and resumed == pending[0] == epoch else 0
        self.epoch, self.batches, self._yielding = epoch, skip, False
        return epoch, skip

    def advance(self) -> None:
        """Count the batch about to be yielded."""
        self.batches += 1
        self._yielding = True

    def end(self) -> None:
        """The pass yielded its last batch."""
        self._yielding = False

    def current(self) -> tuple[int, int] | None:
        """``(epoch, position)`` of the batch last yielded; None outside a pass."""
        if not self._yielding or self.epoch is None:
            return None
        return self.epoch, self.batches - 1


class VideoLoader(DataLoader):
    """A ``DataLoader`` that reports the skipped videos of each pass once.

    Lightning stops after ``len(loader)`` batches, so code after a pass's last batch never
    runs under ``Trainer.fit``: a pass is reported when the next one starts, when it is
    drained (``list(loader)``), or by ``SkipReports.close`` (the data module's teardown).
    """

    def __init__(self, *args: Any, report: Callable[[Any, int | None], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report = report
        self._pass_epoch: int | None = None
        self._unreported = False

    def report(self) -> None:
        """Report the last pass's skips (once; tagged with its epoch)."""
        if self._unreported and self._report is not None and hasattr(self.dataset,
                                                                     "take_skip_report"):
            self._report(self.dataset, self._pass_epoch)
        self._unreported = False

    def __iter__(self):  # type: ignore[override]
        self.report()
        self._pass_epoch = getattr(self.sampler, "epoch", None)
        self._unreported = True
        yield from super().__iter__()
        self.report()


class TrainLoader(VideoLoader):
    """The training loader of map-style datasets: resumable mid-epoch.

    Its pass's epoch is the sampler's (Lightning calls ``set_epoch`` before each epoch);
    it counts the batches it yields (``position``), and ``load_state_dict`` makes the next
    pass of the saved epoch skip the saved number of batches without decoding them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = PassPosition()

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: see ``PassPosition.state_dict``."""
        return self.position.state_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume at ``state`` on the next pass of its epoch (also sets the sampler's epoch,
        which Lightning sets again before the pass)."""
        self.position.load_state_dict(state)
        epoch = self.position.next_epoch(len(self))
        if epoch is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):  # type: ignore[override]
        _, skip = self.position.begin(int(getattr(self.sampler, "epoch", 0)), len(self))
        if isinstance(self.sampler, ResumableSampler):
            self.sampler.skip = skip * self.batch_size  # type: ignore[operator]
        for batch in super().__iter__():
            self.position.advance()
            yield batch
        self.position.end()


class SkipReports:
    """The skipped-video reports of one data module's loaders: per pass and at teardown.

    Args:
        trainer: ``trainer()`` is the running trainer (its loggers get the counts) or None.
    """

    def __init__(self, trainer: Callable[[], Any]) -> None:
        self._trainer = trainer
        self._loaders: weakref.WeakSet[VideoLoader] = weakref.WeakSet()

    def reporter(self, training: bool) -> Callable[[Any, int | None], None]:
        """The ``LoaderSettings.report`` of a training or evaluation loader."""
        return functools.partial(self.report, training=training)

    def track(self, loader: DataLoader) -> DataLoader:
        """Remember a loader whose last pass ``close`` reports; returns it."""
        if isinstance(loader, VideoLoader):
            self._loaders.add(loader)
        return loader

    def report(self, dataset: Any, epoch: int | None, training: bool = False) -> None:
        """Warn about a pass's skipped videos and log the count (training: every pass)."""
        report = log_skip_summary(dataset, epoch)
        if training:
            metrics = {"data/skipped_videos": float(len(report)),
                       "data/skipped_items": float(sum(report.values()))}
        elif report:
            metrics = {f"data/left_out_videos/{dataset.split}": float(len(report))}
        else:
            return
        trainer = self._trainer()
        for logger in getattr(trainer, "loggers", None) or ():
            logger.log_metrics(metrics, step=int(trainer.global_step))

    def close(self, datasets: Iterable[Any]) -> None:
        """Report what is not reported yet: each loader's last pass, then every dataset."""
        for loader in list(self._loaders):
            loader.report()
        for dataset in datasets:
            self.report(dataset, None)


class TrainingCursor:
    """A data module's training loader and where it stands.

    Holds the last training loader built (``attach``), gives its position for checkpoints
    (``state_dict``), hands it a loaded position (``load_state_dict``; kept until the loader
    exists when it comes first, as from Lightning's ``restore_datamodule``), and seeds the
    device draws of the batch being transferred (``generator``).

    Args:
        seed: The data module's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.loader: Any = None
        self._pending: Mapping[str, int] | None = None
        self._loose = 0  # training batches transferred outside a training pass

    def attach(self, loader: DataLoader) -> DataLoader:
        """Follow ``loader`` (the new training loader); it gets a pending position. Returns it."""
        self.loader = loader
        if self._pending is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self._pending)
            self._pending = None
        return loader

    def state_dict(self) -> dict[str, Any]:
        """``{"train_loader": {"epoch", "batches"}}`` (empty without a position)."""
        loader = self.loader
        state = loader.state_dict() if hasattr(loader, "state_dict") else self._pending
        return {"train_loader": dict(state)} if state else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the training loader at ``state["train_loader"]`` (now or once attached)."""
        self._pending = state.get("train_loader") or None
        if self.loader is not None:
            self.attach(self.loader)

    def generator(self, trainer: Any) -> torch.Generator:
        """``device_generator`` of the training batch being transferred.

        Its epoch and position are those of the batch the training loader yielded last
        (``PassPosition.current``); outside a training pass (a batch given by hand), the
        trainer's epoch and a running count. The rank is the trainer's (else the process's).
        """
        position = getattr(self.loader, "position", None)
        place = position.current() if position is not None else None
        if place is None:
            place = (int(getattr(trainer, "current_epoch", 0) or 0), self._loose)
            self._loose += 1
        rank = getattr(trainer, "global_rank", None)
        return device_generator(self.seed, *place,
                                distributed.rank() if rank is None else int(rank))
