"""LitData side of the shards (imported only when shards are read; see ``data.shards``).

- ``ShardStream``: LitData's ``StreamingDataset`` whose items are the clips of the map-style
  dataset it wraps (``VideoDataset.load_item`` of the sample's ``index`` and the epoch), so a
  video gives the same clips as from its file. A bad video is replaced by the next readable
  one of the stream (the count of items per process stays that of LitData).
- ``ShardLoader``: LitData's ``StreamingDataLoader`` that follows the trainer: each pass
  takes the trainer's epoch (shuffle and item randomness; it reaches persistent workers
  through shared memory), and a pass resumed from ``load_state_dict`` (``{"epoch",
  "batches"}``, as ``TrainLoader``) starts at that batch through LitData's resume state.
- ``ShardOpener``: random access to one video's bytes by position (evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # no call to PyPI at run time

import torch  # noqa: E402
from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from dsm_lightning.data.datasets import VideoDataset, VideoOpener, clip_dataset  # noqa: E402
from dsm_lightning.data.decoders import DecodeNotices  # noqa: E402
from dsm_lightning.data.frame_index import CACHE, FrameIndex  # noqa: E402
from dsm_lightning.data.loaders import (  # noqa: E402
    LoaderSettings,
    PassPosition,
    VideoLoader,
    loader_kwargs,
)
from dsm_lightning.data.sources import VideoRecord  # noqa: E402
from dsm_lightning.data.video_io import VideoDecodeError, VideoReader  # noqa: E402

__all__ = ["ShardLoader", "ShardOpener", "ShardStream", "clip_dataset", "reader_from_sample"]


def reader_from_sample(sample: dict[str, Any], name: str, threads: int = 0,
                       notices: DecodeNotices | None = None) -> VideoReader:
    """A ``VideoReader`` over a shard sample's bytes and frame index.

    The frame index is memoised in the process (``frame_index.CACHE``, keyed by ``name``),
    as the file path's is.

    Args:
        sample: A raw shard sample (``video`` bytes, ``frame_index`` array).
        name: Name of the video in messages (unique per video).
        threads: Decoder threads.
        notices: The opener's decode notices (None = the reader's own).

    Returns:
        The open reader.

    Raises:
        VideoDecodeError: The stored frame index is damaged or the bytes cannot be opened.
    """
    key = ("shard", name, 0)
    index = CACHE.get(key, None)
    if index is None:
        index = FrameIndex.from_array(sample["frame_index"])
        if index is None:
            raise VideoDecodeError(f"{name}: the shard's frame index is damaged or of another "
                                   "format (prepare the shards again)")
        CACHE.put(key, index, None)
    return VideoReader(name, threads=threads, data=bytes(sample["video"]), index=index,
                       notices=notices)


class ShardOpener(VideoOpener):
    """Opens a video from its split's shards by sample position (random access).

    Args:
        input_dir: The split's LitData folder or URL.
        positions: Sample position of each record.
        cache_dir: Local cache of downloaded chunks (None = LitData's default).
    """

    def __init__(self, input_dir: str, positions: list[int], cache_dir: str | None = None):
        super().__init__()
        self.input_dir, self.positions, self.cache_dir = input_dir, list(positions), cache_dir
        self._shards: StreamingDataset | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_shards": None}  # each process opens its own

    def __call__(self, record: VideoRecord, index: int, threads: int, decoder: str) -> VideoReader:
        """The reader of record ``index`` (raises ``VideoDecodeError`` on a bad sample)."""
        if self._shards is None:
            self._shards = StreamingDataset(self.input_dir, cache_dir=self.cache_dir)
        sample = self._shards[self.positions[index]]
        if int(sample["index"]) != index:
            raise VideoDecodeError(f"{record.path}: the shard sample at position "
                                   f"{self.positions[index]} is video {sample['index']}, not "
                                   f"{index} (manifest and shards disagree)")
        return reader_from_sample(sample, record.path, threads, self.notices)


class ShardStream(StreamingDataset):
    """Streamed clips of a split: LitData's streaming over the items of ``clips``.

    Args:
        input_dir: The split's LitData folder or URL.
        clips: The map-style dataset whose items are produced (records, clip settings,
            seed, bad-video policy and skip table).
        shuffle: Shuffle chunks and samples (seeded with ``clips.seed`` and the epoch).
        drop_last: Equal numbers of full batches per process (forced under DDP by LitData).
        cache_dir: Local cache of downloaded chunks (None = LitData's default).
    """

    def __init__(self, input_dir: str, clips: VideoDataset, shuffle: bool = True,
                 drop_last: bool | None = None, cache_dir: str | None = None) -> None:
        super().__init__(input_dir, cache_dir=cache_dir, shuffle=shuffle, drop_last=drop_last,
                         seed=clips.seed)
        self.clips = clips
        # [epoch, resuming] of the pass, written by the loader, read by (persistent) workers
        self._pass = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._reset_substitutes()

    # the map-style dataset's skip bookkeeping (read by the data module's reports)
    @property
    def split(self) -> str:
        """Split name."""
        return self.clips.split

    @property
    def substitute_bad(self) -> bool:
        """Bad videos are replaced (always, when streaming)."""
        return True

    def take_skip_report(self) -> dict[str, int]:
        """See ``VideoDataset.take_skip_report``."""
        return self.clips.take_skip_report()

    @property
    def bad_videos(self) -> list[str]:
        """See ``VideoDataset.bad_videos``."""
        return self.clips.bad_videos

    @property
    def epoch(self) -> int:
        """The epoch of the items being streamed (LitData counts from 1)."""
        return int(self.current_epoch) - 1

    def _reset_substitutes(self) -> None:
        self._last: dict[str, Any] | None = None
        self._owed, self._ended = 0, False

    def start_pass(self, epoch: int, resuming: bool) -> None:
        """Tell the workers (also persistent ones) which epoch the next pass streams.

        Args:
            epoch: Epoch number (0-based).
            resuming: The pass continues from a loaded resume state (LitData's).
        """
        self._pass[0], self._pass[1] = epoch, int(resuming)

    def __iter__(self) -> ShardStream:
        self._reset_substitutes()
        if not int(self._pass[1]):
            self.reset_state_dict()  # a state left by an unfinished resumed pass
        if self._state_dict is None:
            self.current_epoch = int(self._pass[0]) + 1  # LitData counts epochs from 1
        return super().__iter__()

    def _clip_item(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """The item of a raw sample; None (counted, warned) when its video is bad."""
        index = int(sample["index"])
        try:
            reader = reader_from_sample(sample, self.clips.records[index].path, threads=1,
                                        notices=self.clips.opener.notices)
            return self.clips.load_item(index, self.epoch, reader)
        except VideoDecodeError as err:
            self.clips._mark_bad(index, err, "replaced by another video")
            return None

    def __next__(self) -> dict[str, Any]:
        if self._owed:  # copies of a readable video standing in for bad ones
            self._owed -= 1
            return self._last  # type: ignore[return-value]
        if self._ended:
            self._ended = False
            raise StopIteration
        bad = 0
        while True:
            try:
                sample = super().__next__()
            except StopIteration:
                if not bad:
                    raise
                if self._last is None:
                    raise RuntimeError(
                        f"{self.clips.split}: no readable video in this worker's part of the "
                        "stream; see the warnings above") from None
                self._owed, self._ended = bad - 1, True
                return self._last
            item = self._clip_item(sample)
            if item is not None:
                self._last, self._owed = item, bad
                return item
            bad += 1


class ShardLoader(VideoLoader, StreamingDataLoader):
    """LitData's loader of a ``ShardStream``, resumable mid-epoch like ``TrainLoader``.

    Each pass streams one epoch's order and items: the trainer's epoch while it trains
    (``epoch()``), else the epoch of a loaded state, else the one after the last pass (0
    first). It counts the batches it yields (``position``); ``state_dict`` /
    ``load_state_dict`` are ``{"epoch", "batches"}`` (``PassPosition``), and a pass resumed
    ``k`` batches into its epoch starts there by loading the state LitData would have saved
    after ``k`` batches. The epoch reaches persistent workers through the stream's shared
    pass record; a resumed pass is always a loader's first (fresh workers receive the
    state). Skipped videos are reported once per pass, like ``VideoLoader``.

    Args:
        dataset: The stream.
        epoch: The trainer's epoch while it trains, else None.
        **kwargs: ``StreamingDataLoader`` / ``VideoLoader`` arguments.
    """

    def __init__(self, dataset: ShardStream, *,
                 epoch: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._epoch = epoch
        self.position = PassPosition()

    @classmethod
    def from_settings(cls, dataset: ShardStream, settings: LoaderSettings) -> ShardLoader:
        """The loader ``VideoDataModule`` asks for (``loader_kwargs`` of its settings)."""
        return cls(dataset, epoch=settings.epoch, report=settings.report,
                   collate_fn=default_collate, **loader_kwargs(settings))

    def state_dict(self) -> dict[str, int]:  # type: ignore[override]
        """``{"epoch", "batches"}``: see ``PassPosition.state_dict``."""
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:  # type: ignore[override]
        """Resume at ``state`` on the next pass of its epoch."""
        self.position.load_state_dict(state)

    def start_at(self, epoch: int, batches: int = 0) -> None:
        """Make the next pass stream ``epoch``, starting ``batches`` batches in.

        Args:
            epoch: Epoch number (0-based).
            batches: Batches of that epoch already consumed.
        """
        self.load_state_dict({"epoch": epoch, "batches": batches})

    def _seek(self, epoch: int, batches: int) -> None:
        """Set LitData's state for a pass of ``epoch`` that starts ``batches`` batches in."""
        stream: ShardStream = self.dataset  # type: ignore[assignment]
        self.restore = False
        stream.reset_state_dict()
        self.current_epoch = epoch  # LitData's pass start adds 1 (its epochs count from 1)
        yielded = batches * self.batch_size
        if batches <= 0 or yielded >= len(stream):
            return
        stream.current_epoch = epoch + 1
        StreamingDataLoader.load_state_dict(self, {
            "dataset": stream.state_dict(yielded, self.num_workers, self.batch_size),
            "current_epoch": epoch + 1,
            "num_samples_yielded": yielded,
            "latest_worker_idx": (batches - 1) % max(self.num_workers, 1),
        })

    def __iter__(self):  # type: ignore[override]
        self.report()
        fitting = self._epoch() if self._epoch is not None else None
        epoch, skip = self.position.begin(fitting, len(self))  # at the first batch
        self._seek(epoch, skip)
        self._pass_epoch = epoch
        self.dataset.start_pass(epoch, self.restore)
        self._unreported = True
        for batch in StreamingDataLoader.__iter__(self):
            self.position.advance()
            yield batch
        self.position.end()
        self.report()
