"""The PyAV decoders on their own: exact, sequential, codec options, geometry."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.video_corpus import make_corpus
from helpers.video_fixtures import frame_ids, make_known_video

from dsm_lightning.data.decoders import (
    Declined,
    EncodedVideo,
    Geometry,
    PyAVExactDecoder,
    PyAVSequentialDecoder,
    VideoDecodeError,
)
from dsm_lightning.data.frame_index import OUT_OF_ORDER
from dsm_lightning.data.video_io import VideoReader, decode_clip, load_frame_index


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {c.name: c for c in make_corpus(str(tmp_path_factory.mktemp("corpus")))}


def _stack(frames: dict[int, np.ndarray], order: list[int]) -> np.ndarray:
    return np.stack([frames[i] for i in order])


def test_codec_options_reach_the_decoder_of_that_reader_only(tmp_path):
    """``skip_frame=nokey`` makes FFmpeg output key frames only: frame 5 never comes back."""
    path = make_known_video(str(tmp_path / "v.mp4"), 30)
    assert [load_frame_index(path).frame_of_pts(int(p)) for p in
            load_frame_index(path).key_pts] == [0]
    with pytest.raises(VideoDecodeError, match=r"v\.mp4: frame 5 of 30 was not returned"):
        decode_clip(path, [0, 5], codec_options={"skip_frame": "nokey"})
    assert frame_ids(decode_clip(path, [0, 5], frame_size=16)) == [0, 5]  # no leftover state
    options = {"skip_frame": "nokey"}
    with VideoReader(path, codec_options=options) as reader:
        options.clear()  # the reader keeps its own copy
        with pytest.raises(VideoDecodeError, match="frame 5 of 30"):
            reader.read_frames([5])
    sequential = PyAVSequentialDecoder(EncodedVideo(path), load_frame_index(path),
                                       codec_options={"skip_frame": "nokey"})
    with pytest.raises(VideoDecodeError, match="frame 5 of 30"):
        sequential.read([5], Geometry.of(32, 32, 16))
    sequential.close()


def test_exact_decoder_declines_decode_order_timestamps_with_the_reason(corpus):
    entry = corpus["mpeg4_decode_order_pts"]
    index = load_frame_index(entry.path)
    assert index.usable  # found out only while decoding
    exact = PyAVExactDecoder(EncodedVideo(entry.path), index, threads=1)
    with pytest.raises(Declined) as caught:
        for start in range(0, entry.num_frames - 8, 4):
            exact.read(list(range(start, start + 8, 2)), Geometry.of(64, 48, 16))
    exact.close()
    assert caught.value.unusable == OUT_OF_ORDER and "order" in caught.value.reason
    sequential = PyAVSequentialDecoder(EncodedVideo(entry.path), index)
    frames = sequential.read([3, 30, 55], Geometry.of(64, 48, None))
    sequential.close()
    source = entry.source_frames()
    for i in (3, 30, 55):  # frame i is the i-th frame shown
        errors = [np.abs(frames[i].astype(int) - s).mean() for s in source]
        assert int(np.argmin(errors)) == i


def test_exact_and_sequential_decoders_agree_from_bytes_and_from_the_file(corpus):
    entry = corpus["h264_open_gop"]
    data = open(entry.path, "rb").read()
    index = load_frame_index(entry.path)
    wanted = [0, 11, 12, 13, 40, 71]
    geometry = Geometry.of(64, 48, 24, (0.2, 0.9))
    results = []
    for decoder in (PyAVExactDecoder(EncodedVideo(entry.path), index),
                    PyAVExactDecoder(EncodedVideo("named", data), index),
                    PyAVSequentialDecoder(EncodedVideo(entry.path), index)):
        results.append(decoder.read(wanted, geometry))
        results.append(decoder.read([5, 13], geometry))  # read again, from further back
        decoder.close()
    first = results[0]
    assert first[0].shape == (24, 24, 3)
    for frames in results[2::2]:
        assert np.array_equal(_stack(frames, wanted), _stack(first, wanted))
    for frames in results[1::2]:
        assert np.array_equal(frames[13], first[13]) and not np.array_equal(frames[5], first[0])


def test_decoders_name_the_file_when_it_cannot_be_opened(tmp_path):
    index = load_frame_index(make_known_video(str(tmp_path / "v.mp4"), 10))
    for decoder in (PyAVExactDecoder(EncodedVideo(str(tmp_path / "gone.mp4")), index),
                    PyAVSequentialDecoder(EncodedVideo("empty.mp4", b""), index)):
        with pytest.raises(VideoDecodeError, match=r"(gone\.mp4: no such file)|"
                                                   r"(empty\.mp4: empty file)"):
            decoder.read([0], Geometry.of(32, 32, None))


def test_threads_are_checked():
    with pytest.raises(ValueError, match="threads must be an int >= 0"):
        PyAVExactDecoder(EncodedVideo("v.mp4"), None, threads=-1)
    with pytest.raises(ValueError, match="threads must be an int >= 0"):
        VideoReader("v.mp4", threads=-2)


@pytest.mark.parametrize(
    "size, frame_size, offset, expected",
    [
        ((320, 240), None, (0.5, 0.5), ((320, 240), (0, 0, 320, 240))),
        ((320, 240), 128, (0.5, 0.5), ((171, 128), (22, 0, 128, 128))),
        ((320, 240), 128, (0.0, 1.0), ((171, 128), (0, 0, 128, 128))),
        ((240, 320), 128, (1.0, 1.0), ((128, 171), (0, 43, 128, 128))),
        ((64, 64), 32, (0.3, 0.7), ((32, 32), (0, 0, 32, 32))),
    ],
)
def test_geometry_resizes_the_short_side_and_crops_a_square(size, frame_size, offset, expected):
    assert Geometry.of(*size, frame_size, offset) == expected
