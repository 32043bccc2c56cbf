"""Frame-exact decoding: probe a video file and decode the frames of a clip.

"Frame ``i``" is the ``i``-th frame a player shows: the frame with the ``i``-th smallest
presentation timestamp (see ``frame_index``). The frame index of a file is built once from
its demuxed packets (no decoding) and cached on disk; ``VideoReader`` then asks the file's
decoders in order (the one fallback chain, ``decoders.chain``): PyAV seeks to the last key
frame at or before a clip and decodes forward, picking frames by exact timestamp
(``decoders.pyav_exact``); files whose timestamps are unusable are decoded sequentially
from the start (said once per file). Frames the decoder flags corrupt, and frames of a
group of pictures in which decoding failed, are never returned: the clip fails with a
``VideoDecodeError`` naming the file and the frame.

Two backends: PyAV (default, always installed) and torchcodec (``decoder="torchcodec"``,
optional: ``pip install dsm-lightning[torchcodec]`` plus FFmpeg's shared libraries; files
it cannot deliver exactly are decoded with PyAV, said once per file). Only CPU-necessary
work happens here: demux, decode the needed frames, resize (short side to ``frame_size``)
and crop a square. Output is uint8.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple

import av
import numpy as np

from dsm_lightning._checks import check_int
from dsm_lightning.data import frame_index as fi
from dsm_lightning.data.decoders.base import (
    EncodedVideo,
    Geometry,
    VideoDecodeError,
    resized_size,
)
from dsm_lightning.data.decoders.chain import (
    DECODERS,
    DecodeNotices,
    DecoderChain,
    check_decoder,
    create_decoders,
)
from dsm_lightning.data.decoders.pyav_file import open_container
from dsm_lightning.data.frame_index import CACHE, FrameIndex

__all__ = [
    "DECODERS", "MIN_VIDEO_FRAMES", "VIDEO_EXTENSIONS", "VideoDecodeError", "VideoInfo",
    "VideoReader", "check_decoder", "decode_clip", "load_frame_index", "probe_video",
    "resized_size",
]

log = logging.getLogger(__name__)

#: Videos with fewer decodable frames than this are treated as bad input.
MIN_VIDEO_FRAMES = 3

#: File extensions the folder-per-class source treats as videos.
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".ogv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp",
)


class VideoInfo(NamedTuple):
    """Metadata of a video stream.

    Attributes:
        num_frames: Number of frames (from the frame index: exact).
        fps: Average frame rate in frames per second.
        width: Frame width in pixels.
        height: Frame height in pixels.
    """

    num_frames: int
    fps: float
    width: int
    height: int


# ----------------------------------------------------------------------------- the index


def _build_index(path: str, data: bytes | None = None) -> FrameIndex:
    """Demux every packet of the first video stream (no decoding) into a ``FrameIndex``."""
    start = time.perf_counter()
    container = open_container(path, data)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoDecodeError(f"{path}: invalid frame size {width}x{height}")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        packets = []
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    packets.append((packet.pts, packet.dts, packet.is_keyframe))
        except av.FFmpegError as err:
            if not packets:
                raise VideoDecodeError(f"{path}: cannot demux ({err})") from err
            log.warning("%s: demuxing stopped after %d packets (%s); indexing those",
                        path, len(packets), err)
        index = FrameIndex.from_packets(packets, stream.time_base or 1, float(rate or 25.0),
                                        width, height, time.perf_counter() - start)
    finally:
        container.close()
    if not index.usable and index.num_frames >= MIN_VIDEO_FRAMES:
        log.warning("%s: %s; decoding this file sequentially from its start",
                    path, index.reason_text)
    return index


class _CachedIndex(NamedTuple):
    index: FrameIndex
    key: tuple[str, int, int]  # frame_index.file_key, computed once
    directory: str | None  # disk cache folder

    def store(self, index: FrameIndex) -> None:
        """Replace the cached index of the file (e.g. marked unusable)."""
        CACHE.put(self.key, index, self.directory)


def _cached_index(path: str, index_dir: str | None) -> _CachedIndex:
    """The file's index with its cache key (memoised, else read from disk, else built)."""
    try:
        key = fi.file_key(path)
    except OSError as err:
        raise VideoDecodeError(f"{path}: no such file") from err
    directory = index_dir if index_dir is not None else fi.default_index_dir()
    index = CACHE.get(key, directory)
    if index is None:
        index = _build_index(path)
        CACHE.put(key, index, directory)
    return _CachedIndex(_long_enough(path, index), key, directory)


