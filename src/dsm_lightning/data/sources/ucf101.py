"""UCF101 with its official lists (``ucfTrainTestlist``)."""

from __future__ import annotations

import os

from dsm_lightning.data.sources._files import annotation_lines, check_split
from dsm_lightning.data.sources._splits import OfficialSplitSource
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    register_source,
)

__all__ = ["UCF101Source", "read_ucf101"]


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
    check_split(split)
    ann = annotations or os.path.join(root, "ucfTrainTestlist")
    class_file = os.path.join(ann, "classInd.txt")
    names: list[str] = []
    for number, text in annotation_lines(class_file):
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
        for number, text in annotation_lines(list_file):
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


@register_source("ucf101")
class UCF101Source(OfficialSplitSource):
    """UCF101: the official split files of ``split`` 1, 2 or 3 (train, test).

    Args:
        root: Directory holding ``<Class>/v_<Class>_gXX_cYY.avi``.
        annotations: Directory of ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``;
            None = ``<root>/ucfTrainTestlist``.
        split: Official split 1, 2 or 3.
        test_root: A folder-per-class tree used as the test split instead.

    Raises:
        ValueError: ``split`` is not 1, 2 or 3.
    """

    parse = staticmethod(read_ucf101)
