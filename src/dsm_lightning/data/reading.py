"""What ``VideoDataModule`` reads from its source: the source, its splits, its datasets.

- ``resolve_source``: a registered name plus location arguments, or a ``VideoSource``.
- ``read_splits``: the source's splits with the validation hold-out (``hold_out``), the
  missing files dropped (file sources) and the ``on_error`` policy applied to the entries
  dropped (warn or raise).
- ``SourceReader``: the splits read once on first use, the lookups the data module offers
  (records, class and split names, skipped videos) and the datasets, built once per
  setting by the source (``VideoSource.build_dataset``).
- ``check_batch_fits``: the training split gives every process at least one full batch.

No Lightning.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from dsm_lightning._checks import check_choice
from dsm_lightning.data.datasets import DATASET_KINDS, VideoSkippedWarning
from dsm_lightning.data.sources import (
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
)

__all__ = ["LOCATION_ARGS", "SourceReader", "check_batch_fits", "hold_out", "read_splits",
           "resolve_source", "source_name"]

#: Location arguments of ``VideoDataModule`` forwarded to a named source (those it accepts).
LOCATION_ARGS = ("root", "annotations", "split", "test_root", "val_annotations",
                 "test_annotations", "cache_dir")


def resolve_source(source: str | VideoSource, seed: int, **location: Any) -> VideoSource:
    """The source of a data module, which receives its seed (``adopt_seed``): built from a
    registered name and the location arguments, or the instance given (then no location
    argument may be set).

    Args:
        source: Registered name or a ``VideoSource``.
        seed: The data module's seed.
        **location: ``LOCATION_ARGS`` values (None = not given).

    Returns:
        The source.

    Raises:
        ValueError: A location argument given with an instance, ``source`` of another type,
            or what ``create_source`` raises (unknown name, an argument it does not take).
    """
    given = [name for name in LOCATION_ARGS if location.get(name) is not None]
    if isinstance(source, VideoSource):
        if given:
            raise ValueError(
                f"{', '.join(given)} given with a VideoSource instance: pass them to the "
                f"source's constructor ({type(source).__name__}) instead"
            )
    elif isinstance(source, str):
        source = create_source(source, **{name: location.get(name) for name in LOCATION_ARGS})
    else:
        raise ValueError(f"source must be a registered name or a VideoSource, got {source!r}")
    source.adopt_seed(seed)
    return source


def source_name(source: str | VideoSource) -> str:
    """The name of a source in settings and messages: its registry name, else its class's."""
    return source if isinstance(source, str) else (source.name or type(source).__name__)


