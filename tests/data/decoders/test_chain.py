"""The fallback chain: decoders asked in order, declines remembered per notices object."""

from __future__ import annotations

import logging
import shutil
from fractions import Fraction

import numpy as np
import pytest
from helpers.video_corpus import make_corpus
from helpers.video_fixtures import frame_ids, make_known_video

from dsm_lightning.data import torchcodec_backend
from dsm_lightning.data.decoders import (
    Declined,
    DecodeNotices,
    DecoderChain,
    EncodedVideo,
    FrameDecoder,
    Geometry,
    VideoDecodeError,
    create_decoders,
)
from dsm_lightning.data.frame_index import OUT_OF_ORDER, USABLE, FrameIndex, file_key
from dsm_lightning.data.video_io import VideoReader, decode_clip, load_frame_index

GEOMETRY = Geometry((4, 4), (0, 0, 4, 4))
INDEX = FrameIndex(np.arange(10), np.arange(10), np.ones(10, bool), Fraction(1, 25), 25.0, 4, 4)
VIDEO = EncodedVideo("clip.mp4")


class Scripted(FrameDecoder):
    """A decoder that declines, fails or delivers frames (filled with its number)."""

    def __init__(self, name: str, calls: list[str], outcome: object = None,
                 needs_timestamps: bool = True, number: int = 0) -> None:
        super().__init__(VIDEO, INDEX)
        self.name, self.needs_timestamps = name, needs_timestamps
        self.calls, self.outcome, self.number, self.closed = calls, outcome, number, 0

    def read(self, wanted, geometry):
        self.calls.append(self.name)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return {i: np.full((4, 4, 3), self.number, np.uint8) for i in wanted}

    def close(self):
        self.closed += 1


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _three(calls):
    return [Scripted("A", calls, Declined("a broke")), Scripted("B", calls, Declined("b broke")),
            Scripted("C", calls, number=3)]


def test_chain_falls_back_in_order_and_says_so_once_per_file(caplog):
    calls: list[str] = []
    notices = DecodeNotices()
    decoders = _three(calls)
    chain = DecoderChain(decoders, notices)
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        frames = chain.read([2, 5], GEOMETRY)
        assert sorted(frames) == [2, 5] and int(frames[5][0, 0, 0]) == 3
        assert calls == ["A", "B", "C"]
        assert _warnings(caplog) == [
            "clip.mp4: A cannot deliver exact frames (a broke); decoding this file with B",
            "clip.mp4: B cannot deliver exact frames (b broke); decoding this file with C",
        ]
        assert [d.closed for d in decoders] == [1, 1, 0]  # a decoder that declined is closed
        chain.read([7], GEOMETRY)  # declined decoders are not asked again
        assert calls == ["A", "B", "C", "C"]
        later = DecoderChain(_three(calls), notices)  # another reader of the same file
        later.read([1], GEOMETRY)
        assert calls == ["A", "B", "C", "C", "C"]
    assert len(_warnings(caplog)) == 2  # said once per file


def test_notices_are_per_object_and_per_file(caplog):
    """No module-level state: independent notices share no declined files or warnings."""
    calls: list[str] = []
    first, second = DecodeNotices(), DecodeNotices()
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        DecoderChain(_three(calls), first).read([0], GEOMETRY)
        DecoderChain(_three(calls), second).read([0], GEOMETRY)
        DecoderChain(_three(calls), first, file_id="other.mp4").read([0], GEOMETRY)
    assert calls == ["A", "B", "C"] * 3
    assert len(_warnings(caplog)) == 4  # the second notices and the other file say it again
    assert first.declined("A", "clip.mp4") and first.declined("A", "other.mp4")
    assert second.declined("B", "clip.mp4") and not second.declined("A", "other.mp4")
    import pickle

    from dsm_lightning.data import decoders
    from dsm_lightning.data.datasets import VideoOpener

    assert not hasattr(decoders, "PROCESS_NOTICES")  # no process-wide notices
    copy = pickle.loads(pickle.dumps(first))  # an opener's notices go to its workers
    assert copy.declined("A", "clip.mp4") and copy is not first
    opener = pickle.loads(pickle.dumps(VideoOpener()))
    assert isinstance(opener.notices, DecodeNotices)


