"""Frame index of a video file: every frame's presentation timestamp and the key frames.

"Frame ``i``" of a video is the ``i``-th frame a player shows, i.e. the frame with the
``i``-th smallest presentation timestamp (pts). The index is built from the demuxed packets
alone (no decoding): one packet per frame, in decode order, with its pts, its decode
timestamp (dts) and its key-frame flag. It is built once per file, in whichever process
first needs it, memoised in that process and written to an on-disk cache keyed by
(absolute path, size, modification time), so data-loader workers and later runs reuse it.

This module holds the data structure and the cache; ``video_io`` demuxes and decodes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

log = logging.getLogger(__name__)

#: Environment variable naming the on-disk index cache folder; ``off`` disables the disk
#: cache (the in-process memo stays).
INDEX_DIR_ENV = "DSM_LIGHTNING_FRAME_INDEX"

#: Marks a missing decode timestamp in ``FrameIndex.dts``.
NO_TIMESTAMP = np.iinfo(np.int64).min

# Why a file's timestamps cannot be used for exact seeking (stored as a code on disk).
REASONS = (
    "",
    "packets without presentation timestamps",
    "several frames share a presentation timestamp",
    "the decoder returns frames out of presentation order (timestamps are decode order or "
    "packed B-frames)",
    "the decoder returns frames whose timestamps are not in the demuxed packets",
    "the decoder returns frames without timestamps",
)
USABLE, MISSING_PTS, DUPLICATE_PTS, OUT_OF_ORDER, UNKNOWN_PTS, FRAME_WITHOUT_PTS = range(6)

_FORMAT = 2  # bump when the on-disk layout or the indexing rules change
_HEADER = 12
# The memo holds at most this many frames over all files (~60 bytes each: a few hundred
# thousand short clips, or a few dozen films).
_MEMO_FRAMES = 2_000_000


class FrameIndex:
    """Packets of one video stream in decode order, and what follows from them.

    Args:
        pts: (N,) int64 presentation timestamps, decode order, in ``time_base`` units.
        dts: (N,) int64 decode timestamps (``NO_TIMESTAMP`` where missing).
        keyframe: (N,) bool key-frame flags.
        time_base: Stream time base in seconds.
        fps: Average frame rate in frames per second.
        width: Frame width in pixels.
        height: Frame height in pixels.
        reason: Code (index into ``REASONS``) of why timestamps are unusable; 0 = usable.
        build_seconds: Time spent demuxing when the index was built.
    """

    def __init__(
        self,
        pts: np.ndarray,
        dts: np.ndarray,
        keyframe: np.ndarray,
        time_base: Fraction,
        fps: float,
        width: int,
        height: int,
        reason: int = USABLE,
        build_seconds: float = 0.0,
    ) -> None:
        self.pts = np.asarray(pts, dtype=np.int64)
        self.dts = np.asarray(dts, dtype=np.int64)
        self.keyframe = np.asarray(keyframe, dtype=bool)
        self.time_base, self.fps = Fraction(time_base), float(fps)
        self.width, self.height = int(width), int(height)
        self.build_seconds = float(build_seconds)
        if reason == USABLE and len(self.pts) and np.unique(self.pts).size != len(self.pts):
            reason = DUPLICATE_PTS
        self.reason = int(reason)
        # Display order: frame i is the packet with the i-th smallest pts.
        self.decode_position = np.argsort(self.pts, kind="stable")  # display -> decode
        self.display_pts = self.pts[self.decode_position]
        self.display_position = np.empty_like(self.decode_position)  # decode -> display
        self.display_position[self.decode_position] = np.arange(len(self.pts))
        self.key_decode = np.flatnonzero(self.keyframe)  # decode positions of key frames
        self.key_pts = self.pts[self.key_decode]
        self._position: dict[int, int] | None = None

    @classmethod
    def from_packets(
        cls,
        packets: Sequence[tuple[int | None, int | None, bool]],
        time_base: Fraction,
        fps: float,
        width: int,
        height: int,
        build_seconds: float = 0.0,
    ) -> FrameIndex:
        """Index from demuxed ``(pts, dts, is_keyframe)`` of the non-empty packets.

        Packets before the first key frame and leading packets of the first key frame
        (pts below it: they reference data before the file start) are not frames a player
        can show and are left out.
        """
        reason = USABLE
        first_key = next((i for i, p in enumerate(packets) if p[2]), None)
        if first_key is None:
            kept = list(packets)
        else:
            kept = list(packets[first_key:])
            key_pts = kept[0][0]
            if key_pts is not None:
                kept = [p for p in kept if p[0] is None or p[0] >= key_pts]
        if any(p[0] is None for p in kept):
            reason = MISSING_PTS
        pts = [p[0] if p[0] is not None else i for i, p in enumerate(kept)]
        dts = [p[1] if p[1] is not None else NO_TIMESTAMP for p in kept]
        keys = [bool(p[2]) for p in kept]
        if keys and not keys[0]:
            keys[0] = True  # no key frame flagged at all: the only entry point is the start
        return cls(np.array(pts, np.int64), np.array(dts, np.int64), np.array(keys, bool),
                   time_base, fps, width, height, reason, build_seconds)

    # -- what follows from the packets ------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """Number of frames (N)."""
        return len(self.pts)

    @property
    def usable(self) -> bool:
        """True when frames can be found by exact timestamp after a seek."""
        return self.reason == USABLE

    @property
    def reason_text(self) -> str:
        """Why the timestamps are unusable ('' when usable)."""
        return REASONS[self.reason]

    def with_reason(self, reason: int) -> FrameIndex:
        """A copy marked with another ``reason`` code."""
        return FrameIndex(self.pts, self.dts, self.keyframe, self.time_base, self.fps,
                          self.width, self.height, reason, self.build_seconds)

    def frame_of_pts(self, pts: int) -> int:
        """Display position of the frame with timestamp ``pts``, -1 when there is none."""
        if self._position is None:  # built on first use: one dict lookup per decoded frame
            self._position = {int(p): i for i, p in enumerate(self.display_pts)}
        return self._position.get(pts, -1)

    def key_for_frame(self, frame: int) -> int:
        """Index into ``key_pts`` of the last key frame whose pts <= that of ``frame``."""
        target = self.display_pts[frame]
        below = np.flatnonzero(self.key_pts <= target)
        return int(below[-1]) if below.size else 0

    def gop_frames(self, decode_position: int) -> np.ndarray:
        """Display positions of every frame a damaged packet may spoil.

        That is the packet's group of pictures in decode order (from its key frame to the
        next one) plus the next key frame's leading frames (decoded after it, shown before
        it: open GOPs reference the previous group).
        """
        k = int(np.searchsorted(self.key_decode, decode_position, side="right")) - 1
        start = int(self.key_decode[k]) if k >= 0 else 0
        stop = int(self.key_decode[k + 1]) if k + 1 < len(self.key_decode) else len(self.pts)
        spoiled = list(range(start, stop))
        if stop < len(self.pts):
            after = int(self.key_decode[k + 2]) if k + 2 < len(self.key_decode) else len(self.pts)
            spoiled += [p for p in range(stop + 1, after) if self.pts[p] < self.pts[stop]]
        return np.sort(self.display_position[spoiled])

    def frame_times(self) -> np.ndarray:
        """(N,) float64 time of each frame in seconds from the first one."""
        if not self.usable:
            return np.arange(self.num_frames, dtype=np.float64) / max(self.fps, 1e-9)
        return (self.display_pts - self.display_pts[0]) * float(self.time_base)

    def frame_durations(self) -> np.ndarray:
        """(N,) int64 display duration of each frame in ``time_base`` units."""
        if self.num_frames < 2:
            return np.ones(self.num_frames, np.int64)
        gaps = np.diff(self.display_pts)
        return np.append(gaps, int(np.median(gaps))).astype(np.int64)

    # -- serialisation ----------------------------------------------------------------------

    def to_array(self) -> np.ndarray:
        """Flat int64 array (header, pts, dts, key flags) for the disk cache."""
        fps = Fraction(self.fps).limit_denominator(1_000_000)
        header = [_FORMAT, self.num_frames, self.time_base.numerator, self.time_base.denominator,
                  fps.numerator, fps.denominator, self.width, self.height, self.reason,
                  int(self.build_seconds * 1e9), 0, 0]
        return np.concatenate([np.array(header, np.int64), self.pts, self.dts,
                               self.keyframe.astype(np.int64)])

    @classmethod
    def from_array(cls, array: np.ndarray) -> FrameIndex | None:
        """Inverse of ``to_array``; None for another format version or a damaged entry."""
        if array.ndim != 1 or array.size < _HEADER or array[0] != _FORMAT:
            return None
        n = int(array[1])
        if array.size != _HEADER + 3 * n or array[3] <= 0 or array[5] <= 0:
            return None
        body = array[_HEADER:]
        return cls(body[:n], body[n : 2 * n], body[2 * n :].astype(bool),
                   Fraction(int(array[2]), int(array[3])), int(array[4]) / int(array[5]),
                   int(array[6]), int(array[7]), int(array[8]), int(array[9]) / 1e9)


# ----------------------------------------------------------------------------- cache


def default_index_dir() -> str | None:
    """Folder of the on-disk index cache, None when disabled.

    ``$DSM_LIGHTNING_FRAME_INDEX`` if set (``off`` disables it), else
    ``$DSM_LIGHTNING_CACHE/frame_index``, else ``~/.cache/dsm_lightning/frame_index``
    (``$XDG_CACHE_HOME`` honoured).
    """
    value = os.environ.get(INDEX_DIR_ENV)
    if value is not None and value.strip():
        return None if value.strip().lower() in ("off", "none", "0", "false") else value
    base = os.environ.get("DSM_LIGHTNING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dsm_lightning"
    )
    return os.path.join(base, "frame_index")


def file_key(path: str) -> tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)`` of a file (raises ``OSError`` when missing)."""
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


