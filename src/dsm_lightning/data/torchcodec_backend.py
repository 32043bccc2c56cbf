"""Optional torchcodec decoding backend (``decoder="torchcodec"``).

torchcodec decodes with FFmpeg's shared libraries installed on the system (FFmpeg 4-8,
e.g. ``apt-get install ffmpeg``), which may be another FFmpeg version than the one inside
PyAV's wheels, with other demuxer behaviour. So this backend is given the frame index built
by PyAV (as torchcodec's ``custom_frame_mappings``: no second scan of the file), asks for
frames by index, and checks that every returned frame carries the expected presentation
timestamp. Any disagreement or error makes it decline (``Declined``), and the decoder chain
(``decoders.chain``) decodes that file with PyAV instead (said once per file), so both
backends give the same frames. torchcodec does not report frames its decoder flags
corrupt; decoding errors (which it raises) also hand the file over to PyAV, which detects
them.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch

from dsm_lightning._checks import check_int
from dsm_lightning.data.decoders.base import Declined, EncodedVideo, FrameDecoder, Geometry
from dsm_lightning.data.frame_index import FrameIndex

__all__ = ["Declined", "TorchcodecDecoder", "TorchcodecFrames", "resize_crop",
           "unavailable_reason"]


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str:
    """Why torchcodec cannot be used here ('' when it can)."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ModuleNotFoundError:
        return "torchcodec is not installed (pip install 'dsm-lightning[torchcodec]')"
    except Exception as err:  # torchcodec raises RuntimeError / OSError when FFmpeg is missing
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (f"torchcodec cannot load FFmpeg's shared libraries ({first}); install "
                "FFmpeg 4-8, e.g. apt-get install ffmpeg")
    del torchcodec
    return ""


def _mappings(index: FrameIndex) -> str:
    """The index as torchcodec ``custom_frame_mappings`` JSON (display order)."""
    keys = index.keyframe[index.decode_position]
    frames = [
        {"pts": int(p), "duration": int(d), "key_frame": int(k)}
        for p, d, k in zip(index.display_pts, index.frame_durations(), keys)
    ]
    return json.dumps({"frames": frames})


class TorchcodecFrames:
    """Native-size RGB frames of one file through torchcodec, checked against the index.

    Args:
        path: Video file path.
        index: The file's frame index (usable timestamps).
        threads: FFmpeg decoding threads (0 = FFmpeg's choice).
    """

    def __init__(self, path: str, index: FrameIndex, threads: int = 0) -> None:
        self.path, self.index, self.threads = path, index, threads
        self._decoder = None

    def read(self, positions: list[int]) -> np.ndarray:
        """Frames at display positions ``positions``: uint8 (N, H, W, 3).

        Raises:
            Declined: torchcodec failed or returned frames at other timestamps (the caller
                falls back to PyAV).
        """
        from torchcodec.decoders import VideoDecoder

        try:
            if self._decoder is None:
                self._decoder = VideoDecoder(
                    self.path, dimension_order="NHWC", num_ffmpeg_threads=self.threads,
                    custom_frame_mappings=_mappings(self.index),
                )
            batch = self._decoder.get_frames_at(positions)
        except Exception as err:  # torchcodec reports every failure as RuntimeError & co.
            message = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
            raise Declined(message[-200:]) from err
        expected = self.index.display_pts[positions]
        returned = np.round(batch.pts_seconds.double().numpy() / float(self.index.time_base))
        if not np.array_equal(returned.astype(np.int64), expected):
            first = int(np.flatnonzero(returned != expected)[0])
            raise Declined(f"frame {positions[first]} came back with pts "
                           f"{int(returned[first])} instead of {int(expected[first])}")
        return batch.data.numpy()

    def close(self) -> None:
        """Drop torchcodec's decoder (made again on the next read)."""
        self._decoder = None


class TorchcodecDecoder(FrameDecoder):
    """The torchcodec ``FrameDecoder``: exact frames, pts-checked, or ``Declined``.

    Args:
        video: The encoded video (a file: torchcodec does not read bytes here).
        index: The file's frame index (usable timestamps).
        threads: FFmpeg decoding threads (0 = FFmpeg's choice).

    Raises:
        ValueError: ``video`` is held in memory, or ``threads`` is negative.
    """

    name = "torchcodec"
    needs_timestamps = True

    def __init__(self, video: EncodedVideo, index: FrameIndex, threads: int = 0) -> None:
        super().__init__(video, index)
        if video.data is not None:
            raise ValueError("the torchcodec decoder reads files; in-memory videos decode "
                             "with PyAV")
        self._frames = TorchcodecFrames(video.path, index, check_int("threads", threads, 0))

    def read(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """See ``FrameDecoder.read`` (resized with ``resize_crop``)."""
        native = self._frames.read(wanted)
        return dict(zip(wanted, resize_crop(native, geometry.size, geometry.crop)))

    def close(self) -> None:
        """Drop torchcodec's decoder."""
        self._frames.close()


def resize_crop(
    frames: np.ndarray, size: tuple[int, int], crop: tuple[int, int, int, int]
) -> np.ndarray:
    """Resize (bilinear, antialiased) then crop a clip in one batched call.

    Args:
        frames: uint8 (N, H, W, 3).
        size: ``(width, height)`` after resizing.
        crop: ``(x, y, width, height)`` of the crop in the resized frame.

    Returns:
        uint8 (N, crop height, crop width, 3).
    """
    width, height = size
    if (frames.shape[2], frames.shape[1]) != (width, height):
        tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        tensor = torch.nn.functional.interpolate(
            tensor, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
        frames = tensor.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    x, y, w, h = crop
    return np.ascontiguousarray(frames[:, y : y + h, x : x + w])
