"""Folder-per-class trees: ``<root>/<class>/<video>``; also a separate test tree for any source."""

from __future__ import annotations

import os

from dsm_lightning.data.sources._files import is_video, require_dir
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

__all__ = ["FolderSource", "add_test_tree", "list_class_folders", "read_folder", "scan_folder"]


def list_class_folders(root: str) -> list[str]:
    """Sorted class directory names of a folder-per-class tree.

    Raises:
        AnnotationError: ``root`` is not a directory or holds no class directory.
    """
    require_dir(root, "video root")
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
                if not is_video(filename):
                    continue
                path = os.path.join(dirpath, filename)
                if folder not in index:
                    skipped.append(SkippedItem(split, path, f"unknown class {folder!r}"))
                    continue
                video_id = os.path.relpath(path, root)
                records.append(VideoRecord(path, index[folder], video_id))
    return records, names, skipped


def add_test_tree(source: SourceSplits, test_root: str | None) -> SourceSplits:
    """Replace the test split by a folder-per-class tree whose class names match ``source``'s.

    Args:
        source: A parsed layout.
        test_root: Test tree ``<test_root>/<class>/<video>``, or None (``source`` unchanged).

    Returns:
        ``source`` with ``test`` from ``test_root``; videos of unknown classes are skipped.
    """
    if test_root is None:
        return source
    test, _, skipped = scan_folder(test_root, source.class_names, "test")
    return SourceSplits({**source.splits, "test": test}, source.class_names,
                        source.skipped + skipped)


def read_folder(root: str, test_root: str | None = None) -> SourceSplits:
    """Folder-per-class training tree, optionally a second one as the test split.

    Args:
        root: Training tree ``<root>/<class>/<video>``.
        test_root: Test tree with the same class directory names, or None.

    Returns:
        ``SourceSplits`` with ``train`` (and ``test``).
    """
    train, names, skipped = scan_folder(root, None, "train")
    return add_test_tree(SourceSplits({"train": train}, names, skipped), test_root)


@register_source("folder")
class FolderSource(VideoSource):
    """``<root>/<class>/<video>`` (any depth below the class folder); classes = sorted folders.

    Args:
        root: The training tree.
        test_root: A second tree with the same class folder names, used as the test split.
    """

    def __init__(self, root: str, test_root: str | None = None) -> None:
        self.root, self.test_root = root, test_root

    def read(self) -> SourceSplits:
        """Scan ``root`` (train) and ``test_root`` (test)."""
        return read_folder(self.root, self.test_root)
