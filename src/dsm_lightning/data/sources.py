"""Dataset layouts -> lists of ``VideoRecord`` per split, plus class names.

Layouts: folder-per-class, UCF101 (official ``ucfTrainTestlist``), HMDB51 (official
``testTrainMulti_7030_splits``), Kinetics-style CSV and plain list files. Parsers never
decode video. A malformed or missing annotation file raises ``AnnotationError`` naming the
file and line; entries that can be dropped (unknown class names, missing video files) are
returned as ``SkippedItem`` so the caller applies its ``on_error`` policy.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from dsm_lightning.data.video_io import VIDEO_EXTENSIONS

SPLIT_NAMES = ("train", "val", "test")
_CSV_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "test": "test", "testing": "test"}


class AnnotationError(ValueError):
    """An annotation file is missing or malformed (the message names the file and line)."""


class VideoRecord(NamedTuple):
    """One video of a split.

    Attributes:
        path: Video file path.
        label: Class index, -1 when unknown (e.g. unlabelled test sets).
        video_id: Identifier (path relative to the dataset root or YouTube id).
        start_sec: Start of the labelled segment in an untrimmed video, or None.
        end_sec: End of the labelled segment, or None.
    """

    path: str
    label: int
    video_id: str
    start_sec: float | None = None
    end_sec: float | None = None


class SkippedItem(NamedTuple):
    """An entry dropped while reading a layout.

    Attributes:
        split: Split the entry belonged to.
        item: The file (or annotation line) concerned.
        reason: Why it was dropped.
    """

    split: str
    item: str
    reason: str


class SourceSplits(NamedTuple):
    """Everything a layout parser found.

    Attributes:
        splits: Records per split name (``"train"``, ``"val"``, ``"test"``, ...).
        class_names: Class names; index = label.
        skipped: Entries dropped (unknown class, missing file).
    """

    splits: dict[str, list[VideoRecord]]
    class_names: list[str]
    skipped: list[SkippedItem]


def _require_file(path: str) -> str:
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: annotation file not found")
    return path


def _require_dir(path: str | None, what: str) -> str:
    if path is None or not os.path.isdir(path):
        raise AnnotationError(f"{what} directory not found: {path!r}")
    return path


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """Non-empty, non-comment lines with their 1-based numbers."""
    try:
        with open(_require_file(path), encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield number, text
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not a text file ({err})") from err


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith(".")


def drop_missing(source: SourceSplits) -> SourceSplits:
    """Move records whose file does not exist into ``skipped``.

    Args:
        source: Parsed layout.

    Returns:
        The layout with only existing files in ``splits``.
    """
    splits: dict[str, list[VideoRecord]] = {}
    skipped = list(source.skipped)
    for name, records in source.splits.items():
        kept = []
        for record in records:
            if os.path.isfile(record.path):
                kept.append(record)
            else:
                skipped.append(SkippedItem(name, record.path, "file not found"))
        splits[name] = kept
    return SourceSplits(splits, source.class_names, skipped)


# ----------------------------------------------------------------------------- folder


def list_class_folders(root: str) -> list[str]:
    """Sorted class directory names of a folder-per-class tree.

    Raises:
        AnnotationError: ``root`` is not a directory or holds no class directory.
    """
    _require_dir(root, "video root")
    names = sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not names:
        raise AnnotationError(f"{root}: no class directories (expected <root>/<class>/<video>)")
    return names


def scan_folder(
    root: str, class_names: list[str] | None = None, split: str = "train"
) -> tuple[list[VideoRecord], list[str], list[SkippedItem]]:
    """Read a folder-per-class tree ``<root>/<class>/<video>`` (recursively below class).

    Args:
        root: Directory whose sub-directories are classes.
        class_names: Known classes (labels follow this order); None derives them from the
            sorted directory names.
        split: Split name used in skipped entries.

    Returns:
        ``(records, class_names, skipped)``; videos of directories not in ``class_names``
        are skipped as unknown classes.
    """
    folders = list_class_folders(root)
    names = list(folders) if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(names)}
    records, skipped = [], []
    for folder in folders:
        class_dir = os.path.join(root, folder)
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()
            for filename in sorted(filenames):
                if not _is_video(filename):
                    continue
                path = os.path.join(dirpath, filename)
                if folder not in index:
                    skipped.append(SkippedItem(split, path, f"unknown class {folder!r}"))
                    continue
                video_id = os.path.relpath(path, root)
                records.append(VideoRecord(path, index[folder], video_id))
    return records, names, skipped


def read_folder(root: str, test_root: str | None = None) -> SourceSplits:
    """Folder-per-class training tree, optionally a second one as the test split.

    Args:
        root: Training tree ``<root>/<class>/<video>``.
        test_root: Test tree with the same class directory names, or None.

    Returns:
        ``SourceSplits`` with ``train`` (and ``test``).
    """
    train, names, skipped = scan_folder(root, None, "train")
    splits = {"train": train}
    if test_root is not None:
        test, _, test_skipped = scan_folder(test_root, names, "test")
        splits["test"] = test
        skipped += test_skipped
    return SourceSplits(splits, names, skipped)


# ----------------------------------------------------------------------------- UCF101


def read_ucf101(root: str, annotations: str | None = None, split: int = 1) -> SourceSplits:
    """UCF101 with the official lists (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``).

    Args:
        root: Directory holding ``<Class>/v_<Class>_gXX_cYY.avi``.
        annotations: Directory of the lists; None tries ``<root>/ucfTrainTestlist``.
        split: Official split 1, 2 or 3.

    Returns:
        ``SourceSplits`` with ``train`` and ``test``.

    Raises:
        AnnotationError: A list is missing or malformed.
    """
    _check_split(split)
    ann = annotations or os.path.join(root, "ucfTrainTestlist")
    class_file = os.path.join(ann, "classInd.txt")
    names: list[str] = []
    for number, text in _lines(class_file):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(names) + 1:
            raise AnnotationError(
                f"{class_file}, line {number}: expected '<index> <ClassName>' with index "
                f"{len(names) + 1}, got {text!r}"
            )
        names.append(parts[1])
    if not names:
        raise AnnotationError(f"{class_file}: no classes")
    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, list[VideoRecord]] = {}
    skipped: list[SkippedItem] = []
    for name, prefix in (("train", "trainlist"), ("test", "testlist")):
        list_file = os.path.join(ann, f"{prefix}0{split}.txt")
        records = []
        for number, text in _lines(list_file):
            parts = text.split()
            if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[1].isdigit()):
                raise AnnotationError(
                    f"{list_file}, line {number}: expected '<Class>/<video> [<label>]', got {text!r}"
                )
            rel = parts[0]
            class_name = rel.replace("\\", "/").split("/")[0]
            if "/" not in rel.replace("\\", "/") or class_name not in index:
                skipped.append(SkippedItem(name, f"{list_file}:{number}: {rel}",
                                           f"unknown class {class_name!r}"))
                continue
            label = index[class_name]
            if len(parts) == 2 and int(parts[1]) != label + 1:
                raise AnnotationError(
                    f"{list_file}, line {number}: label {parts[1]} contradicts classInd.txt "
                    f"({class_name} = {label + 1})"
                )
            records.append(VideoRecord(os.path.join(root, rel), label, rel))
        splits[name] = records
    return SourceSplits(splits, names, skipped)


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split!r}")


# ----------------------------------------------------------------------------- HMDB51


def read_hmdb51(root: str, annotations: str | None = None, split: int = 1) -> SourceSplits:
    """HMDB51 with the official ``<class>_test_split{1,2,3}.txt`` files (1 train, 2 test, 0 unused).

    Args:
        root: Directory holding ``<class>/<video>.avi``.
        annotations: Directory of the split files; None tries
            ``<root>/testTrainMulti_7030_splits``.
        split: Official split 1, 2 or 3.

    Returns:
        ``SourceSplits`` with ``train`` and ``test``.

    Raises:
        AnnotationError: The split files are missing or malformed.
    """
    _check_split(split)
    ann = annotations or os.path.join(root, "testTrainMulti_7030_splits")
    _require_dir(ann, "HMDB51 annotation")
    suffix = f"_test_split{split}.txt"
    files = sorted(f for f in os.listdir(ann) if f.endswith(suffix))
    if not files:
        raise AnnotationError(f"{ann}: no '*{suffix}' files")
    names = [f[: -len(suffix)] for f in files]
    splits: dict[str, list[VideoRecord]] = {"train": [], "test": []}
    for label, (class_name, filename) in enumerate(zip(names, files)):
        path = os.path.join(ann, filename)
        for number, text in _lines(path):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(
                    f"{path}, line {number}: expected '<video> <0|1|2>', got {text!r}"
                )
            if parts[1] == "0":
                continue
            rel = f"{class_name}/{parts[0]}"
            target = "train" if parts[1] == "1" else "test"
            splits[target].append(VideoRecord(os.path.join(root, rel), label, rel))
    return SourceSplits(splits, names, [])


# ----------------------------------------------------------------------------- Kinetics CSV


def _index_videos(root: str) -> dict[str, str]:
    """Map file stem -> path for every video below ``root`` (first one wins)."""
    index: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(_require_dir(root, "video root")):
        dirnames.sort()
        for filename in sorted(filenames):
            if _is_video(filename):
                index.setdefault(os.path.splitext(filename)[0], os.path.join(dirpath, filename))
    return index


def _csv_rows(path: str, default_split: str | None) -> Iterator[tuple[int, str, dict]]:
    with open(_require_file(path), encoding="utf-8", newline="") as handle:
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
        files = [_require_file(annotations)]
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


# ----------------------------------------------------------------------------- list file


def _read_list(path: str) -> list[tuple[int, str, str]]:
    entries = []
    for number, text in _lines(path):
        parts = text.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise AnnotationError(
                f"{path}, line {number}: expected '<relative/path> <label>', got {text!r}"
            )
        entries.append((number, parts[0], parts[1]))
    return entries


def read_list_files(
    root: str,
    annotations: str,
    val_annotations: str | None = None,
    test_annotations: str | None = None,
) -> SourceSplits:
    """Plain list files, one ``relative/path label`` per line (Something-Something, Diving48).

    Labels are integers (classes ``"0" .. str(max)`` of the train list) or class names
    (classes = sorted names of the train list). Lines whose label is not a train class are
    skipped. Paths are relative to ``root`` (absolute paths are kept).

    Args:
        root: Directory the paths are relative to.
        annotations: Train list file.
        val_annotations: Optional validation list file.
        test_annotations: Optional test list file.

    Returns:
        ``SourceSplits`` with ``train`` (and ``val``, ``test``).

    Raises:
        AnnotationError: A list file is missing or malformed.
    """
    lists = {"train": annotations, "val": val_annotations, "test": test_annotations}
    entries = {name: _read_list(path) for name, path in lists.items() if path is not None}
    train_labels = [label for _, _, label in entries["train"]]
    if not train_labels:
        raise AnnotationError(f"{annotations}: empty list")
    if all(label.lstrip("-").isdigit() for label in train_labels):
        bad = [label for label in train_labels if int(label) < 0]
        if bad:
            raise AnnotationError(f"{annotations}: negative label {bad[0]}")
        names = [str(i) for i in range(max(int(label) for label in train_labels) + 1)]
    else:
        names = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, list[VideoRecord]] = {}
    skipped: list[SkippedItem] = []
    for split, items in entries.items():
        records = []
        for number, rel, label in items:
            key = str(int(label)) if label.lstrip("-").isdigit() else label
            if key not in index:
                skipped.append(SkippedItem(split, f"{lists[split]}:{number}: {rel}",
                                           f"unknown class {label!r}"))
                continue
            records.append(VideoRecord(os.path.join(root, rel), index[key], rel))
        splits[split] = records
    return SourceSplits(splits, names, skipped)


def class_counts(records: Iterable[VideoRecord], num_classes: int) -> list[int]:
    """Number of records per class label (labels -1 ignored)."""
    counts = [0] * num_classes
    for record in records:
        if 0 <= record.label < num_classes:
            counts[record.label] += 1
    return counts
