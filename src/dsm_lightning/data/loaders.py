"""Training / evaluation loaders of ``VideoDataModule``: skip reports, resumable passes.

- ``VideoLoader`` reports the videos skipped in each pass once, also under ``Trainer.fit``
  (which stops after ``len(loader)`` batches, so nothing after a pass's last batch runs).
- ``TrainLoader`` starts each pass at the batch the trainer has reached (exact resume).
- ``device_generator`` seeds the device-side draws of one training batch.
- ``StreamingSource`` is the hook through which a source builds its own datasets and
  loaders (streamed formats such as ``source="shards"``); ``LoaderSettings`` is what the
  data module hands it.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dsm_lightning.data.datasets import EpochSampler, VideoDataset, VideoSkippedWarning
from dsm_lightning.data.sources import VideoRecord, VideoSource

__all__ = ["LoaderSettings", "ResumableSampler", "StreamingSource", "TrainLoader",
           "VideoLoader", "device_generator", "log_skip_summary"]

log = logging.getLogger(__name__)

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


class LoaderSettings(NamedTuple):
    """What ``VideoDataModule`` asks of a loader (handed to ``StreamingSource.build_loader``).

    Attributes:
        batch_size: Batch size per process.
        training: The training loader (shuffled, split across processes, resumable).
        shuffle: Shuffle (training always does).
        seed: The data module's seed.
        num_workers: Worker processes.
        pin_memory: Pin host memory.
        persistent_workers: Keep workers between passes.
        prefetch_factor: Batches prefetched per worker (None without workers).
        drop_last: Drop the last incomplete batch.
        worker_init_fn: Called in each worker.
        report: ``report(dataset, epoch)`` reports a pass's skipped videos.
        epoch: ``epoch()`` is the trainer's current epoch while fitting, else None.
        position: ``position()`` is the number of batches of the current epoch the trainer
            is past (a resumed epoch starts there), None when not fitting.
    """

    batch_size: int
    training: bool
    shuffle: bool
    seed: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    drop_last: bool
    worker_init_fn: Callable[[int], None] | None
    report: Callable[[Any, int | None], None] | None
    epoch: Callable[[], int | None]
    position: Callable[[], int | None]


class StreamingSource(VideoSource):
    """A source that builds its own datasets and loaders (the hook of streamed formats).

    ``VideoDataModule`` reads its records like any source's (``read()``: class names,
    split sizes, labels; the files are not checked, so records need not be files), then asks
    ``build_dataset`` for each dataset and ``build_loader`` for each loader; None from either
    keeps the data module's own (map-style dataset over the records' files, its samplers).
    A streamed training dataset must yield the items of the map-style dataset it replaces
    (``VideoDataset.load_item`` of the kwargs it is given), split across processes and
    workers, each video once per epoch. ``val_split`` must be 0 (the splits are fixed when
    the data is packed).
    """

    def build_dataset(
        self, kind: str, records: list[VideoRecord], evaluation: bool, **kwargs: Any
    ) -> Dataset | None:
        """The dataset of a split, or None for the data module's own.

        Args:
            kind: ``"pretrain"`` (``PretrainClipDataset``), ``"clip"``
                (``LabelledClipDataset``) or ``"multiview"`` (``MultiViewClipDataset``).
            records: The split's records (from ``read()``).
            evaluation: An evaluation dataset (bad videos left out, not replaced).
            **kwargs: The dataset class's arguments (``split`` names the split).

        Returns:
            A dataset, or None.
        """
        return None

    def build_loader(self, dataset: Dataset, settings: LoaderSettings) -> DataLoader | None:
        """The loader of a dataset this source built, or None for the data module's own.

        Args:
            dataset: What ``build_dataset`` returned.
            settings: The data module's loader settings.

        Returns:
            A loader, or None.
        """
        return None


class ResumableSampler(EpochSampler):
    """``EpochSampler`` whose next pass can start ``skip`` items in (mid-epoch resume)."""

    skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class VideoLoader(DataLoader):
    """A ``DataLoader`` that reports the skipped videos of each pass once.

    Lightning stops after ``len(loader)`` batches, so code after a pass's last batch never
    runs under ``Trainer.fit``: a pass is reported when the next one starts, when it is
    drained (``list(loader)``), or by ``VideoDataModule.teardown``.
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
    """The training loader: each pass starts at the batch the trainer has reached.

    At the start of a pass it asks ``position()`` how many batches of the current epoch the
    trainer has processed: 0 for a new epoch, k after resuming from a checkpoint saved k
    batches into the epoch (Lightning restores its loop counters before the pass starts),
    and skips that many batches without decoding them. Reading the restored loop rather than
    a loader state also covers Lightning setting up the loader before restoring states
    (``estimated_stepping_batches`` in ``configure_optimizers``), which skips
    ``load_state_dict``. ``state_dict`` / ``load_state_dict`` exist so that Lightning treats
    the loader as resumable.
    """

    def __init__(self, *args: Any, position: Callable[[], int | None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position = position

    def _done(self) -> int:
        done = self._position() if self._position is not None else None
        return int(done or 0)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: where the current pass stands (informative)."""
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": self._done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to load: the next pass reads the restored loop's position itself."""

    def __iter__(self):  # type: ignore[override]
        done = self._done()
        if done and isinstance(self.sampler, ResumableSampler):
            self.sampler.skip = done * self.batch_size
        yield from super().__iter__()
