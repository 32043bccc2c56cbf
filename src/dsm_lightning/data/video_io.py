"""Frame-exact decoding: probe a video file and decode the frames of a clip.

"Frame ``i``" is the ``i``-th frame a player shows: the frame with the ``i``-th smallest
presentation timestamp (see ``frame_index``). A clip is read by seeking to the last key
frame at or before its first frame and decoding forward, picking frames by exact
timestamp. Frames the decoder flags corrupt, and frames of a group of pictures in which
decoding failed, are never returned: decoding restarts from an earlier key frame when the
seek may be the cause, and otherwise the clip fails with a ``VideoDecodeError`` naming the
file and the frame. Files whose timestamps are unusable are decoded sequentially from the
start (said once per file).

Two backends: PyAV (default, always installed) and torchcodec (``decoder="torchcodec"``,
optional: ``pip install dsm-lightning[torchcodec]`` plus FFmpeg's shared libraries).
Only CPU-necessary work happens here: demux, decode the needed frames, resize (short side
to ``frame_size``) and crop a square. Output is uint8.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dsm_lightning._checks import check_choice
from dsm_lightning.data import frame_index as fi
from dsm_lightning.data.frame_index import CACHE, FrameIndex

log = logging.getLogger(__name__)

#: Videos with fewer decodable frames than this are treated as bad input.
MIN_VIDEO_FRAMES = 3

#: File extensions the folder-per-class source treats as videos.
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".ogv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
    ".3gp",
)

#: Decoding backends.
DECODERS = ("pyav", "torchcodec")

# Options given to FFmpeg's decoder (tests set output_corrupt here to check that frames
# flagged corrupt are discarded even when the decoder hands them out).
_CODEC_OPTIONS: dict[str, str] = {}


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded (names the file)."""


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


def _open(path: str, data: bytes | None = None) -> av.container.InputContainer:
    """Open a file, or the encoded video ``data`` held in memory (``path`` names it)."""
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


# ----------------------------------------------------------------------------- the index


def _build_index(path: str, data: bytes | None = None) -> FrameIndex:
    """Demux every packet of the first video stream (no decoding) into a ``FrameIndex``."""
    start = time.perf_counter()
    container = _open(path, data)
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
    try:
        key = fi.file_key(path)
    except OSError as err:
        raise VideoDecodeError(f"{path}: no such file") from err
    directory = index_dir if index_dir is not None else fi.default_index_dir()
    index = CACHE.get(key, directory)
    if index is None:
        index = _build_index(path)
        CACHE.put(key, index, directory)
    return _long_enough(path, index)


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


def check_decoder(decoder: str) -> None:
    """Raise ``ValueError`` when ``decoder`` is unknown or its backend cannot be loaded."""
    check_choice("decoder", decoder, DECODERS)
    if decoder == "torchcodec":
        from dsm_lightning.data import torchcodec_backend

        reason = torchcodec_backend.unavailable_reason()
        if reason:
            raise ValueError(f"decoder='torchcodec' is not available: {reason}")


class _Geometry(NamedTuple):
    size: tuple[int, int]  # (width, height) after resizing
    crop: tuple[int, int, int, int]  # x, y, crop width, crop height


def _geometry(info: VideoInfo, frame_size: int | None, crop_offset: tuple[float, float]):
    if frame_size is None:
        return _Geometry((info.width, info.height), (0, 0, info.width, info.height))
    size = resized_size(info.width, info.height, frame_size)
    x = int(round(crop_offset[0] * (size[0] - frame_size)))
    y = int(round(crop_offset[1] * (size[1] - frame_size)))
    return _Geometry(size, (x, y, frame_size, frame_size))


class _Outcome(NamedTuple):
    """Result of one decoding pass from a key frame."""

    frames: dict[int, np.ndarray]
    problem: str = ""  # why the clip cannot be returned ('' = fine)
    near_start: bool = False  # the problem lies in the first group of pictures of the pass
    unusable: int = fi.USABLE  # timestamps found unusable (reason code)


_announced: set[str] = set()


def _announce_once(path: str, message: str) -> None:
    if path not in _announced:
        _announced.add(path)
        log.warning("%s: %s", path, message)


