"""Shared base of the sources read from a dataset's official split files (UCF101, HMDB51)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from dsm_lightning.data.sources._files import check_split
from dsm_lightning.data.sources.base import SourceSplits, VideoSource
from dsm_lightning.data.sources.folder import add_test_tree

__all__ = ["OfficialSplitSource"]


class OfficialSplitSource(VideoSource):
    """A source read by ``parse(root, annotations, split)`` from official split 1, 2 or 3.

    Subclasses set ``parse`` (a ``staticmethod`` of their ``read_<dataset>`` function) and
    document their arguments; ``test_root`` replaces the test split by a folder-per-class tree.
    """

    parse: ClassVar[Callable[[str, str | None, int], SourceSplits]]

    def __init__(
        self, root: str, annotations: str | None = None, split: int = 1,
        test_root: str | None = None,
    ) -> None:
        self.root, self.annotations = root, annotations
        self.split, self.test_root = check_split(split), test_root

    def read(self) -> SourceSplits:
        """Parse the split files (names the file and line of a malformed entry)."""
        return add_test_tree(self.parse(self.root, self.annotations, self.split), self.test_root)
