"""The ``FrameDecoder`` interface: one way of decoding the frames of one video file.

A decoder is given the encoded video (``EncodedVideo``: a file path, or the file's bytes
held in memory) and the file's ``FrameIndex``; each ``read`` names the wanted frames and
the output ``Geometry``. A read has three outcomes:

- the frames, exact: ``{frame: uint8 array (H, W, 3)}``;
- ``Declined``: this decoder cannot deliver them exactly (the next decoder of the chain is
  asked, see ``decoders.chain``);
- ``VideoDecodeError``: the frames cannot be decoded cleanly (the message names the file
  and the frame).

"Frame ``i``" is the ``i``-th frame a player shows (see ``frame_index``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np

from dsm_lightning.data.frame_index import USABLE, FrameIndex


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded (names the file)."""


class Declined(Exception):
    """A decoder cannot deliver the wanted frames exactly; the chain asks the next one.

    Args:
        reason: Why, in words (said once per file).
        unusable: A ``frame_index`` reason code when the file's timestamps turned out
            unusable (a fact about the file: its index is marked and cached);
            ``frame_index.USABLE`` when only this decoder cannot deliver (it is not asked
            again for this file).
    """

    def __init__(self, reason: str, unusable: int = USABLE) -> None:
        super().__init__(reason)
        self.reason, self.unusable = reason, int(unusable)


class EncodedVideo(NamedTuple):
    """The encoded video a decoder reads.

    Attributes:
        path: File path (with ``data``: the name of the video in messages).
        data: The encoded file held in memory (e.g. read from a shard); None reads ``path``.
    """

    path: str
    data: bytes | None = None


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size after resizing so that the short side equals ``short_side`` (aspect kept).

    Args:
        width: Source width.
        height: Source height.
        short_side: Target length of the shorter side.

    Returns:
        ``(width, height)`` of the resized frame, both >= ``short_side``.
    """
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


class Geometry(NamedTuple):
    """Where the output frames come from: resize the frame to ``size``, then take ``crop``.

    Attributes:
        size: ``(width, height)`` after resizing.
        crop: ``(x, y, width, height)`` of the crop in the resized frame.
    """

    size: tuple[int, int]
    crop: tuple[int, int, int, int]

    @classmethod
    def of(cls, width: int, height: int, frame_size: int | None,
           crop_offset: tuple[float, float] = (0.5, 0.5)) -> Geometry:
        """Short side resized to ``frame_size`` and a square crop of that side.

        Args:
            width: Native frame width.
            height: Native frame height.
            frame_size: Short side after resizing and side of the crop; None keeps the
                native size and crops nothing.
            crop_offset: Relative crop position ``(x, y)`` in [0, 1] along the free extent
                (0.5 = centre).

        Returns:
            The geometry.
        """
        if frame_size is None:
            return cls((width, height), (0, 0, width, height))
        size = resized_size(width, height, frame_size)
        x = int(round(crop_offset[0] * (size[0] - frame_size)))
        y = int(round(crop_offset[1] * (size[1] - frame_size)))
        return cls(size, (x, y, frame_size, frame_size))


class FrameDecoder(ABC):
    """One way of decoding the frames of one file, frame-exactly (or declining).

    Constructing a decoder opens nothing; ``read`` opens what it needs and ``close``
    releases it (a closed decoder reopens on the next ``read``).

    Args:
        video: The encoded video.
        index: The file's frame index.
    """

    #: Name in messages (e.g. ``"PyAV"``).
    name: ClassVar[str] = ""
    #: True when the decoder finds frames by timestamp (asked only while the index is usable).
    needs_timestamps: ClassVar[bool] = True

    def __init__(self, video: EncodedVideo, index: FrameIndex) -> None:
        self.video, self.index = video, index

    @property
    def path(self) -> str:
        """The file path (or the name of an in-memory video) used in messages."""
        return self.video.path

    @abstractmethod
    def read(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """Decode frames ``wanted`` (sorted, distinct, in range), resized and cropped.

        Args:
            wanted: Display positions of the frames.
            geometry: Output resize and crop.

        Returns:
            ``{frame: uint8 array (crop height, crop width, 3)}`` for every wanted frame.

        Raises:
            Declined: This decoder cannot deliver the frames exactly.
            VideoDecodeError: A frame cannot be decoded cleanly (names file and frame).
        """

    def close(self) -> None:  # noqa: B027 - decoders that hold nothing open keep it empty
        """Release what the decoder holds open."""