class VideoReader:
    """An open video file: indexed once, then decode clips from it frame-exactly.

    Use as a context manager. Frame ``i`` is the ``i``-th frame a player shows (the frame
    with the ``i``-th smallest presentation timestamp; see the module docstring).

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

    Raises:
        VideoDecodeError: See ``probe_video``.
        ValueError: Unknown or unavailable ``decoder``, or ``decoder="torchcodec"`` with
            ``data``.
    """

    def __init__(
        self, path: str, threads: int = 0, decoder: str = "pyav", index_dir: str | None = None,
        data: bytes | None = None, index: FrameIndex | None = None,
    ) -> None:
        check_decoder(decoder)
        if data is not None and decoder != "pyav":
            raise ValueError(f"decoder={decoder!r} reads files; in-memory videos decode with "
                             "decoder='pyav'")
        self.path, self.threads, self.decoder = path, threads, decoder
        self._index_dir = index_dir
        self._data = data
        if data is None:
            self.index = load_frame_index(path, index_dir)
        else:
            self.index = _long_enough(path, index if index is not None else _build_index(path, data))
        self.info = _info(self.index)
        self._container: av.container.InputContainer | None = None
        self._fresh = False  # container just opened: nothing demuxed yet
        # One reformatter per file: it keeps its libswscale context between frames, while
        # ``frame.reformat`` builds a new one per call (~25x slower on small frames).
        self._reformatter = VideoReformatter()
        self._torchcodec = None
        if decoder == "torchcodec":
            from dsm_lightning.data import torchcodec_backend

            if not torchcodec_backend.declined(path):
                self._torchcodec = torchcodec_backend.TorchcodecFrames(path, self.index, threads)
        if self._torchcodec is None:
            self._reopen()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- public reading ---------------------------------------------------------------------

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
        geometry = _geometry(self.info, frame_size, crop_offset)
        frames = None
        if self._torchcodec is not None and self.index.usable:
            frames = self._read_torchcodec(wanted, geometry)
        if frames is None:
            frames = self._read_pyav(wanted, geometry)
        x, y, w, h = geometry.crop
        for index, array in frames.items():
            if array.shape != (h, w, 3):
                raise VideoDecodeError(f"{self.path}: frame {index} has shape {array.shape}")
        return frames

    # -- torchcodec -------------------------------------------------------------------------

    def _read_torchcodec(self, wanted: list[int], geometry: _Geometry):
        from dsm_lightning.data import torchcodec_backend

        try:
            native = self._torchcodec.read(wanted)
        except torchcodec_backend.Declined as err:
            _announce_once(self.path, f"torchcodec cannot deliver exact frames ({err}); "
                                      "decoding this file with PyAV")
            self._torchcodec = None
            return None
        clip = torchcodec_backend.resize_crop(native, geometry.size, geometry.crop)
        return dict(zip(wanted, clip))

    # -- PyAV -------------------------------------------------------------------------------

    def _reopen(self) -> None:
        self.close()
        self._container = _open(self.path, self._data)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        if _CODEC_OPTIONS:
            stream.codec_context.options = dict(_CODEC_OPTIONS)
        self._stream = stream
        self._fresh = True

    def _convert(self, frame: av.VideoFrame, geometry: _Geometry) -> np.ndarray:
        width, height = geometry.size
        # One cached-context reformat converts and resizes (libswscale).
        array = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24"
        ).to_ndarray()
        x, y, w, h = geometry.crop
        return array[y : y + h, x : x + w]

    def _read_pyav(self, wanted: list[int], geometry: _Geometry) -> dict[int, np.ndarray]:
        if self._container is None:
            self._reopen()
        try:
            if self.index.usable:
                frames = self._read_exact(wanted, geometry)
                if frames is not None:
                    return frames
            return self._read_sequential(wanted, geometry)
        except av.FFmpegError as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({err})") from err

    def _read_exact(self, wanted: list[int], geometry: _Geometry) -> dict[int, np.ndarray] | None:
        """Seek-and-pick by timestamp; None when the timestamps turn out unusable."""
        key = self.index.key_for_frame(wanted[0])
        step = 1
        while True:
            outcome = self._decode_from_key(key, wanted, geometry)
            if outcome.unusable != fi.USABLE:
                self._mark_unusable(outcome.unusable)
                return None
            if not outcome.problem:
                return outcome.frames
            if not (outcome.near_start and key > 0):
                raise VideoDecodeError(outcome.problem)
            key, step = max(0, key - step), step * 2  # the seek may be the cause: go back

    def _mark_unusable(self, reason: int) -> None:
        self.index = self.index.with_reason(reason)
        if self._data is not None:  # no file to key a cache entry on
            _announce_once(self.path, f"{self.index.reason_text}; decoding it sequentially")
            return
        try:
            key = fi.file_key(self.path)
        except OSError:
            return
        directory = self._index_dir if self._index_dir is not None else fi.default_index_dir()
        CACHE.put(key, self.index, directory)
        _announce_once(self.path, f"{self.index.reason_text}; decoding this file sequentially "
                                  "from its start")

    def _seek_key(self, key: int) -> tuple[int, Iterator[av.Packet]]:
        """Position the demuxer on a key frame at or before key frame ``key``.

        Demuxers seek on pts (mp4, mkv), on dts (avi) or by bisecting the byte stream
        (mpeg-ps), so the landing point is checked: packets before the first key packet are
        dropped, a landing past the key frame is retried with its dts, then from the
        start of the file (reopened).

        Returns:
            ``(pts of the key frame landed on, packet iterator starting with it)``.
        """
        index = self.index
        decode_position = int(index.key_decode[key])
        targets = [] if key == 0 and self._fresh else [int(index.pts[decode_position])]
        dts = int(index.dts[decode_position])
        if targets and dts != fi.NO_TIMESTAMP and dts < targets[0]:
            targets.append(dts)
        limit = int(index.key_pts[key])
        for target in targets:
            self._fresh = False
            try:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue  # not seekable: read from the start
            landed = self._first_key_packet(limit)
            if landed is not None:
                return landed
        if not self._fresh:
            self._reopen()
        self._fresh = False
        landed = self._first_key_packet(None)
        if landed is None:
            raise VideoDecodeError(f"{self.path}: no key frame found from the start")
        return landed

    def _first_key_packet(self, limit: int | None):
        packets = self._container.demux(self._stream)
        for packet in packets:
            if not packet.size:
                return None  # end of file before any key frame
            if not packet.is_keyframe or packet.pts is None:
                continue
            if limit is not None and packet.pts > limit:
                return None  # landed past the key frame
            return packet.pts, itertools.chain((packet,), packets)
        return None

    def _decode_from_key(self, key: int, wanted: list[int], geometry: _Geometry) -> _Outcome:
        """Decode forward from key frame ``key`` until every wanted frame has been seen."""
        index = self.index
        run_pts, packets = self._seek_key(key)
        run_first = index.frame_of_pts(run_pts)
        if run_first < 0:
            return _Outcome({}, unusable=fi.UNKNOWN_PTS)
        later_keys = index.key_pts[index.key_pts > run_pts]
        first_gop_end = index.frame_of_pts(int(later_keys[0])) if later_keys.size else len(
            index.pts)
        wanted_set = set(wanted)
        # A gap in the decoder's output (frames dropped after the seek, or timestamps that
        # are really decode order) is checked by decoding on to the next key frame.
        after_last = index.key_pts[index.key_pts > index.display_pts[wanted[-1]]]
        check_until = index.frame_of_pts(int(after_last[0])) if after_last.size else len(index.pts)
        frames: dict[int, np.ndarray] = {}
        damaged: list[int] = []  # decode positions of packets / frames that failed
        expected, gap = run_first, False
        for packet in packets:
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                if packet.pts is None or packet.pts >= run_pts:  # not a leading frame
                    position = -1 if packet.pts is None else index.frame_of_pts(packet.pts)
                    if position < 0:  # no timestamp: blame the group being decoded
                        position = max(expected - 1, run_first)
                    damaged.append(int(index.decode_position[position]))
                continue
            for frame in decoded:
                pts = frame.pts
                if pts is None:
                    return _Outcome({}, unusable=fi.FRAME_WITHOUT_PTS)
                if pts < run_pts:
                    continue  # leading frame of an open GOP: references data before the seek
                position = index.frame_of_pts(pts)
                if position < 0:
                    return _Outcome({}, unusable=fi.UNKNOWN_PTS)
                if position < expected:
                    return _Outcome({}, unusable=fi.OUT_OF_ORDER)
                gap = gap or position > expected
                expected = position + 1
                if frame.is_corrupt:
                    damaged.append(int(index.decode_position[position]))
                elif position in wanted_set:
                    frames[position] = self._convert(frame, geometry)
            if expected > wanted[-1] and (not gap or expected > check_until):
                break
        spoiled: set[int] = set()
        near_start = False
        for position in damaged:
            gop = index.gop_frames(position)
            spoiled.update(gop.tolist())
            near_start = near_start or int(gop[0]) <= run_first
        bad = sorted(wanted_set & spoiled)
        missing = sorted(wanted_set - spoiled - set(frames))
        if bad:
            gop = index.gop_frames(int(index.decode_position[bad[0]]))
            problem = (f"{self.path}: frame {bad[0]} of {index.num_frames} cannot be decoded "
                       f"cleanly (decoding errors in frames {int(gop[0])}-{int(gop[-1])})")
        elif missing:
            problem = (f"{self.path}: frame {missing[0]} of {index.num_frames} was not "
                       "returned by the decoder (damaged or truncated file)")
        else:
            return _Outcome(frames)
        near_start = near_start or any(i < first_gop_end for i in missing)
        return _Outcome(frames, problem, near_start)

    def _read_sequential(self, wanted: list[int], geometry: _Geometry) -> dict[int, np.ndarray]:
        """Decode from the start, counting frames in output order (unusable timestamps)."""
        if not self._fresh:
            self._reopen()
        self._fresh = False
        wanted_set = set(wanted)
        frames: dict[int, np.ndarray] = {}
        spoiled: list[tuple[int, int]] = []  # [start, stop) output positions
        position, gop_start, damaged = -1, 0, False
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                damaged = True
                continue
            for frame in decoded:
                position += 1
                if frame.key_frame and position > gop_start:
                    if damaged:
                        spoiled.append((gop_start, position))
                    gop_start, damaged = position, False
                if frame.is_corrupt:
                    damaged = True
                elif position in wanted_set:
                    frames[position] = self._convert(frame, geometry)
            if position >= wanted[-1]:
                break
        if damaged:
            spoiled.append((gop_start, max(position + 1, wanted[-1] + 1)))
        for index in wanted:
            for start, stop in spoiled:
                if start <= index < stop:
                    raise VideoDecodeError(
                        f"{self.path}: frame {index} of {self.info.num_frames} cannot be "
                        f"decoded cleanly (decoding errors in frames {start}-{stop - 1})"
                    )
            if index not in frames:
                raise VideoDecodeError(
                    f"{self.path}: frame {index} of {self.info.num_frames} was not returned "
                    "by the decoder (damaged or truncated file)"
                )
        return frames


def decode_clip(
    path: str,
    indices: Sequence[int],
    frame_size: int | None = None,
    crop_offset: tuple[float, float] = (0.5, 0.5),
    threads: int = 0,
    decoder: str = "pyav",
) -> np.ndarray:
    """Decode one clip as a uint8 array.

    Args:
        path: Video file path.
        indices: Frame indices of the clip, in clip order (repeats allowed).
        frame_size: Short-side resize and square crop size; None keeps the native size.
        crop_offset: Relative crop position ``(x, y)`` in [0, 1].
        threads: Decoder threads (0 = FFmpeg's choice).
        decoder: ``"pyav"`` or ``"torchcodec"``.

    Returns:
        uint8 array (T, H, W, 3), T = len(indices).

    Raises:
        VideoDecodeError: The file cannot be decoded or a requested frame cannot be decoded
            cleanly.
        ValueError: Unknown or unavailable ``decoder``.
    """
    with VideoReader(path, threads=threads, decoder=decoder) as reader:
        frames = reader.read_frames(indices, frame_size, crop_offset)
    return np.stack([frames[int(i)] for i in indices])
