"""PyAV, sequential: decode from the start of the file, counting frames in output order.

For files whose timestamps are unusable (see ``frame_index.REASONS``): frame ``i`` is the
``i``-th frame the decoder outputs. Frames of a group of pictures in which decoding failed
(or that the decoder flags corrupt) are never returned: the read fails with a
``VideoDecodeError`` naming the file and the frame.
"""

from __future__ import annotations

import av
import numpy as np

from dsm_lightning.data.decoders.base import Geometry, VideoDecodeError
from dsm_lightning.data.decoders.pyav_file import PyAVDecoder


class PyAVSequentialDecoder(PyAVDecoder):
    """Frames by counting the decoder's output from the start (see the module).

    Args: see ``PyAVDecoder``.
    """

    name = "PyAV, sequentially"
    needs_timestamps = False

    def _decode(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        self._from_start()
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
        self._check(wanted, frames, spoiled)
        return frames

    def _check(self, wanted: list[int], frames: dict[int, np.ndarray],
               spoiled: list[tuple[int, int]]) -> None:
        """Raise ``VideoDecodeError`` for the first wanted frame spoiled or not returned."""
        total = self.index.num_frames
        for index in wanted:
            for start, stop in spoiled:
                if start <= index < stop:
                    raise VideoDecodeError(
                        f"{self.path}: frame {index} of {total} cannot be decoded cleanly "
                        f"(decoding errors in frames {start}-{stop - 1})"
                    )
            if index not in frames:
                raise VideoDecodeError(
                    f"{self.path}: frame {index} of {total} was not returned by the decoder "
                    "(damaged or truncated file)"
                )
