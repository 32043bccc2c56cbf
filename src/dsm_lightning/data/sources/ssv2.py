"""Something-Something v2 with its official JSON annotations."""

from __future__ import annotations

import os

from dsm_lightning.data.sources._files import check_extension, require_dir
from dsm_lightning.data.sources._json import find_file, json_list_entries, read_json
from dsm_lightning.data.sources.base import (
    AnnotationError,
    SkippedItem,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

__all__ = ["SSV2_FILES", "SSv2Source", "read_ssv2", "ssv2_class_names"]

#: annotation files per role: the official names first, then short ones
SSV2_FILES = {
    "labels": ("something-something-v2-labels.json", "labels.json"),
    "train": ("something-something-v2-train.json", "train.json"),
    "validation": ("something-something-v2-validation.json", "validation.json"),
}


def _template_class(template: str) -> str:
    """``"Putting [something] onto [something]"`` -> ``"Putting something onto something"``."""
    return template.replace("[", "").replace("]", "")


def ssv2_class_names(labels_file: str) -> list[str]:
    """Class names of the labels file ``{"<template without brackets>": "<index>", ...}``.

    Args:
        labels_file: the labels JSON.

    Returns:
        The templates ordered by index (index = label).

    Raises:
        AnnotationError: not an object, an index that is not an integer, or indices that
            are not exactly 0 .. N-1 (naming the file and the class).
    """
    labels = read_json(labels_file)
    if not isinstance(labels, dict) or not labels:
        raise AnnotationError(
            f"{labels_file}, line 1: expected a non-empty object {{\"<template>\": \"<index>\"}}"
        )
    by_index: dict[int, str] = {}
    for name, raw in labels.items():
        text = str(raw).strip()
        if isinstance(raw, bool) or not text.isdigit():
            raise AnnotationError(f"{labels_file}: class {name!r}: index {raw!r} is not an integer")
        if int(text) in by_index:
            raise AnnotationError(
                f"{labels_file}: class {name!r}: index {text} already used by "
                f"{by_index[int(text)]!r}"
            )
        by_index[int(text)] = name
    if sorted(by_index) != list(range(len(by_index))):
        missing = sorted(set(range(len(by_index))) - set(by_index))
        raise AnnotationError(f"{labels_file}: indices must be 0..{len(by_index) - 1}; "
                              f"missing {missing[:5]}")
    return [by_index[i] for i in range(len(by_index))]


def read_ssv2(root: str, annotations: str, extension: str = ".webm") -> SourceSplits:
    """Something-Something v2: labels JSON plus train and validation JSON lists.

    ``annotations`` holds ``something-something-v2-labels.json`` (``{"<template>":
    "<index>"}``), ``-train.json`` and ``-validation.json`` (lists of ``{"id": "78687",
    "template": "Holding [something] next to [something]", "label": "...",
    "placeholders": [...]}``; the short names ``labels.json``, ``train.json``,
    ``validation.json`` work too). An entry's class is its ``template`` without brackets
    (an entry without ``template`` uses ``label``); its video is ``<root>/<id><extension>``.
    The validation list is the ``test`` split (the official test labels are not public).

    Args:
        root: Directory holding ``<id>.webm`` (``20bn-something-something-v2``).
        annotations: Directory of the JSON files.
        extension: Video file extension (``.webm`` as released; e.g. ``.mp4`` if converted).

    Returns:
        ``SourceSplits`` with ``train`` and ``test``; entries of an unknown class are
        skipped (listed in ``skipped``).

    Raises:
        AnnotationError: a file is missing or malformed (naming the file and line).
    """
    require_dir(annotations, "annotations")
    names = ssv2_class_names(find_file(annotations, SSV2_FILES["labels"], "labels"))
    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, list[VideoRecord]] = {}
    skipped: list[SkippedItem] = []
    for split, role in (("train", "train"), ("test", "validation")):
        path = find_file(annotations, SSV2_FILES[role], role)
        records = []
        for line, entry in json_list_entries(path):
            video_id = entry.get("id") if isinstance(entry, dict) else None
            template = entry.get("template", entry.get("label")) if isinstance(entry, dict) else None
            if not isinstance(video_id, (str, int)) or isinstance(video_id, bool) or not str(
                video_id
            ).strip() or not isinstance(template, str):
                raise AnnotationError(
                    f"{path}, line {line}: expected {{\"id\": ..., \"template\": ...}}, "
                    f"got {str(entry)[:80]}"
                )
            video_id = str(video_id).strip()
            name = _template_class(template)
            if name not in index:
                skipped.append(SkippedItem(split, f"{path}:{line}: {video_id}",
                                           f"unknown class {name!r}"))
                continue
            records.append(VideoRecord(os.path.join(root, video_id + extension), index[name],
                                       video_id))
        splits[split] = records
    return SourceSplits(splits, names, skipped)


@register_source("ssv2")
class SSv2Source(VideoSource):
    """Something-Something v2 (174 classes); see ``read_ssv2`` for the layout.

    Args:
        root: Directory holding ``<id>.webm``.
        annotations: Directory of the labels, train and validation JSON files.
        extension: Video file extension.

    Raises:
        ValueError: ``extension`` does not start with a dot.
    """

    def __init__(self, root: str, annotations: str, extension: str = ".webm") -> None:
        self.root, self.annotations = root, annotations
        self.extension = check_extension(extension)

    def read(self) -> SourceSplits:
        """Parse the JSON files (names the file and line of a malformed entry)."""
        return read_ssv2(self.root, self.annotations, self.extension)

    def class_names(self) -> list[str]:
        """The templates of the labels file (without reading the long lists)."""
        require_dir(self.annotations, "annotations")
        return ssv2_class_names(find_file(self.annotations, SSV2_FILES["labels"], "labels"))