def hold_out(
    records: list[VideoRecord], fraction: float, seed: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split off ``fraction`` of each class (seeded, at least one video per class with two or
    more, never a class's last); returns (train, val) in input order."""
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


def read_splits(source: VideoSource, val_split: float, seed: int, on_error: str) -> SourceSplits:
    """Read ``source``: hold out ``val_split`` of the training videos, drop missing files
    (sources whose ``records_are_files``), then warn about or raise on the dropped entries.

    Args:
        source: The source.
        val_split: Fraction of each class's training videos held out as ``"val"`` (0: none).
        seed: Seed of the hold-out.
        on_error: ``"skip"`` (one ``VideoSkippedWarning`` per entry) or ``"raise"``.

    Returns:
        The splits, ``skipped`` listing every dropped entry.

    Raises:
        AnnotationError: An annotation file is missing or malformed.
        ValueError: ``on_error="raise"`` and an entry was dropped.
    """
    splits = source.read()
    if val_split > 0:
        train, val = hold_out(splits.splits.get("train", []), val_split, seed)
        splits = SourceSplits({**splits.splits, "train": train, "val": val},
                              splits.class_names, splits.skipped)
    if source.records_are_files:
        splits = drop_missing(splits)
    if splits.skipped and on_error == "raise":
        listed = "; ".join(f"{s.item} ({s.split}): {s.reason}" for s in splits.skipped[:5])
        raise ValueError(f"{len(splits.skipped)} bad annotation entries (on_error='raise'): "
                         f"{listed}")
    for item in splits.skipped:
        warnings.warn(f"skipping {item.item} ({item.split}): {item.reason}",
                      VideoSkippedWarning, stacklevel=3)
    return splits


def check_batch_fits(count: int, batch_size: int, world: int, drop_last: bool) -> None:
    """Check that ``count`` training videos give each of ``world`` processes a full batch.

    Raises:
        ValueError: ``drop_last`` and ``batch_size`` exceeds the videos per process.
    """
    if not drop_last or count == 0:
        return
    per_process = math.ceil(count / world)
    if batch_size > per_process:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {per_process} training videos per "
            f"process ({count} videos, {world} process(es)): with drop_last=True not one "
            "batch would be trained; lower batch_size or set drop_last=False"
        )


class SourceReader:
    """A data module's source: its splits, read once on first use (``read_splits``), and its
    datasets, built once per setting by the source (``build_dataset``).

    Raises:
        ValueError: ``val_split > 0`` with a source whose ``fixed_splits``.

    Args:
        source: The source.
        name: The source's name in messages.
        val_split: Fraction of each class's training videos held out as ``"val"``.
        on_error: ``"skip"`` or ``"raise"`` (setup-time entries and the datasets).
        clip: The datasets' other arguments (``VideoDataset``: ``num_frames``, ``stride``,
            ``frame_size``, ``short_video``, ``seed``, ``decoder``; ``min_gap`` of the
            pretraining pairs); ``seed`` also seeds the hold-out.
    """

    def __init__(self, source: VideoSource, name: str, val_split: float, on_error: str,
                 **clip: Any) -> None:
        if source.fixed_splits and val_split > 0:
            raise ValueError(
                f"val_split={val_split} with source {type(source).__name__}: its splits are "
                "fixed (a streamed source's when it is packed); hold out the validation "
                "videos then (dsm prepare --data.val_split ...) and use val_split=0 here"
            )
        self.source, self.name, self.val_split, self.on_error = source, name, val_split, on_error
        self.clip = clip
        self.datasets: dict[tuple, Any] = {}
        self._splits: SourceSplits | None = None

    @property
    def is_read(self) -> bool:
        """Whether the splits were read."""
        return self._splits is not None

    def splits(self) -> SourceSplits:
        """The splits (read on the first call; warns about or raises on dropped entries)."""
        if self._splits is None:
            self._splits = read_splits(self.source, self.val_split, self.clip["seed"],
                                       self.on_error)
        return self._splits

    def class_names(self) -> list[str]:
        """Class names (index = label); asks the source while the splits are not read."""
        if self._splits is not None:
            return list(self._splits.class_names)
        return self.source.class_names()

    def split_names(self) -> list[str]:
        """Names of the splits with at least one video."""
        return [name for name, records in self.splits().splits.items() if records]

    def records(self, split: str) -> list[VideoRecord]:
        """Videos of a split.

        Raises:
            ValueError: Unknown or empty split.
        """
        splits = self.splits().splits
        if not splits.get(split):
            raise ValueError(
                f"split {split!r} has no videos for source={self.name!r}; "
                f"available: {self.split_names()}"
                + ("; pass test_root or test_annotations" if split == "test" else "")
            )
        return splits[split]

    def skipped_at_setup(self) -> list[SkippedItem]:
        """Entries dropped when the splits were read ([] before)."""
        return list(self._splits.skipped) if self._splits is not None else []

    def skipped(self) -> dict[str, list[str]]:
        """Videos skipped so far per split: setup-time entries, then the datasets' bad videos."""
        out: dict[str, list[str]] = {}
        for item in self.skipped_at_setup():
            out.setdefault(item.split, []).append(item.item)
        for dataset in self.datasets.values():
            for path in dataset.bad_videos:
                if path not in out.setdefault(dataset.split, []):
                    out[dataset.split].append(path)
        return out

    def dataset(self, kind: str, split: str, n_clips: int = 1, random_clip: bool = False,
                evaluation: bool = False) -> Any:
        """The dataset of a split, built by the source on the first call with these values.

        Args:
            kind: ``"pretrain"``, ``"clip"`` or ``"multiview"`` (``datasets.DATASET_KINDS``).
            split: Split name.
            n_clips: Windows per video (``"multiview"``).
            random_clip: Random clip and crop (``"clip"``).
            evaluation: Leave bad videos out instead of replacing them.

        Returns:
            A ``VideoDataset`` (or the source's streamed equivalent).

        Raises:
            ValueError: Unknown ``kind`` or split.
        """
        key = (kind, split, n_clips, random_clip, evaluation)
        if key not in self.datasets:
            check_choice("kind", kind, tuple(DATASET_KINDS))
            clip = {name: value for name, value in self.clip.items() if name != "min_gap"}
            extra = {"pretrain": {"min_gap": self.clip["min_gap"]},
                     "clip": {"random_clip": random_clip}, "multiview": {"n_clips": n_clips}}
            self.datasets[key] = self.source.build_dataset(
                kind, self.records(split), evaluation, split=split, on_error=self.on_error,
                substitute_bad=not evaluation, **clip, **extra[kind])
        return self.datasets[key]

    def batch_fits(self, batch_size: int, world: int, drop_last: bool) -> None:
        """``check_batch_fits`` of the training split."""
        check_batch_fits(len(self.splits().splits.get("train", [])), batch_size, world,
                         drop_last)
