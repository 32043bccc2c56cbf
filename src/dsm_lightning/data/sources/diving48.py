"""Diving48 with its official JSON splits (``Diving48_V2_train.json``, ``_test.json``)."""

from __future__ import annotations

import os

from dsm_lightning._checks import check_choice
from dsm_lightning.data.sources._files import check_extension, require_dir
from dsm_lightning.data.sources._json import find_file, json_list_entries
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

__all__ = ["DIVING48_VERSIONS", "Diving48Source", "diving48_class_names", "read_diving48"]

#: annotation version -> (train file, test file); the vocabulary is shared
DIVING48_VERSIONS = {
    "V2": ("Diving48_V2_train.json", "Diving48_V2_test.json"),
    "V1": ("Diving48_train.json", "Diving48_test.json"),
}
VOCAB_FILE = "Diving48_vocab.json"


def diving48_class_names(vocab_file: str) -> list[str]:
    """Class names from ``Diving48_vocab.json``: a list of ``[takeoff, somersault, twist,
    flight]`` per class, joined with ``_`` (e.g. ``"Back_15som_05Twis_FREE"``).

    Raises:
        AnnotationError: not a non-empty list of string lists (naming file and line).
    """
    entries = json_list_entries(vocab_file)
    names = []
    for line, entry in entries:
        parts = [entry] if isinstance(entry, str) else entry
        if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
            raise AnnotationError(
                f"{vocab_file}, line {line}: expected a list of strings per class, got {entry!r}"
            )
        names.append("_".join(parts))
    if not names:
        raise AnnotationError(f"{vocab_file}: no classes")
    return names


def _frame(entry: dict, key: str, path: str, line: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnnotationError(f"{path}, line {line}: {key} must be a non-negative int, "
                              f"got {value!r}")
    return value


def read_diving48(
    root: str, annotations: str, version: str = "V2", extension: str = ".mp4"
) -> SourceSplits:
    """Diving48: JSON lists of ``{"vid_name", "label", "start_frame", "end_frame"}``.

    ``annotations`` holds ``Diving48_V2_train.json`` and ``Diving48_V2_test.json`` (V1:
    ``Diving48_train.json``, ``Diving48_test.json``) and optionally ``Diving48_vocab.json``
    (class names; without it classes are ``"0" .. str(max train label)``). An entry's video
    is ``<root>/<vid_name><extension>`` (the released ``rgb/`` folder). ``start_frame`` /
    ``end_frame`` are checked (non-negative, start before end) but not used to cut: the
    released clips are already trimmed to the dive (list converters such as TSM's take
    ``end_frame`` as the clip's frame count).

    Args:
        root: Directory holding the ``<vid_name>.mp4`` clips.
        annotations: Directory of the JSON files.
        version: ``"V2"`` (the cleaned labels the public DSM scripts use) or ``"V1"``.
        extension: Video file extension.

    Returns:
        ``SourceSplits`` with ``train`` and ``test``; entries whose label is not a class are
        skipped (listed in ``skipped``).

    Raises:
        AnnotationError: a file is missing or malformed (naming the file and line).
    """
    require_dir(annotations, "annotations")
    train_file, test_file = DIVING48_VERSIONS[version]
    vocab = os.path.join(annotations, VOCAB_FILE)
    names = diving48_class_names(vocab) if os.path.isfile(vocab) else None
    parsed: dict[str, tuple[str, list[tuple[int, str, int]]]] = {}
    for split, name in (("train", train_file), ("test", test_file)):
        path = find_file(annotations, (name,), f"{split} split")
        items = []
        for line, entry in json_list_entries(path):
            vid = entry.get("vid_name") if isinstance(entry, dict) else None
            label = entry.get("label") if isinstance(entry, dict) else None
            if not isinstance(vid, str) or not vid.strip() or isinstance(label, bool) or not (
                isinstance(label, int) and label >= 0
            ):
                raise AnnotationError(
                    f"{path}, line {line}: expected {{\"vid_name\": str, \"label\": int >= 0, "
                    f"...}}, got {str(entry)[:80]}"
                )
            start, end = (_frame(entry, k, path, line) for k in ("start_frame", "end_frame"))
            if start is not None and end is not None and end <= start:
                raise AnnotationError(f"{path}, line {line}: end_frame {end} is not after "
                                      f"start_frame {start}")
            items.append((line, vid.strip(), label))
        parsed[split] = (path, items)
    if names is None:
        train_labels = [label for _, _, label in parsed["train"][1]]
        if not train_labels:
            raise AnnotationError(f"{parsed['train'][0]}: empty list")
        names = [str(i) for i in range(max(train_labels) + 1)]
    splits: dict[str, list[VideoRecord]] = {}
    skipped: list[SkippedItem] = []
    for split, (path, items) in parsed.items():
        records = []
        for line, vid, label in items:
            if label >= len(names):
                skipped.append(SkippedItem(split, f"{path}:{line}: {vid}",
                                           f"unknown class {label} (of {len(names)})"))
                continue
            records.append(VideoRecord(os.path.join(root, vid + extension), label, vid))
        splits[split] = records
    return SourceSplits(splits, names, skipped)


@register_source("diving48")
class Diving48Source(VideoSource):
    """Diving48 (48 dive classes); see ``read_diving48`` for the layout.

    Args:
        root: Directory holding the ``<vid_name>.mp4`` clips (``Diving48_rgb/rgb``).
        annotations: Directory of the JSON files.
        version: Annotation version, ``"V2"`` or ``"V1"``.
        extension: Video file extension.

    Raises:
        ValueError: unknown ``version`` or an ``extension`` without its dot.
    """

    def __init__(
        self, root: str, annotations: str, version: str = "V2", extension: str = ".mp4"
    ) -> None:
        check_choice("version", version, sorted(DIVING48_VERSIONS))
        self.root, self.annotations = root, annotations
        self.version, self.extension = version, check_extension(extension)

    def read(self) -> SourceSplits:
        """Parse the JSON files (names the file and line of a malformed entry)."""
        return read_diving48(self.root, self.annotations, self.version, self.extension)

    def class_names(self) -> list[str]:
        """Names from the vocabulary file when present, else read from the train split."""
        vocab = os.path.join(self.annotations, VOCAB_FILE)
        if os.path.isfile(vocab):
            return diving48_class_names(vocab)
        return self.read().class_names
