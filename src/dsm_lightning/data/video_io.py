"""PyAV decoding: probe a video file and decode the frames of a clip.

Only CPU-necessary work happens here: demux, decode the needed frames, resize with
libswscale (short side to ``frame_size``) and crop a square. Output is uint8.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter

#: Videos with fewer decodable frames than this are treated as bad input.
MIN_VIDEO_FRAMES = 3

#: File extensions the folder-per-class source treats as videos.
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".ogv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp",
)

# Frames at most this far past a seek target are tolerated when decoding reaches the end of a
# stream whose metadata over-counts frames (common for VFR / edit-listed files).
_TAIL_TOLERANCE = 2


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded (names the file)."""


class VideoInfo(NamedTuple):
    """Metadata of a video stream.

    Attributes:
        num_frames: Number of frames in the stream (exact for counted streams).
        fps: Average frame rate in frames per second.
        width: Frame width in pixels.
        height: Frame height in pixels.
    """

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: str) -> av.container.InputContainer:
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(f"{path}: cannot open ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    return container


def _stream_info(path: str, container: av.container.InputContainer) -> VideoInfo:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0
    num_frames = int(stream.frames or 0)
    if num_frames <= 0:
        # Matroska / WebM carry no frame count: count packets (demux only, no decoding).
        try:
            num_frames = sum(
                1 for packet in container.demux(stream) if packet.size and packet.pts is not None
            )
        except av.FFmpegError as err:
            raise VideoDecodeError(f"{path}: cannot demux ({err})") from err
        container.seek(0)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{path}: invalid frame size {width}x{height}")
    if num_frames < MIN_VIDEO_FRAMES:
        raise VideoDecodeError(
            f"{path}: only {num_frames} frame(s), at least {MIN_VIDEO_FRAMES} are needed"
        )
    return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height)


def probe_video(path: str) -> VideoInfo:
    """Read the frame count, frame rate and size of a video without decoding it.

    Args:
        path: Video file path.

    Returns:
        The stream's ``VideoInfo``.

    Raises:
        VideoDecodeError: The file is missing, empty, not a video, or has fewer than
            ``MIN_VIDEO_FRAMES`` frames.
    """
    container = _open(path)
    try:
        return _stream_info(path, container)
    finally:
        container.close()


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


class VideoReader:
    """An open video file: probe once, then decode clips from it.

    Use as a context manager. Frame ``i`` is the frame whose presentation time is
    ``i / fps`` after the stream start.

    Args:
        path: Video file path.
        threads: Decoder threads (0 lets FFmpeg choose; 1 inside data-loader workers).

    Raises:
        VideoDecodeError: See ``probe_video``.
    """

    def __init__(self, path: str, threads: int = 0) -> None:
        self.path = path
        self._container = _open(path)
        try:
            self.info = _stream_info(path, self._container)
        except BaseException:
            self._container.close()
            raise
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        # One reformatter per file: it keeps its libswscale context between frames, while
        # ``frame.reformat`` builds a new one per call (~25x slower on small frames).
        self._reformatter = VideoReformatter()
        self._time_base = float(self._stream.time_base)
        self._start_pts = self._stream.start_time or 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        self._container.close()

    def _frame_index(self, pts: int | None, fallback: int) -> int:
        if pts is None:
            return fallback
        return int(round((pts - self._start_pts) * self._time_base * self.info.fps))

    def _decode_from(self, first: int, wanted: set[int], last: int, size, crop):
        """Decode frames ``first..last``, converting only ``wanted``; returns {index: array}."""
        out: dict[int, np.ndarray] = {}
        sequential = first == 0
        if not sequential:
            target = self._start_pts + int(math.floor(first / self.info.fps / self._time_base))
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        counter = 0
        for frame in self._container.decode(self._stream):
            index = counter if sequential else self._frame_index(frame.pts, counter)
            counter += 1
            if not sequential and not out and index > first:
                return None  # landed past the target: caller retries from the start
            if index in wanted:
                out[index] = self._convert(frame, size, crop)
            if index >= last:
                break
        return out

    def _convert(self, frame: av.VideoFrame, size: tuple[int, int], crop: tuple[int, int, int]):
        width, height = size
        # One cached-context reformat converts and resizes (libswscale).
        array = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24"
        ).to_ndarray()
        x, y, side = crop
        return array[y : y + side, x : x + side]

    def read_frames(
        self,
        indices: Sequence[int],
        frame_size: int | None = None,
        crop_offset: tuple[float, float] = (0.5, 0.5),
    ) -> dict[int, np.ndarray]:
        """Decode the frames with the given indices, resized and square-cropped.

        Seeks to the key frame before the first index and decodes forward to the last one;
        only the wanted frames are converted to RGB.

        Args:
            indices: Frame indices in ``[0, num_frames)`` (any order, repeats allowed).
            frame_size: Short side after resizing and side of the square crop; None keeps the
                native size and crops nothing.
            crop_offset: Relative crop position ``(x, y)`` in [0, 1] along the free extent
                (0.5 = centre).

        Returns:
            ``{index: uint8 array (H, W, 3)}`` for every distinct requested index.

        Raises:
            VideoDecodeError: Decoding failed or frames are missing (truncated file).
        """
        wanted = set(int(i) for i in indices)
        info = self.info
        if frame_size is None:
            size, crop = (info.width, info.height), (0, 0, max(info.width, info.height))
            side_w, side_h = info.width, info.height
        else:
            size = resized_size(info.width, info.height, frame_size)
            x = int(round(crop_offset[0] * (size[0] - frame_size)))
            y = int(round(crop_offset[1] * (size[1] - frame_size)))
            crop = (x, y, frame_size)
            side_w = side_h = frame_size
        first, last = min(wanted), max(wanted)
        try:
            frames = self._decode_from(first, wanted, last, size, crop)
            if frames is None:
                self._container.seek(0)
                frames = self._decode_from(0, wanted, last, size, crop)
        except av.FFmpegError as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({err})") from err
        missing = wanted.difference(frames)
        if missing:
            decoded_last = max(frames) if frames else -1
            if frames and min(missing) > decoded_last and last - decoded_last <= _TAIL_TOLERANCE:
                for index in missing:  # metadata over-counted the tail by a frame or two
                    frames[index] = frames[decoded_last]
            else:
                raise VideoDecodeError(
                    f"{self.path}: truncated, frame {min(missing)} of {info.num_frames} "
                    "could not be decoded"
                )
        for index, array in frames.items():
            if array.shape[:2] != (side_h, side_w):
                raise VideoDecodeError(f"{self.path}: frame {index} has shape {array.shape}")
        return frames


def decode_clip(
    path: str,
    indices: Sequence[int],
    frame_size: int | None = None,
    crop_offset: tuple[float, float] = (0.5, 0.5),
    threads: int = 0,
) -> np.ndarray:
    """Decode one clip as a uint8 array.

    Args:
        path: Video file path.
        indices: Frame indices of the clip, in clip order (repeats allowed).
        frame_size: Short-side resize and square crop size; None keeps the native size.
        crop_offset: Relative crop position ``(x, y)`` in [0, 1].
        threads: Decoder threads (0 = FFmpeg's choice).

    Returns:
        uint8 array (T, H, W, 3), T = len(indices).

    Raises:
        VideoDecodeError: The file cannot be decoded or lacks requested frames.
    """
    with VideoReader(path, threads=threads) as reader:
        frames = reader.read_frames(indices, frame_size, crop_offset)
    return np.stack([frames[int(i)] for i in indices])
