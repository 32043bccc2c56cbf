"""Video data: decoding, sources (a registry of layouts), clip sampling, datasets, DataModule.

``VideoDataModule`` is imported lazily (it pulls in Lightning); everything else is plain
PyTorch / PyAV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsm_lightning.data.datasets import (
    EpochSampler,
    LabelledClipDataset,
    MultiViewClipDataset,
    PretrainClipDataset,
    VideoDataset,
    VideoSkippedWarning,
)
from dsm_lightning.data.sampling import (
    ClipPair,
    ClipSample,
    MultiClipSample,
    PairClipSampler,
    RandomClipSampler,
    UniformClipSampler,
    clip_span,
    make_clip,
)
from dsm_lightning.data.shards import ShardSource  # registers source="shards"
from dsm_lightning.data.sources import (
    AnnotationError,
    SourceSplits,
    SyntheticSource,
    VideoRecord,
    VideoSource,
    create_source,
    list_sources,
    register_source,
)
from dsm_lightning.data.video_io import (
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    decode_clip,
    probe_video,
)

if TYPE_CHECKING:  # pragma: no cover
    from dsm_lightning.data.datamodule import VideoDataModule

__all__ = [
    "AnnotationError", "ClipPair", "ClipSample", "EpochSampler", "LabelledClipDataset",
    "MultiClipSample", "MultiViewClipDataset", "PairClipSampler", "PretrainClipDataset",
    "RandomClipSampler", "ShardSource", "SourceSplits", "SyntheticSource", "UniformClipSampler",
    "VideoDataModule", "VideoDataset", "VideoDecodeError", "VideoInfo", "VideoReader",
    "VideoRecord", "VideoSkippedWarning", "VideoSource", "clip_span", "create_source",
    "decode_clip", "list_sources", "make_clip", "probe_video", "register_source",
]


def __getattr__(name: str) -> Any:
    if name == "VideoDataModule":
        from dsm_lightning.data.datamodule import VideoDataModule

        return VideoDataModule
    raise AttributeError(f"module 'dsm_lightning.data' has no attribute {name!r}")