class IndexCache:
    """In-process memo (least recently used, bounded in frames) in front of an on-disk
    folder of index files.

    Entries are ``<sha1 of key>.i64`` files (``FrameIndex.to_array`` as raw little-endian
    int64) written atomically (temporary file, then rename), so concurrent workers never
    read a partial entry. A folder that cannot be written only disables persistence.
    """

    def __init__(self, memo_frames: int = _MEMO_FRAMES) -> None:
        self._memo: OrderedDict[tuple, FrameIndex] = OrderedDict()
        self._memo_frames, self._frames = memo_frames, 0
        self._lock = threading.Lock()
        self._write_failed: set[str] = set()

    @staticmethod
    def _file(directory: str, key: tuple[str, int, int]) -> str:
        digest = hashlib.sha1(f"{key[0]}\0{key[1]}\0{key[2]}\0{_FORMAT}".encode()).hexdigest()
        return os.path.join(directory, digest[:2], f"{digest}.i64")

    def get(self, key: tuple[str, int, int], directory: str | None) -> FrameIndex | None:
        """The memoised or stored index of ``key``, None when there is none."""
        with self._lock:
            index = self._memo.get(key)
            if index is not None:
                self._memo.move_to_end(key)
                return index
        if directory is None:
            return None
        try:
            index = FrameIndex.from_array(np.fromfile(self._file(directory, key), dtype="<i8"))
        except (OSError, ValueError):
            return None
        if index is not None:
            self._remember(key, index)
        return index

    def put(self, key: tuple[str, int, int], index: FrameIndex, directory: str | None) -> None:
        """Memoise ``index`` and write it to ``directory`` (when not None)."""
        self._remember(key, index)
        if directory is None or directory in self._write_failed:
            return
        target = self._file(directory, key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".tmp")
            with os.fdopen(handle, "wb") as stream:
                stream.write(index.to_array().astype("<i8").tobytes())
            os.replace(temporary, target)
        except OSError as err:
            self._write_failed.add(directory)
            log.warning("frame index cache %s is not writable (%s); indexes stay in memory",
                        directory, err)

    def _remember(self, key: tuple, index: FrameIndex) -> None:
        with self._lock:
            previous = self._memo.pop(key, None)
            self._frames += index.num_frames - (previous.num_frames if previous else 0)
            self._memo[key] = index
            while self._frames > self._memo_frames and len(self._memo) > 1:
                self._frames -= self._memo.popitem(last=False)[1].num_frames

    def clear(self) -> None:
        """Forget the in-process memo (the disk entries stay)."""
        with self._lock:
            self._memo.clear()
            self._frames = 0


#: The process-wide cache used by ``video_io``.
CACHE = IndexCache()