def test_unusable_timestamps_mark_the_index_and_go_sequential(caplog):
    calls: list[str] = []
    stored: list[FrameIndex] = []
    decoders = [Scripted("exact", calls, Declined("out of order", OUT_OF_ORDER)),
                Scripted("other exact", calls, number=1),
                Scripted("sequential", calls, needs_timestamps=False, number=2)]
    chain = DecoderChain(decoders, DecodeNotices(), store_index=stored.append)
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        assert int(chain.read([3], GEOMETRY)[3][0, 0, 0]) == 2
        chain.read([4], GEOMETRY)
    assert calls == ["exact", "sequential", "sequential"]  # timestamp decoders are skipped
    assert chain.index.reason == OUT_OF_ORDER and INDEX.reason == USABLE
    assert [i.reason for i in stored] == [OUT_OF_ORDER]
    (said,) = _warnings(caplog)
    assert said.startswith("clip.mp4: the decoder returns frames out of presentation order")
    assert said.endswith("decoding this file sequentially from its start")


def test_a_decode_error_is_not_a_decline():
    calls: list[str] = []
    failing = VideoDecodeError("clip.mp4: frame 3 of 10 cannot be decoded cleanly")
    chain = DecoderChain([Scripted("A", calls, failing), Scripted("B", calls)], DecodeNotices())
    with pytest.raises(VideoDecodeError, match="frame 3 of 10"):
        chain.read([3], GEOMETRY)
    assert calls == ["A"] and not chain.notices.declined("A", "clip.mp4")


def test_every_decoder_declining_is_a_decode_error_naming_the_file():
    calls: list[str] = []
    chain = DecoderChain([Scripted("A", calls, Declined("no"))], DecodeNotices())
    with pytest.raises(VideoDecodeError, match=r"clip\.mp4: no decoder can deliver frame 6"):
        chain.read([6, 8], GEOMETRY)
    with pytest.raises(ValueError, match="decoders"):
        DecoderChain([])


def test_create_decoders_orders_the_backends(tmp_path, monkeypatch):
    names = [type(d).__name__ for d in create_decoders("pyav", VIDEO, INDEX)]
    assert names == ["PyAVExactDecoder", "PyAVSequentialDecoder"]
    names = [type(d).__name__ for d in create_decoders("torchcodec", VIDEO, INDEX, threads=1)]
    assert names == ["TorchcodecDecoder", "PyAVExactDecoder", "PyAVSequentialDecoder"]
    with pytest.raises(ValueError, match="decoder must be one of"):
        create_decoders("opencv", VIDEO, INDEX)
    with pytest.raises(ValueError, match="in-memory videos decode with PyAV"):
        create_decoders("torchcodec", EncodedVideo("v", b"bytes"), INDEX)


def test_torchcodec_decline_falls_back_to_pyav_once_per_file(tmp_path, monkeypatch, caplog):
    """The real chain of ``decoder="torchcodec"`` with torchcodec declining every read."""
    path = make_known_video(str(tmp_path / "v.mp4"), 20)
    asked: list[list[int]] = []

    def decline(self, positions):
        asked.append(list(positions))
        raise Declined("frame 0 came back with pts 512 instead of 0")

    monkeypatch.setattr(torchcodec_backend, "unavailable_reason", lambda: "")
    monkeypatch.setattr(torchcodec_backend.TorchcodecFrames, "read", decline)
    notices = DecodeNotices()
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        for clip in ([4, 0, 9], [19, 3]):
            with VideoReader(path, decoder="torchcodec", notices=notices) as reader:
                frames = reader.read_frames(clip, frame_size=16)
            assert frame_ids(np.stack([frames[i] for i in clip])) == clip
    assert asked == [[0, 4, 9]]  # the second reader does not ask torchcodec again
    (said,) = [m for m in _warnings(caplog) if "v.mp4" in m]
    assert said.endswith("torchcodec cannot deliver exact frames (frame 0 came back with pts "
                         "512 instead of 0); decoding this file with PyAV")
    assert notices.declined("torchcodec", file_key(path))  # keyed like the index cache


def test_readers_with_their_own_notices_say_it_again(tmp_path, caplog):
    """An in-memory video with decode-order timestamps is found out by every reader (its
    finding has no file to be cached on); the notices decide whether it is said again."""
    source = next(c for c in make_corpus(str(tmp_path / "corpus"))
                  if c.name == "mpeg4_decode_order_pts")
    path = str(shutil.copy(source.path, tmp_path / "bytes.mkv"))
    data, index = open(path, "rb").read(), load_frame_index(path)
    shared, own = DecodeNotices(), DecodeNotices()
    reference = decode_clip(path, [10, 12], frame_size=16)  # marks the file's index
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsm_lightning"):
        for notices in (shared, shared, own):
            with VideoReader(path, data=data, index=index, notices=notices) as reader:
                frames = reader.read_frames([10, 12], frame_size=16)
                assert not reader.index.usable
            assert np.array_equal(np.stack([frames[10], frames[12]]), reference)
    said = [m for m in _warnings(caplog) if "bytes.mkv" in m and "sequentially" in m]
    assert len(said) == 2
    assert index.usable  # the given index is left as it was
