"""What the PyAV decoders share: opening a container, and converting decoded frames."""

from __future__ import annotations

import io
import os
from abc import abstractmethod
from collections.abc import Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dsm_lightning._checks import check_int
from dsm_lightning.data.decoders.base import (
    EncodedVideo,
    FrameDecoder,
    Geometry,
    VideoDecodeError,
)
from dsm_lightning.data.frame_index import FrameIndex


def open_container(path: str, data: bytes | None = None) -> av.container.InputContainer:
    """Open a file, or the encoded video ``data`` held in memory (``path`` names it).

    Raises:
        VideoDecodeError: The file is missing, empty, not a container, or holds no video.
    """
    if data is None and not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    if (len(data) if data is not None else os.path.getsize(path)) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(io.BytesIO(data) if data is not None else path,
                            metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(f"{path}: cannot open ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    return container


class PyAVDecoder(FrameDecoder):
    """A ``FrameDecoder`` over one PyAV container of the file (opened on first read).

    Args:
        video: The encoded video.
        index: The file's frame index.
        threads: Decoder threads (0 lets FFmpeg choose).
        codec_options: Options given to FFmpeg's decoder (e.g. ``{"flags":
            "+output_corrupt"}`` hands out the frames it flags corrupt; they are still never
            returned); None gives none.

    Raises:
        ValueError: ``threads`` is negative.
    """

    name = "PyAV"

    def __init__(self, video: EncodedVideo, index: FrameIndex, threads: int = 0,
                 codec_options: Mapping[str, str] | None = None) -> None:
        super().__init__(video, index)
        self.threads = check_int("threads", threads, minimum=0)
        self.codec_options = dict(codec_options or {})
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._fresh = False  # container just opened: nothing demuxed yet
        # One reformatter per file: it keeps its libswscale context between frames, while
        # ``frame.reformat`` builds a new one per call (~25x slower on small frames).
        self._reformatter = VideoReformatter()

    def read(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """See ``FrameDecoder.read``; FFmpeg errors become ``VideoDecodeError``."""
        if self._container is None:
            self._reopen()
        try:
            return self._decode(wanted, geometry)
        except av.FFmpegError as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({err})") from err

    @abstractmethod
    def _decode(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """``read`` on the open container (may raise ``av.FFmpegError``)."""

    def close(self) -> None:
        """Close the container."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _reopen(self) -> None:
        self.close()
        self._container = open_container(self.video.path, self.video.data)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        if self.codec_options:
            stream.codec_context.options = dict(self.codec_options)
        self._stream = stream
        self._fresh = True

    def _from_start(self) -> None:
        """Make the next demux start at the beginning of the file."""
        if not self._fresh:
            self._reopen()
        self._fresh = False

    def _convert(self, frame: av.VideoFrame, geometry: Geometry) -> np.ndarray:
        """uint8 (crop height, crop width, 3) of a decoded frame."""
        width, height = geometry.size
        # One cached-context reformat converts and resizes (libswscale).
        array = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24"
        ).to_ndarray()
        x, y, w, h = geometry.crop
        return array[y : y + h, x : x + w]