def load_frame_index(path: str, index_dir: str | None = None) -> FrameIndex:
    """The frame index of a video: memoised, else read from the disk cache, else built.

    Args:
        path: Video file path.
        index_dir: Disk cache folder (None = ``frame_index.default_index_dir()``:
            ``$DSM_LIGHTNING_FRAME_INDEX`` or ``~/.cache/dsm_lightning/frame_index``).

    Returns:
        The file's ``FrameIndex``.

    Raises:
        VideoDecodeError: The file is missing, empty, not a video, or has fewer than
            ``MIN_VIDEO_FRAMES`` frames.
    """
    return _cached_index(path, index_dir).index


def _long_enough(path: str, index: FrameIndex) -> FrameIndex:
    if index.num_frames < MIN_VIDEO_FRAMES:
        raise VideoDecodeError(
            f"{path}: only {index.num_frames} frame(s), at least {MIN_VIDEO_FRAMES} are needed"
        )
    return index


def _info(index: FrameIndex) -> VideoInfo:
    return VideoInfo(index.num_frames, index.fps, index.width, index.height)


def probe_video(path: str, index_dir: str | None = None) -> VideoInfo:
    """Frame count, frame rate and size of a video (from its frame index, no decoding).

    Args:
        path: Video file path.
        index_dir: Frame index cache folder (see ``load_frame_index``).

    Returns:
        The stream's ``VideoInfo``.

    Raises:
        VideoDecodeError: The file is missing, empty, not a video, or has fewer than
            ``MIN_VIDEO_FRAMES`` frames.
    """
    return _info(load_frame_index(path, index_dir))


