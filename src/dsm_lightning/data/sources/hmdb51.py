"""HMDB51 with its official split files (``testTrainMulti_7030_splits``)."""

from __future__ import annotations

import os

from dsm_lightning.data.sources._files import annotation_lines, check_split, require_dir
from dsm_lightning.data.sources._splits import OfficialSplitSource
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SourceSplits,
    VideoRecord,
    register_source,
)

__all__ = ["HMDB51Source", "read_hmdb51"]


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
    check_split(split)
    ann = annotations or os.path.join(root, "testTrainMulti_7030_splits")
    require_dir(ann, "HMDB51 annotation")
    suffix = f"_test_split{split}.txt"
    files = sorted(f for f in os.listdir(ann) if f.endswith(suffix))
    if not files:
        raise AnnotationError(f"{ann}: no '*{suffix}' files")
    names = [f[: -len(suffix)] for f in files]
    splits: dict[str, list[VideoRecord]] = {"train": [], "test": []}
    for label, (class_name, filename) in enumerate(zip(names, files)):
        path = os.path.join(ann, filename)
        for number, text in annotation_lines(path):
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


@register_source("hmdb51")
class HMDB51Source(OfficialSplitSource):
    """HMDB51: the official split files of ``split`` 1, 2 or 3 (train, test).

    Args:
        root: Directory holding ``<class>/<video>.avi``.
        annotations: Directory of the ``<class>_test_split{1,2,3}.txt`` files; None =
            ``<root>/testTrainMulti_7030_splits``.
        split: Official split 1, 2 or 3.
        test_root: A folder-per-class tree used as the test split instead.

    Raises:
        ValueError: ``split`` is not 1, 2 or 3.
    """

    parse = staticmethod(read_hmdb51)
