"""A decoding corpus of hard but common real-world encodings, written in-process with PyAV.

Every file holds ``textured_frames``: a coarse random colour texture moving 2 px per frame
plus a grey ramp, so encoders produce real motion-compensated P/B frames and a frame from
the wrong position differs from the right one by tens of grey levels.

| name | codec | container | what makes it hard |
|---|---|---|---|
| ``h264_open_gop`` | H.264 High, B-frames | mp4 | open GOPs: leading B-frames of a GOP reference the previous one |
| ``h264_444_open_gop`` | H.264 High 4:4:4, B-frames | mkv | open GOPs without recovery-point SEI (as many hardware encoders write): the container's seek points are I-frames FFmpeg does not flag as key frames |
| ``h264_intra_refresh`` | H.264, periodic intra refresh | mp4 | no I-frames: a key frame is a recovery point, the frames after it are dropped when decoding starts there |
| ``mpeg4_bframes`` | MPEG-4 Part 2, B-frames | avi | AVI stores no timestamps (FFmpeg derives them, the first is 1) |
| ``mpeg4_all_keyframes`` | MPEG-4 Part 2, B-frames | avi | the AVI index flags every frame as a key frame (a muxer bug): seeks land on P/B-frames |
| ``mpeg4_decode_order_pts`` | MPEG-4 Part 2, B-frames | mkv | timestamps in decode order (a bad remux): the decoder's output is not monotonic |
| ``mpeg2_ps`` | MPEG-2 video, B-frames | mpg (program stream) | seeks bisect the byte stream and land anywhere |
| ``vp9`` | VP9, alt-ref frames | webm | hidden frames in superframes, no frame count in the header |
| ``vfr`` | H.264, B-frames | mkv | variable frame rate: irregular presentation times |
| ``damaged`` | H.264, B-frames | mp4 | bytes of a mid-file frame overwritten: its group of pictures cannot be decoded cleanly |
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np
from av.bitstream import BitStreamFilterContext

HEIGHT, WIDTH = 48, 64
# Small GOPs with B-frames and open GOPs ("ultrafast" alone would disable B-frames).
_X264 = {"preset": "veryfast", "crf": "18",
         "x264-params": "keyint=12:min-keyint=12:scenecut=0:open-gop=1:bframes=3"}


class CorpusFile(NamedTuple):
    """One corpus file.

    Attributes:
        name: Short name (test ids).
        path: File path.
        codec: Encoder used.
        container: Container format.
        num_frames: Frames encoded.
        seed: Seed of its ``textured_frames``.
        damaged_pts: Presentation timestamp of the damaged frame (None when intact).
    """

    name: str
    path: str
    codec: str
    container: str
    num_frames: int
    seed: int
    damaged_pts: int | None = None

    def source_frames(self) -> np.ndarray:
        """The frames that were encoded, (T, H, W, 3) uint8."""
        return textured_frames(self.num_frames, seed=self.seed)


def textured_frames(num_frames: int, height: int = HEIGHT, width: int = WIDTH,
                    seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: 4x4-pixel random colour blocks moving 2 px/frame plus a ramp."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 4 + 1, (width + 2 * num_frames) // 4 + 2, 3))
    texture = np.repeat(np.repeat(coarse, 4, 0), 4, 1)[:height]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frames[i] = np.clip(0.6 * texture[:, 2 * i : 2 * i + width] + (i * 97) % 100, 0, 255)
    return frames


def _encode(path: str, frames: np.ndarray, codec: str, options: dict[str, str],
            pix_fmt: str = "yuv420p", bit_rate: int | None = None,
            pts: list[int] | None = None, time_base: Fraction | None = None) -> str:
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _remux(src: str, dst: str, bsf: str | None = None, pts_from_dts: bool = False,
           all_key: bool = False) -> str:
    """Copy the video packets of ``src`` to ``dst``: through a bitstream filter, with each
    packet's pts replaced by its dts (timestamps in decode order), or each flagged key."""
    with av.open(src) as inp, av.open(dst, "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        bitstream = BitStreamFilterContext(bsf, stream) if bsf else None
        for packet in inp.demux(stream):
            if bitstream is not None:
                packets = bitstream.filter(packet if packet.size else None)
            else:
                packets = [packet] if packet.size else []
            for item in packets:
                if pts_from_dts:
                    item.pts = item.dts
                if all_key:
                    item.is_keyframe = True
                item.stream = target
                out.mux(item)
    return dst


def damage_middle(path: str, length: int = 64) -> int:
    """Overwrite the start of a non-key frame past 60 % of the file (decode order) with a
    fixed garbage pattern, so that decoding it fails; returns that frame's pts."""
    with av.open(path) as container:
        packets = [(p.pos, p.pts, p.is_keyframe)
                   for p in container.demux(container.streams.video[0]) if p.size]
    pos, pts, _ = next(p for p in packets[int(0.6 * len(packets)):] if not p[2])
    with open(path, "r+b") as handle:
        handle.seek(pos)
        handle.write(bytes((i * 37 + 11) % 256 for i in range(length)))
    return pts


def make_corpus(directory: str) -> list[CorpusFile]:
    """Write every corpus file into ``directory`` (well under a second); returns them."""
    os.makedirs(directory, exist_ok=True)
    out: list[CorpusFile] = []

    def add(name, ext, codec, container, num_frames, seed, **kwargs):
        path = os.path.join(directory, f"{name}.{ext}")
        _encode(path, textured_frames(num_frames, seed=seed), codec, **kwargs)
        out.append(CorpusFile(name, path, codec, container, num_frames, seed))
        return path

    add("h264_open_gop", "mp4", "libx264", "mp4", 72, 1, options=_X264)
    with_sei = add("_with_sei", "mkv", "libx264", "matroska", 60, 2,
                   options={**_X264, "profile": "high444"}, pix_fmt="yuv444p")
    out[-1] = out[-1]._replace(
        name="h264_444_open_gop",
        path=_remux(with_sei, os.path.join(directory, "h264_444_open_gop.mkv"),
                    bsf="filter_units=remove_types=6"),  # drop the SEI (recovery points)
    )
    os.remove(with_sei)
    add("h264_intra_refresh", "mp4", "libx264", "mp4", 60, 8,
        options={**_X264, "x264-params": "keyint=12:intra-refresh=1:scenecut=0"})
    avi = add("mpeg4_bframes", "avi", "mpeg4", "avi", 56, 3, options={"bf": "2", "g": "12"},
              bit_rate=800_000)
    out.append(out[-1]._replace(
        name="mpeg4_all_keyframes",
        path=_remux(avi, os.path.join(directory, "mpeg4_all_keyframes.avi"), all_key=True),
    ))
    out.append(out[-1]._replace(
        name="mpeg4_decode_order_pts", container="matroska",
        path=_remux(avi, os.path.join(directory, "mpeg4_decode_order_pts.mkv"),
                    pts_from_dts=True),
    ))
    add("mpeg2_ps", "mpg", "mpeg2video", "mpeg program stream", 64, 4,
        options={"bf": "2", "g": "12"}, bit_rate=1_500_000)
    add("vp9", "webm", "libvpx-vp9", "webm", 48, 5, bit_rate=600_000,
        options={"g": "16", "auto-alt-ref": "1", "lag-in-frames": "8", "deadline": "realtime",
                 "cpu-used": "8"})
    gaps = np.random.default_rng(6).choice([20, 33, 40, 67, 100], size=49)
    add("vfr", "mkv", "libx264", "matroska", 50, 6, options=_X264,
        pts=[0, *np.cumsum(gaps).tolist()], time_base=Fraction(1, 1000))
    damaged = add("damaged", "mp4", "libx264", "mp4", 60, 7, options=_X264)
    out[-1] = out[-1]._replace(damaged_pts=damage_middle(damaged))
    return out
