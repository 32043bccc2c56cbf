"""Plain list files: one ``relative/path label`` per line (Something-Something, Diving48)."""

from __future__ import annotations

import os

from dsm_lightning.data.sources._files import annotation_lines
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)
from dsm_lightning.data.sources.folder import add_test_tree

__all__ = ["ListSource", "read_list_files"]


def _read_list(path: str) -> list[tuple[int, str, str]]:
    entries = []
    for number, text in annotation_lines(path):
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


@register_source("list")
class ListSource(VideoSource):
    """List files of ``relative/path label`` lines; see ``read_list_files``.

    Args:
        root: Directory the paths are relative to.
        annotations: Train list file.
        val_annotations: Validation list file.
        test_annotations: Test list file.
        test_root: A folder-per-class tree used as the test split instead.
    """

    def __init__(
        self, root: str, annotations: str, val_annotations: str | None = None,
        test_annotations: str | None = None, test_root: str | None = None,
    ) -> None:
        self.root, self.annotations = root, annotations
        self.val_annotations, self.test_annotations = val_annotations, test_annotations
        self.test_root = test_root

    def read(self) -> SourceSplits:
        """Parse the list files (names the file and line of a malformed entry)."""
        splits = read_list_files(self.root, self.annotations, self.val_annotations,
                                 self.test_annotations)
        return add_test_tree(splits, self.test_root)
