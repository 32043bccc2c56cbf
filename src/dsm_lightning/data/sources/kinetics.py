"""Kinetics-style CSV annotations (``label,youtube_id,time_start,time_end,split``)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

from dsm_lightning.data.sources._files import is_video, require_dir, require_file
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)
from dsm_lightning.data.sources.folder import add_test_tree

__all__ = ["KineticsCSVSource", "read_kinetics_csv"]

_CSV_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "test": "test", "testing": "test"}


def _index_videos(root: str) -> dict[str, str]:
    """Map file stem -> path for every video below ``root`` (first one wins)."""
    index: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(require_dir(root, "video root")):
        dirnames.sort()
        for filename in sorted(filenames):
            if is_video(filename):
                index.setdefault(os.path.splitext(filename)[0], os.path.join(dirpath, filename))
    return index


def _csv_rows(path: str, default_split: str | None) -> Iterator[tuple[int, str, dict]]:
    with open(require_file(path), encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        missing = {"youtube_id", "time_start", "time_end"} - fields
        if missing:
            raise AnnotationError(
                f"{path}, line 1: header lacks {sorted(missing)} (expected "
                "label,youtube_id,time_start,time_end,split)"
            )
        if "split" not in fields and default_split is None:
            raise AnnotationError(f"{path}, line 1: no 'split' column and no split in file name")
        for row in reader:
            number = reader.line_num
            raw = (row.get("split") or default_split or "").strip().lower()
            if raw not in _CSV_SPLITS:
                raise AnnotationError(f"{path}, line {number}: unknown split {raw!r}")
            yield number, _CSV_SPLITS[raw], row


def read_kinetics_csv(
    root: str, annotations: str, test_annotations: str | None = None
) -> SourceSplits:
    """Kinetics-style CSV(s): ``label,youtube_id,time_start,time_end,split``.

    Video files are found anywhere below ``root`` by name: the trimmed clip
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the official downloader's name) or the
    untrimmed ``<youtube_id>.<ext>``, of which only ``[time_start, time_end]`` is used.
    Classes are the sorted labels of the train rows.

    Args:
        root: Directory tree holding the videos.
        annotations: One CSV with a ``split`` column, or a directory of CSVs (``train.csv``,
            ``validate.csv``, ``test.csv``; the split comes from the column or the file name).
        test_annotations: Optional extra CSV whose rows all form the test split.

    Returns:
        ``SourceSplits`` with the splits present in the files.

    Raises:
        AnnotationError: A CSV is missing or malformed.
    """
    if os.path.isdir(annotations):
        files = sorted(
            os.path.join(annotations, f) for f in os.listdir(annotations) if f.endswith(".csv")
        )
        if not files:
            raise AnnotationError(f"{annotations}: no .csv files")
    else:
        files = [require_file(annotations)]
    sources = [(f, _CSV_SPLITS.get(os.path.splitext(os.path.basename(f))[0].lower())) for f in files]
    if test_annotations is not None:
        sources.append((test_annotations, "test"))
    rows: list[tuple[str, int, str, dict]] = []
    for path, default in sources:
        forced = default if path == test_annotations else None
        for number, split, row in _csv_rows(path, default):
            rows.append((path, number, forced or split, row))
    names = sorted({row["label"].strip() for _, _, s, row in rows if s == "train" and row.get("label")})
    index = {name: i for i, name in enumerate(names)}
    videos = _index_videos(root)
    splits: dict[str, list[VideoRecord]] = {}
    skipped: list[SkippedItem] = []
    for path, number, split, row in rows:
        ytid = (row.get("youtube_id") or "").strip()
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except (TypeError, ValueError) as err:
            raise AnnotationError(f"{path}, line {number}: bad time_start/time_end ({err})") from err
        if not ytid or end <= start:
            raise AnnotationError(f"{path}, line {number}: bad youtube_id or time range")
        label_name = (row.get("label") or "").strip()
        if label_name and label_name not in index:
            skipped.append(SkippedItem(split, f"{path}:{number}: {ytid}",
                                       f"unknown class {label_name!r}"))
            continue
        label = index[label_name] if label_name else -1
        trimmed = f"{ytid}_{int(start):06d}_{int(end):06d}"
        if trimmed in videos:
            record = VideoRecord(videos[trimmed], label, trimmed)
        elif ytid in videos:
            record = VideoRecord(videos[ytid], label, trimmed, start, end)
        else:
            record = VideoRecord(os.path.join(root, f"{trimmed}.mp4"), label, trimmed)
        splits.setdefault(split, []).append(record)
    return SourceSplits(splits, names, skipped)


@register_source("kinetics_csv")
class KineticsCSVSource(VideoSource):
    """Kinetics-style CSV(s); see ``read_kinetics_csv`` for how videos are found.

    Args:
        root: Directory tree holding the videos.
        annotations: One CSV with a ``split`` column, or a directory of ``train.csv``,
            ``validate.csv``, ``test.csv``.
        test_annotations: Optional extra CSV whose rows all form the test split.
        test_root: A folder-per-class tree used as the test split instead.
    """

    def __init__(
        self, root: str, annotations: str, test_annotations: str | None = None,
        test_root: str | None = None,
    ) -> None:
        self.root, self.annotations = root, annotations
        self.test_annotations, self.test_root = test_annotations, test_root

    def read(self) -> SourceSplits:
        """Parse the CSV(s) and find the video files below ``root``."""
        splits = read_kinetics_csv(self.root, self.annotations, self.test_annotations)
        return add_test_tree(splits, self.test_root)
