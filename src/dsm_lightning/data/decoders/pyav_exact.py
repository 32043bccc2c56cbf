"""PyAV, exact: seek to a key frame, decode forward, pick frames by exact timestamp.

A clip is read by seeking to the last key frame at or before its first frame and decoding
forward. Frames the decoder flags corrupt, and frames of a group of pictures in which
decoding failed, are never returned: decoding restarts from an earlier key frame when the
seek may be the cause, and otherwise the read fails with a ``VideoDecodeError`` naming the
file and the frame. Leading frames of an open GOP (shown before the key frame decoding
started from) are discarded. When the decoder's output shows that the file's timestamps
are unusable, the decoder declines with the reason code (the file is then decoded
sequentially).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import NamedTuple

import av
import numpy as np

from dsm_lightning.data import frame_index as fi
from dsm_lightning.data.decoders.base import Declined, Geometry, VideoDecodeError
from dsm_lightning.data.decoders.pyav_file import PyAVDecoder


class _Outcome(NamedTuple):
    """Result of one decoding pass from a key frame."""

    frames: dict[int, np.ndarray]
    problem: str = ""  # why the clip cannot be returned ('' = fine)
    near_start: bool = False  # the problem lies in the first group of pictures of the pass


class PyAVExactDecoder(PyAVDecoder):
    """Frames by seeking to key frames and matching exact timestamps (see the module).

    Args: see ``PyAVDecoder``.
    """

    name = "PyAV"
    needs_timestamps = True

    def _decode(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """Decode from the key frame before ``wanted[0]``, going back while the seek may be
        what spoiled the frames."""
        key = self.index.key_for_frame(wanted[0])
        step = 1
        while True:
            outcome = self._decode_from_key(key, wanted, geometry)
            if not outcome.problem:
                return outcome.frames
            if not (outcome.near_start and key > 0):
                raise VideoDecodeError(outcome.problem)
            key, step = max(0, key - step), step * 2  # the seek may be the cause: go back

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
        self._from_start()
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

    def _decode_from_key(self, key: int, wanted: list[int], geometry: Geometry) -> _Outcome:
        """Decode forward from key frame ``key`` until every wanted frame has been seen.

        Raises:
            Declined: The decoder's output shows the timestamps are unusable.
        """
        index = self.index
        run_pts, packets = self._seek_key(key)
        run_first = index.frame_of_pts(run_pts)
        if run_first < 0:
            raise Declined(fi.REASONS[fi.UNKNOWN_PTS], fi.UNKNOWN_PTS)
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
                position = self._position_of(frame, run_pts, expected)
                if position < 0:
                    continue  # leading frame of an open GOP: references data before the seek
                gap = gap or position > expected
                expected = position + 1
                if frame.is_corrupt:
                    damaged.append(int(index.decode_position[position]))
                elif position in wanted_set:
                    frames[position] = self._convert(frame, geometry)
            if expected > wanted[-1] and (not gap or expected > check_until):
                break
        return self._judge(frames, wanted_set, damaged, run_first, first_gop_end)

    def _position_of(self, frame: av.VideoFrame, run_pts: int, expected: int) -> int:
        """Display position of a decoded frame, -1 for a leading frame before ``run_pts``.

        Raises:
            Declined: The frame has no timestamp, an unknown one, or comes out of order.
        """
        pts = frame.pts
        if pts is None:
            raise Declined(fi.REASONS[fi.FRAME_WITHOUT_PTS], fi.FRAME_WITHOUT_PTS)
        if pts < run_pts:
            return -1
        position = self.index.frame_of_pts(pts)
        if position < 0:
            raise Declined(fi.REASONS[fi.UNKNOWN_PTS], fi.UNKNOWN_PTS)
        if position < expected:
            raise Declined(fi.REASONS[fi.OUT_OF_ORDER], fi.OUT_OF_ORDER)
        return position

    def _judge(self, frames: dict[int, np.ndarray], wanted: set[int], damaged: list[int],
               run_first: int, first_gop_end: int) -> _Outcome:
        """The pass's frames, or why they cannot be returned (damaged or missing frames)."""
        index = self.index
        spoiled: set[int] = set()
        near_start = False
        for position in damaged:
            gop = index.gop_frames(position)
            spoiled.update(gop.tolist())
            near_start = near_start or int(gop[0]) <= run_first
        bad = sorted(wanted & spoiled)
        missing = sorted(wanted - spoiled - set(frames))
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
