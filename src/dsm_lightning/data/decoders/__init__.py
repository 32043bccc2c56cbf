"""Frame-exact decoding behind one ``FrameDecoder`` interface (see ``base``).

Implementations: ``PyAVExactDecoder`` (seek to a key frame, decode forward, pick by exact
timestamp), ``PyAVSequentialDecoder`` (files whose timestamps are unusable) and, in
``data.torchcodec_backend``, ``TorchcodecDecoder``. ``DecoderChain`` asks a file's decoders
in order (the one fallback chain); ``DecodeNotices`` remembers what it learned.
"""

from dsm_lightning.data.decoders.base import (
    Declined,
    EncodedVideo,
    FrameDecoder,
    Geometry,
    VideoDecodeError,
    resized_size,
)
from dsm_lightning.data.decoders.chain import (
    DECODERS,
    DecodeNotices,
    DecoderChain,
    check_decoder,
    create_decoders,
)
from dsm_lightning.data.decoders.pyav_exact import PyAVExactDecoder
from dsm_lightning.data.decoders.pyav_file import PyAVDecoder, open_container
from dsm_lightning.data.decoders.pyav_sequential import PyAVSequentialDecoder

__all__ = [
    "DECODERS", "Declined", "DecodeNotices", "DecoderChain", "EncodedVideo",
    "FrameDecoder", "Geometry", "PyAVDecoder", "PyAVExactDecoder", "PyAVSequentialDecoder",
    "VideoDecodeError", "check_decoder", "create_decoders", "open_container", "resized_size",
]
