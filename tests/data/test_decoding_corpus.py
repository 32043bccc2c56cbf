"""Frame-exact decoding on a corpus of hard real-world encodings (tests/helpers/video_corpus.py).

For every file, every 4-frame clip at strides 1, 2, 3 and 5 from every start is compared
with a plain sequential decode of the whole file at the same resize: mean absolute
difference <= 1 grey level on every frame or, for the damaged file only, a
``VideoDecodeError`` naming the file and a frame of the clip. The sequential decode itself
is checked against the frames that were encoded.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import av
import numpy as np
import pytest
from helpers.video_corpus import make_corpus

from dsm_lightning.data import torchcodec_backend, video_io
from dsm_lightning.data.frame_index import CACHE, INDEX_DIR_ENV
from dsm_lightning.data.video_io import VideoDecodeError, decode_clip, load_frame_index

SIZE = 32
STRIDES = (1, 2, 3, 5)
CLIP = 4
NAMES = ("h264_open_gop", "h264_444_open_gop", "h264_intra_refresh", "mpeg4_bframes",
         "mpeg4_all_keyframes", "mpeg4_decode_order_pts", "mpeg2_ps", "vp9", "vfr", "damaged")
# (decoder, frame size, FFmpeg decoder options, decoder threads)
CONFIGS = {
    "pyav": ("pyav", SIZE, {}, 0),
    # the decoder hands out the frames it flags corrupt: they must still never come back
    "pyav-output-corrupt": ("pyav", SIZE, {"flags": "+output_corrupt"}, 1),
    # torchcodec resizes with another filter: frame identity is compared at native size
    "torchcodec": ("torchcodec", None, {}, 0),
}


@pytest.fixture(scope="module", autouse=True)
def index_dir(tmp_path_factory):
    """A private frame index cache for this module."""
    with pytest.MonkeyPatch.context() as patch:
        directory = tmp_path_factory.mktemp("frame_index")
        patch.setenv(INDEX_DIR_ENV, str(directory))
        yield directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {c.name: c for c in make_corpus(str(tmp_path_factory.mktemp("corpus")))}


def _plain(frame: av.VideoFrame, size: int | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    width, height = video_io.resized_size(frame.width, frame.height, size)
    array = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    x, y = round(0.5 * (width - size)), round(0.5 * (height - size))
    return array[y : y + size, x : x + size]


def sequential_decode(path: str, size: int | None) -> dict[int, np.ndarray]:
    """Every frame in decoder output order; when the decoder drops some (a damaged file),
    frames are placed by the rank of their timestamp among the demuxed packets."""
    frames, pts = [], []
    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [p.pts for p in container.demux(stream) if p.size]
        container.seek(0)
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    frames.append(_plain(frame, size))
                    pts.append(frame.pts)
            except av.FFmpegError:
                continue
    if len(frames) == len(packets):
        return dict(enumerate(frames))
    ranks = sorted(packets)
    return {ranks.index(p): f for p, f in zip(pts, frames)}


def _clips(num_frames: int):
    for stride in STRIDES:
        span = (CLIP - 1) * stride + 1
        for start in range(num_frames - span + 1):
            yield list(range(start, start + span, stride))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.mark.parametrize("name", [n for n in NAMES if n != "damaged"])
def test_sequential_decode_shows_the_encoded_frames_in_order(corpus, name):
    entry = corpus[name]
    decoded = sequential_decode(entry.path, None)
    source = entry.source_frames()
    assert sorted(decoded) == list(range(entry.num_frames))
    for i, frame in decoded.items():
        distances = [_mad(frame, s) for s in source]
        assert int(np.argmin(distances)) == i, (name, i)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", NAMES)
def test_every_clip_equals_the_sequential_decode(corpus, name, config):
    decoder, size, options, threads = CONFIGS[config]
    if decoder == "torchcodec" and torchcodec_backend.unavailable_reason():
        pytest.skip(torchcodec_backend.unavailable_reason())
    entry = corpus[name]
    reference = sequential_decode(entry.path, size)
    assert load_frame_index(entry.path).num_frames == entry.num_frames
    garbage = spoiled = None
    if entry.damaged_pts is not None:
        # frames that do not decode to what was encoded (the damaged one and those that
        # reference it) must be refused; frames outside the damaged frame's group of
        # pictures (and its up to 3 leading B-frames) must come back
        native = sequential_decode(entry.path, None)
        source = entry.source_frames()
        garbage = {i for i in range(entry.num_frames)
                   if i not in native or _mad(native[i], source[i]) > 10}
        index = load_frame_index(entry.path)
        damaged = index.frame_of_pts(entry.damaged_pts)
        keys = [index.frame_of_pts(int(p)) for p in index.key_pts]
        gop = max(k for k in keys if k <= damaged) - 3, min(k for k in keys if k > damaged)
        spoiled = set(range(*gop))
        assert damaged in garbage and garbage <= spoiled and len(garbage) > 1
    wrong, refused, checked = [], [], 0
    for clip in _clips(entry.num_frames):
        checked += 1
        try:
            frames = decode_clip(entry.path, clip, frame_size=size, threads=threads,
                                 decoder=decoder, codec_options=options)
        except VideoDecodeError as err:
            refused.append((clip, str(err)))
            continue
        mads = [_mad(f, reference[i]) if i in reference else 255.0 for f, i in zip(frames, clip)]
        if max(mads) > 1.0:
            wrong.append((clip, [round(m, 1) for m in mads]))
    assert checked >= 4 * entry.num_frames - 40
    assert not wrong, f"{len(wrong)} of {checked} clips differ, e.g. {wrong[:3]}"
    if garbage is None:
        assert not refused, f"{len(refused)} of {checked} clips refused, e.g. {refused[:2]}"
        return
    refused_clips = [clip for clip, _ in refused]
    for clip in _clips(entry.num_frames):
        if not garbage.isdisjoint(clip):
            assert clip in refused_clips, clip
        elif spoiled.isdisjoint(clip):
            assert clip not in refused_clips, clip
    for clip, message in refused:
        assert os.path.basename(entry.path) in message
        assert int(re.search(r"frame (\d+)", message).group(1)) in clip, message


@pytest.mark.parametrize("name", [n for n in NAMES if n != "damaged"])
def test_one_reader_reads_clips_in_any_order(corpus, name):
    """Later reads seek from wherever the previous one stopped (back to frame 0 too)."""
    entry = corpus[name]
    reference = sequential_decode(entry.path, SIZE)
    starts = np.random.default_rng(0).permutation(entry.num_frames - 7)[:24].tolist() + [0]
    with video_io.VideoReader(entry.path) as reader:
        for start in starts:
            clip = list(range(start, start + 8, 2))
            frames = reader.read_frames(clip, frame_size=SIZE)
            assert max(_mad(frames[i], reference[i]) for i in clip) <= 1, (name, clip)


def test_unusable_timestamps_fall_back_once_per_file(corpus, tmp_path, caplog):
    """Decode-order timestamps are found while decoding; the file is then decoded
    sequentially, the finding is said once and kept in the index cache."""
    path = shutil.copy(corpus["mpeg4_decode_order_pts"].path, tmp_path / "copy.mkv")
    path = str(path)
    reference = sequential_decode(path, SIZE)
    starts = (30, 5, 17, 44, 0)
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        for start in starts:
            clip = decode_clip(path, range(start, start + 8, 2), frame_size=SIZE)
            assert max(_mad(f, reference[i]) for f, i in zip(clip, range(start, start + 8, 2))) <= 1
    said = [r.getMessage() for r in caplog.records if "copy.mkv" in r.getMessage()]
    assert len(said) == 1 and "sequentially" in said[0] and "order" in said[0]
    assert not load_frame_index(path).usable
    CACHE.clear()  # a new process reads the finding from the disk cache: nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        assert not load_frame_index(path).usable
        decode_clip(path, [40, 41], frame_size=SIZE)
    assert not [r for r in caplog.records if "copy.mkv" in r.getMessage()]


def test_damaged_frame_is_refused_with_file_and_frame(corpus):
    entry = corpus["damaged"]
    frame = load_frame_index(entry.path).frame_of_pts(entry.damaged_pts)
    with pytest.raises(VideoDecodeError, match=rf"damaged\.mp4: frame {frame} of 60"):
        decode_clip(entry.path, [frame], frame_size=SIZE)
    intact = decode_clip(entry.path, [0, 59], frame_size=SIZE)  # outside its group: fine
    assert intact.shape == (2, SIZE, SIZE, 3)


def test_torchcodec_is_skipped_with_the_reason_when_missing(monkeypatch, corpus):
    monkeypatch.setattr(torchcodec_backend, "unavailable_reason",
                        lambda: "torchcodec is not installed (pip install ...)")
    with pytest.raises(ValueError, match="decoder='torchcodec' is not available: torchcodec is "
                                         "not installed"):
        decode_clip(corpus["vp9"].path, [0], decoder="torchcodec")