class VideoReader:
    """An open video file: indexed once, then decode clips from it frame-exactly.

    A thin facade over the file's ``DecoderChain``. Use as a context manager. Frame ``i``
    is the ``i``-th frame a player shows (see the module docstring).

    Args:
        path: Video file path (with ``data``: the name used in messages).
        threads: Decoder threads (0 lets FFmpeg choose; 1 inside data-loader workers).
        decoder: ``"pyav"`` or ``"torchcodec"`` (frames the torchcodec backend cannot
            deliver at their exact timestamps are decoded with PyAV, said once per file).
        index_dir: Frame index cache folder (see ``load_frame_index``).
        data: The encoded file held in memory (e.g. read from a shard), decoded with PyAV
            exactly as the file would be; None reads ``path``.
        index: The frame index of ``data`` (as ``load_frame_index`` built it from the file);
            None demuxes ``data`` to build it.
        codec_options: Options given to FFmpeg's decoder by the PyAV decoders (e.g.
            ``{"flags": "+output_corrupt"}``); None gives none.
        notices: Where declines and once-per-file warnings are remembered, shared by the
            readers of one opener (None = this reader's own).

    Raises:
        VideoDecodeError: See ``probe_video``.
        ValueError: Unknown or unavailable ``decoder``, ``decoder="torchcodec"`` with
            ``data``, or negative ``threads``.
    """

    def __init__(
        self, path: str, threads: int = 0, decoder: str = "pyav", index_dir: str | None = None,
        data: bytes | None = None, index: FrameIndex | None = None,
        codec_options: Mapping[str, str] | None = None, notices: DecodeNotices | None = None,
    ) -> None:
        check_decoder(decoder)
        check_int("threads", threads, minimum=0)
        if data is not None and decoder != "pyav":
            raise ValueError(f"decoder={decoder!r} reads files; in-memory videos decode with "
                             "decoder='pyav'")
        self.path, self.threads, self.decoder = path, threads, decoder
        file_id: Hashable | None = None
        store = None
        if data is None:
            cached = _cached_index(path, index_dir)
            index, file_id, store = cached.index, cached.key, cached.store
        else:
            index = _long_enough(path, index if index is not None else _build_index(path, data))
        self.info = _info(index)
        decoders = create_decoders(decoder, EncodedVideo(path, data), index, threads,
                                   codec_options)
        self._chain = DecoderChain(decoders, notices, file_id, store)

    @property
    def index(self) -> FrameIndex:
        """The file's frame index (marked unusable once decoding finds it so)."""
        return self._chain.index

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        self._chain.close()

    def frame_range(self, start_sec: float, end_sec: float) -> tuple[int, int]:
        """Frames shown in ``[start_sec, end_sec)`` seconds after the first frame.

        Args:
            start_sec: Segment start in seconds.
            end_sec: Segment end in seconds.

        Returns:
            ``(first frame, number of frames)``, at least one frame, inside the video.
        """
        times = self.index.frame_times()
        eps = 1e-6
        first = min(len(times) - 1, int(np.searchsorted(times, start_sec - eps)))
        stop = min(len(times), int(np.searchsorted(times, end_sec - eps)))
        return first, max(1, stop - first)

    def read_frames(
        self,
        indices: Sequence[int],
        frame_size: int | None = None,
        crop_offset: tuple[float, float] = (0.5, 0.5),
    ) -> dict[int, np.ndarray]:
        """Decode the frames with the given indices, resized and square-cropped.

        Args:
            indices: Frame indices in ``[0, num_frames)`` (any order, repeats allowed).
            frame_size: Short side after resizing and side of the square crop; None keeps the
                native size and crops nothing.
            crop_offset: Relative crop position ``(x, y)`` in [0, 1] along the free extent
                (0.5 = centre).

        Returns:
            ``{index: uint8 array (H, W, 3)}`` for every distinct requested index.

        Raises:
            VideoDecodeError: An index is out of range, or a requested frame cannot be
                decoded cleanly (names the file and the frame).
        """
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            return {}
        n = self.info.num_frames
        if wanted[0] < 0 or wanted[-1] >= n:
            bad = wanted[0] if wanted[0] < 0 else wanted[-1]
            raise VideoDecodeError(f"{self.path}: frame {bad} is out of range (0..{n - 1})")
        geometry = Geometry.of(self.info.width, self.info.height, frame_size, crop_offset)
        frames = self._chain.read(wanted, geometry)
        x, y, w, h = geometry.crop
        for index, array in frames.items():
            if array.shape != (h, w, 3):
                raise VideoDecodeError(f"{self.path}: frame {index} has shape {array.shape}")
        return frames


def decode_clip(
    path: str,
    indices: Sequence[int],
    frame_size: int | None = None,
    crop_offset: tuple[float, float] = (0.5, 0.5),
    threads: int = 0,
    decoder: str = "pyav",
    codec_options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Decode one clip as a uint8 array.

    Args:
        path: Video file path.
        indices: Frame indices of the clip, in clip order (repeats allowed).
        frame_size: Short-side resize and square crop size; None keeps the native size.
        crop_offset: Relative crop position ``(x, y)`` in [0, 1].
        threads: Decoder threads (0 = FFmpeg's choice).
        decoder: ``"pyav"`` or ``"torchcodec"``.
        codec_options: FFmpeg decoder options of the PyAV decoders (see ``VideoReader``).

    Returns:
        uint8 array (T, H, W, 3), T = len(indices).

    Raises:
        VideoDecodeError: The file cannot be decoded or a requested frame cannot be decoded
            cleanly.
        ValueError: Unknown or unavailable ``decoder``.
    """
    with VideoReader(path, threads=threads, decoder=decoder,
                     codec_options=codec_options) as reader:
        frames = reader.read_frames(indices, frame_size, crop_offset)
    return np.stack([frames[int(i)] for i in indices])
