"""The one fallback chain: the decoders of a file, asked in order.

``decoder="pyav"`` asks PyAV exact, then PyAV sequential; ``decoder="torchcodec"`` asks
torchcodec first. A decoder that declines a file (``Declined``) is not asked again for it
in this process (said once per file); when a decoder finds that the file's timestamps are
unusable, the file's index is marked (and cached) and the file is decoded sequentially
from its start (said once per file). What has been learned this way lives in a
``DecodeNotices`` object owned by whoever opens the files (a dataset's opener, one copy per
worker process): no module-level state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from dsm_lightning._checks import check_choice
from dsm_lightning.data.decoders.base import (
    Declined,
    EncodedVideo,
    FrameDecoder,
    Geometry,
    VideoDecodeError,
)
from dsm_lightning.data.decoders.pyav_exact import PyAVExactDecoder
from dsm_lightning.data.decoders.pyav_sequential import PyAVSequentialDecoder
from dsm_lightning.data.frame_index import USABLE, FrameIndex

log = logging.getLogger(__name__)

#: Decoding backends (the ``decoder`` argument of readers and datasets).
DECODERS = ("pyav", "torchcodec")


def check_decoder(decoder: str) -> None:
    """Raise ``ValueError`` when ``decoder`` is unknown or its backend cannot be loaded."""
    check_choice("decoder", decoder, DECODERS)
    if decoder == "torchcodec":
        from dsm_lightning.data import torchcodec_backend

        reason = torchcodec_backend.unavailable_reason()
        if reason:
            raise ValueError(f"decoder='torchcodec' is not available: {reason}")


def create_decoders(decoder: str, video: EncodedVideo, index: FrameIndex, threads: int = 0,
                    codec_options: Mapping[str, str] | None = None) -> list[FrameDecoder]:
    """The decoders of one file for backend ``decoder``, in the order they are asked.

    Args:
        decoder: ``"pyav"`` (PyAV exact, then PyAV sequential) or ``"torchcodec"``
            (torchcodec, then those).
        video: The encoded video.
        index: Its frame index.
        threads: Decoder threads (0 lets FFmpeg choose).
        codec_options: FFmpeg decoder options of the PyAV decoders (see ``PyAVDecoder``).

    Returns:
        The decoders (nothing is opened yet).

    Raises:
        ValueError: Unknown ``decoder``.
    """
    check_choice("decoder", decoder, DECODERS)
    chain: list[FrameDecoder] = [
        PyAVExactDecoder(video, index, threads, codec_options),
        PyAVSequentialDecoder(video, index, threads, codec_options),
    ]
    if decoder == "torchcodec":
        from dsm_lightning.data.torchcodec_backend import TorchcodecDecoder

        chain.insert(0, TorchcodecDecoder(video, index, threads))
    return chain


class DecodeNotices:
    """What decoding has taught one process: which decoder declined which file, and which
    warnings were said (each once per file).

    Args:
        logger: Where warnings go (None = this module's logger).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger if logger is not None else log
        self._declined: set[tuple[str, Hashable]] = set()
        self._said: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (a dataset's opener goes to its worker processes): the lock is made
        anew there and the logger is found again by name."""
        return {**self.__dict__, "_lock": None, "_log": self._log.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _log=logging.getLogger(state["_log"]))

    def declined(self, decoder: str, file: Hashable) -> bool:
        """True when decoder ``decoder`` (its name) declined ``file`` before."""
        with self._lock:
            return (decoder, file) in self._declined

    def remember_declined(self, decoder: str, file: Hashable) -> None:
        """Note that decoder ``decoder`` declined ``file``: it is not asked again."""
        with self._lock:
            self._declined.add((decoder, file))

    def say_once(self, path: str, topic: str, message: str) -> bool:
        """Log ``"path: message"`` as a warning unless ``topic`` was said for ``path``.

        Returns:
            True when the warning was logged now.
        """
        with self._lock:
            if (path, topic) in self._said:
                return False
            self._said.add((path, topic))
        self._log.warning("%s: %s", path, message)
        return True


class DecoderChain:
    """The decoders of one file, asked in order until one delivers (see the module).

    Args:
        decoders: The file's decoders in the order they are asked, all over the same video
            and index (the last should never decline: ``PyAVSequentialDecoder``).
        notices: Where declines and warnings are remembered (None = this chain's own).
        file_id: The file's identity in ``notices`` (e.g. ``frame_index.file_key``: a
            changed file is tried afresh); None uses its path.
        store_index: Called with the marked index when the file's timestamps turn out
            unusable (e.g. to write it to the index cache); None keeps it in the chain.

    Raises:
        ValueError: ``decoders`` is empty.
    """

    def __init__(
        self,
        decoders: Sequence[FrameDecoder],
        notices: DecodeNotices | None = None,
        file_id: Hashable | None = None,
        store_index: Callable[[FrameIndex], None] | None = None,
    ) -> None:
        if not decoders:
            raise ValueError("decoders must name at least one decoder, got decoders=[]")
        self.decoders = list(decoders)
        self.index = self.decoders[0].index
        self.path = self.decoders[0].path
        self.notices = notices if notices is not None else DecodeNotices()
        self.file_id = file_id if file_id is not None else self.path
        self._store_index = store_index

    def read(self, wanted: list[int], geometry: Geometry) -> dict[int, np.ndarray]:
        """Frames from the first decoder that delivers them (see ``FrameDecoder.read``).

        Raises:
            VideoDecodeError: A frame cannot be decoded cleanly, or every decoder declined.
        """
        for position, decoder in enumerate(self.decoders):
            if not self._asks(decoder):
                continue
            try:
                return decoder.read(wanted, geometry)
            except Declined as declined:
                decoder.close()
                self._note(decoder, declined, self.decoders[position + 1 :])
        raise VideoDecodeError(f"{self.path}: no decoder can deliver frame {wanted[0]} "
                               f"of {self.index.num_frames} exactly")

    def close(self) -> None:
        """Close every decoder."""
        for decoder in self.decoders:
            decoder.close()

    def _asks(self, decoder: FrameDecoder) -> bool:
        """Whether ``decoder`` is asked for this file now."""
        if decoder.needs_timestamps and not self.index.usable:
            return False
        return not self.notices.declined(decoder.name, self.file_id)

    def _note(self, decoder: FrameDecoder, declined: Declined,
              rest: Sequence[FrameDecoder]) -> None:
        """Remember a decline and say it (once per file)."""
        if declined.unusable != USABLE:
            self.index = self.index.with_reason(declined.unusable)
            if self._store_index is not None:
                self._store_index(self.index)
            self.notices.say_once(self.path, "timestamps", f"{self.index.reason_text}; "
                                  "decoding this file sequentially from its start")
            return
        self.notices.remember_declined(decoder.name, self.file_id)
        following = next((d.name for d in rest if self._asks(d)), "no other decoder")
        self.notices.say_once(self.path, decoder.name, f"{decoder.name} cannot deliver exact "
                              f"frames ({declined.reason}); decoding this file with {following}")
