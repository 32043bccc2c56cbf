"""File helpers shared by the file-based sources (annotation lines, video extensions)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from dsm_lightning.data.sources.base import AnnotationError
from dsm_lightning.data.video_io import VIDEO_EXTENSIONS


def require_file(path: str) -> str:
    """``path`` if it is a file.

    Raises:
        AnnotationError: naming the file when it does not exist.
    """
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: annotation file not found")
    return path


def require_dir(path: str | None, what: str) -> str:
    """``path`` if it is a directory.

    Raises:
        AnnotationError: naming ``what`` and the path when it is not a directory.
    """
    if path is None or not os.path.isdir(path):
        raise AnnotationError(f"{what} directory not found: {path!r}")
    return path


def annotation_lines(path: str) -> Iterator[tuple[int, str]]:
    """Non-empty, non-comment lines with their 1-based numbers."""
    try:
        with open(require_file(path), encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield number, text
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not a text file ({err})") from err


def is_video(name: str) -> bool:
    """Whether a file name has a video extension (hidden files excluded)."""
    return name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith(".")


def check_split(split: int) -> int:
    """An official split number (1, 2 or 3).

    Raises:
        ValueError: naming ``split`` when it is not 1, 2 or 3.
    """
    if isinstance(split, bool) or split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got split={split!r}")
    return split


def check_extension(extension: str) -> str:
    """A video file extension with its leading dot (e.g. ``".mp4"``).

    Raises:
        ValueError: naming ``extension`` when it does not start with a dot.
    """
    if not extension.startswith("."):
        raise ValueError(f"extension must start with '.', got extension={extension!r}")
    return extension
