"""What ``VideoDataModule`` reads from a source: the source itself, then its splits.

- ``resolve_source``: a registered name plus location arguments, or a ``VideoSource``.
- ``read_splits``: the source's splits with the validation hold-out (``hold_out``), the
  missing files dropped (file sources) and the ``on_error`` policy applied to the entries
  dropped (warn or raise).
- ``check_batch_fits``: the training split gives every process at least one full batch.

Plain Python and NumPy (no torch, no Lightning).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from dsm_lightning.data.datasets import VideoSkippedWarning
from dsm_lightning.data.sources import (
    SourceSplits,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
)

__all__ = ["LOCATION_ARGS", "check_batch_fits", "hold_out", "read_splits", "resolve_source"]

#: Location arguments of ``VideoDataModule`` forwarded to a named source (those it accepts).
LOCATION_ARGS = ("root", "annotations", "split", "test_root", "val_annotations",
                 "test_annotations", "cache_dir")


def resolve_source(source: str | VideoSource, location: Mapping[str, Any]) -> VideoSource:
    """The source of a data module: built from a registered name and the location arguments,
    or the instance given (then no location argument may be set).

    Args:
        source: Registered name or a ``VideoSource``.
        location: ``LOCATION_ARGS`` values (None = not given).

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
        return source
    if not isinstance(source, str):
        raise ValueError(f"source must be a registered name or a VideoSource, got {source!r}")
    return create_source(source, **{name: location.get(name) for name in LOCATION_ARGS})


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
