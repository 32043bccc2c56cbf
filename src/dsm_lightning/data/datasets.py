"""Map-style video datasets: pretraining pairs, labelled clips, multi-view clips.

Items follow the batch contract of docs/architecture.md: uint8 ``video`` (C, T, H, W)
(multi-view: (V, C, T, H, W)), ``video_shift`` for pretraining, int64 ``label`` and
``index``. Randomness of item ``i`` in epoch ``e`` comes from a generator seeded with
``(seed, e, i)``, so an item is identical whichever worker or process loads it. The epoch
reaches workers through the index itself: ``EpochSampler`` yields ``(index, epoch)`` pairs
(persistent workers never see attribute changes made in the main process).

Bad videos (unreadable, truncated, too short, not a video, a clip frame that cannot be
decoded cleanly) are skipped: the worker warns once with the file name, marks the video in
a shared-memory table, and then

- training datasets (``substitute_bad=True``, default) return the next readable video
  instead (deterministic), so a batch never fails or shrinks because of one file;
- evaluation datasets (``substitute_bad=False``) return a marker item (the item's keys,
  zero videos and ``"skipped": True``) that ``collate_drop_bad`` removes from the batch, so
  a bad video is left out of the metrics instead of counted as a copy of another one.

The owner reads the table for per-epoch summaries (``take_skip_report``, ``bad_videos``).
``on_error="raise"`` makes the first bad file fatal.

Where the encoded video comes from is the ``opener``'s business (``VideoOpener``: the
record's file by default; a shard reader for ``source="shards"``); ``load_item`` decodes one
item from an already open video (streamed datasets), with the same clip logic.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate, get_worker_info

from dsm_lightning._checks import check_choice
from dsm_lightning.data.decoders import DecodeNotices
from dsm_lightning.data.sampling import (
    ClipSample,
    PairClipSampler,
    RandomClipSampler,
    UniformClipSampler,
)
from dsm_lightning.data.video_io import VideoDecodeError, VideoReader, check_decoder

if TYPE_CHECKING:  # annotations only: ``sources.base`` builds these datasets (no cycle)
    from dsm_lightning.data.sources import VideoRecord

ON_ERROR = ("skip", "raise")
# How many following videos a skipped item may try before giving up.
_MAX_SUBSTITUTES = 64

#: Key of the marker item an evaluation dataset returns for a bad video.
SKIPPED = "skipped"


class VideoSkippedWarning(UserWarning):
    """A video could not be used (replaced by another one, or left out of evaluation)."""


def collate_drop_bad(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of the items that are not bad-video markers.

    The batch may therefore be smaller than the loader's batch size. When every item is a
    marker the result is an empty batch: the same keys, every tensor with batch size 0
    (e.g. ``video`` (0, C, T, H, W)), which the usual evaluation step code runs through
    without special cases (features of 0 clips, no metric update); a step may also test
    ``len(batch["index"]) == 0`` and return early.

    Args:
        items: Dataset items; markers carry ``"skipped"``.

    Returns:
        The collated batch of the good items (no ``"skipped"`` key).
    """
    good = [item for item in items if SKIPPED not in item]
    if good:
        return default_collate(good)
    batch = default_collate([{k: v for k, v in item.items() if k != SKIPPED} for item in items])
    return {key: value[:0] for key, value in batch.items()}


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """Generator seeded from ``(seed, epoch, index)`` (independent streams per item).

    Args:
        seed: Global seed.
        epoch: Epoch number.
        index: Item index.

    Returns:
        A seeded CPU ``torch.Generator``.
    """
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class VideoOpener:
    """Opens the encoded video of a record: the record's file (the default opener).

    Streamed or packed formats subclass it (``dsm_lightning.data.shards.ShardOpener`` reads
    a video's bytes from its shard); datasets call it in their worker processes, so an
    opener must be picklable. Its ``notices`` (``DecodeNotices``) remember, for the readers
    it opens, which decoder declined which file and which warnings were said (once per
    file, per process).
    """

    def __init__(self) -> None:
        self.notices = DecodeNotices()

    def __call__(self, record: VideoRecord, index: int, threads: int, decoder: str) -> VideoReader:
        """Open the video of ``record``, item ``index`` of its split.

        Args:
            record: The video's record.
            index: Its position in the split.
            threads: Decoder threads.
            decoder: Decoding backend (``"pyav"`` or ``"torchcodec"``).

        Returns:
            An open ``VideoReader`` (the caller closes it).

        Raises:
            VideoDecodeError: The video cannot be opened.
        """
        return VideoReader(record.path, threads=threads, decoder=decoder, notices=self.notices)


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(index, epoch)`` so workers know the epoch.

    Lightning calls ``set_epoch`` on it every epoch and leaves it in place under DDP
    (it already is a ``DistributedSampler``). With ``num_replicas=1`` it is a seeded
    shuffling (or sequential) sampler.

    Args:
        dataset: The dataset.
        num_replicas: Number of processes.
        rank: This process's rank.
        shuffle: Shuffle with ``seed + epoch``.
        seed: Shuffling seed.
        drop_last: Drop the tail instead of padding shards to equal length.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((int(i), epoch) for i in super().__iter__())


class VideoDataset(Dataset):
    """Base class: decoding, cropping, per-item randomness and the bad-input policy.

    Args:
        records: Videos of the split.
        num_frames: Frames per clip (T).
        stride: Frame stride.
        frame_size: Short-side resize and square crop size (H = W).
        short_video: ``"loop"`` or ``"pad"`` (see ``sampling``).
        random_crop: Random square crop position per item (training) instead of centre.
        seed: Seed of the per-item generators.
        on_error: ``"skip"`` (warn, count, then substitute or mark) or ``"raise"``.
        split: Split name used in messages.
        substitute_bad: Replace a bad video by the next readable one (training); False
            returns a marker item instead, removed by ``collate_drop_bad`` (evaluation: use
            ``collate_fn``).
        decoder: Decoding backend, ``"pyav"`` or ``"torchcodec"`` (see ``video_io``).
        opener: Where the encoded videos come from; None reads the records' files.

    Raises:
        ValueError: Invalid argument.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        num_frames: int = 16,
        stride: int = 4,
        frame_size: int = 128,
        short_video: str = "loop",
        random_crop: bool = False,
        seed: int = 0,
        on_error: str = "skip",
        split: str = "train",
        substitute_bad: bool = True,
        decoder: str = "pyav",
        opener: VideoOpener | None = None,
    ) -> None:
        check_choice("on_error", on_error, ON_ERROR)
        if frame_size < 1:
            raise ValueError(f"frame_size must be >= 1, got {frame_size}")
        check_decoder(decoder)
        self.records = list(records)
        self.num_frames, self.stride, self.frame_size = num_frames, stride, frame_size
        self.short_video, self.random_crop = short_video, random_crop
        self.seed, self.on_error, self.split = seed, on_error, split
        self.substitute_bad, self.decoder = substitute_bad, decoder
        self.opener = opener if opener is not None else VideoOpener()
        self.epoch = 0
        # Per-video failure counts, in shared memory so worker processes report back.
        self.failures = torch.zeros(len(self.records), dtype=torch.int32).share_memory_()
        self._reported = torch.zeros_like(self.failures)
        self._frame_counts: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (``EpochSampler`` passes it explicitly)."""
        self.epoch = epoch

    @property
    def collate_fn(self):
        """The loader's collate function: ``collate_drop_bad`` unless bad videos are
        substituted (then ``default_collate``)."""
        return default_collate if self.substitute_bad else collate_drop_bad

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        index = int(index)
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} videos")
        if not self.substitute_bad:
            try:
                return self._load(index, item_generator(self.seed, epoch, index))
            except VideoDecodeError as err:
                self._mark_bad(index, err, "left out")
                return self._marker(index)
        n = len(self.records)
        for offset in range(min(n, _MAX_SUBSTITUTES)):
            candidate = (index + offset) % n
            if offset and self.failures[candidate] > 0:
                continue  # already known to be bad
            try:
                return self._load(candidate, item_generator(self.seed, epoch, candidate))
            except VideoDecodeError as err:
                self._mark_bad(candidate, err, "replaced by another video")
        raise RuntimeError(
            f"{self.split}: no readable video among the {min(n, _MAX_SUBSTITUTES)} videos "
            f"from index {index}; see the warnings above"
        )

    def load_item(self, index: int, epoch: int, video: VideoReader | None = None) -> dict[str, Any]:
        """Item ``index`` of ``epoch``, with no bad-video policy (errors propagate).

        The randomness is the item's own (``item_generator(seed, epoch, index)``), so the
        item equals ``dataset[(index, epoch)]`` of a readable video whatever reads it.

        Args:
            index: Position of the video in the split.
            epoch: Epoch number.
            video: The video already open (e.g. decoded from streamed bytes; closed here);
                None opens it with the ``opener``.

        Returns:
            The item (see the module docstring).

        Raises:
            VideoDecodeError: The video cannot be decoded.
        """
        return self._load(index, item_generator(self.seed, epoch, index), video)

    def _mark_bad(self, index: int, err: Exception, action: str) -> None:
        if self.on_error == "raise":
            raise err
        first = int(self.failures[index]) == 0
        self.failures[index] += 1
        if first:  # one warning per video (the end-of-epoch summary counts repeats)
            message = f"skipping video {self.records[index].path} ({self.split}, {action}): {err}"
            warnings.warn(message, VideoSkippedWarning, stacklevel=3)

    def _marker(self, index: int) -> dict[str, Any]:
        """The item of a bad video in an evaluation dataset (zero videos, ``skipped``)."""
        videos = {key: torch.zeros(shape, dtype=torch.uint8)
                  for key, shape in self._video_shapes().items()}
        return {**self._item(index, **videos), SKIPPED: torch.tensor(True)}

    def _clip_shape(self) -> tuple[int, int, int, int]:
        return 3, self.num_frames, self.frame_size, self.frame_size

    def _video_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"video": self._clip_shape()}

    def take_skip_report(self) -> dict[str, int]:
        """Skips since the previous call: ``{path: times}`` (main process; resets the delta)."""
        now = self.failures.clone()
        delta = now - self._reported
        self._reported = now
        return {self.records[i].path: int(delta[i]) for i in torch.nonzero(delta).flatten().tolist()}

    @property
    def bad_videos(self) -> list[str]:
        """Paths of every video that failed so far."""
        return [self.records[i].path for i in torch.nonzero(self.failures).flatten().tolist()]

    # -- decoding -------------------------------------------------------------------------

    def _open(self, index: int, video: VideoReader | None = None) -> tuple[VideoReader, int, int]:
        """Open a video (or take ``video``); returns (reader, first frame of the segment,
        segment length)."""
        record = self.records[index]
        threads = 1 if get_worker_info() is not None else 0
        reader = video if video is not None else self.opener(record, index, threads, self.decoder)
        first, length = 0, reader.info.num_frames
        if record.start_sec is not None and record.end_sec is not None:
            first, length = reader.frame_range(record.start_sec, record.end_sec)
        return reader, first, length

    def _crop_offset(self, generator: torch.Generator) -> tuple[float, float]:
        if not self.random_crop:
            return 0.5, 0.5
        x, y = torch.rand(2, generator=generator).tolist()
        return x, y

    def _decode(
        self, index: int, clips: Sequence[ClipSample], reader: VideoReader, first: int,
        crop: tuple[float, float],
    ) -> list[torch.Tensor]:
        """Decode clips of one video into uint8 (C, T, H, W) tensors."""
        wanted = [first + i for clip in clips for i in clip.frame_indices]
        frames = reader.read_frames(wanted, self.frame_size, crop)
        out = []
        for clip in clips:
            array = np.stack([frames[first + i] for i in clip.frame_indices])  # (T, H, W, C)
            # numpy's uint8 transpose copy is ~30x faster than torch's permute().contiguous()
            out.append(torch.from_numpy(np.ascontiguousarray(array.transpose(3, 0, 1, 2))))
        return out

    def _load(
        self, index: int, generator: torch.Generator, video: VideoReader | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _item(self, index: int, **videos: torch.Tensor) -> dict[str, Any]:
        record = self.records[index]
        label = torch.tensor(record.label, dtype=torch.int64)
        return {**videos, "label": label, "index": torch.tensor(index, dtype=torch.int64)}


class PretrainClipDataset(VideoDataset):
    """Pretraining items: anchor ``video`` and ``video_shift`` (start >= ``min_gap`` apart).

    Both clips share the crop position, so they differ only in time (the temporal-shift
    negative of docs/method.md). Too-short videos use ``PairClipSampler``'s documented fallback.

    Args:
        records: Videos of the split.
        min_gap: Minimum start difference between the two clips, in frames.
        **kwargs: ``VideoDataset`` arguments.
    """

    def __init__(self, records: Sequence[VideoRecord], min_gap: int = 2, **kwargs: Any) -> None:
        kwargs.setdefault("random_crop", True)
        super().__init__(records, **kwargs)
        self.sampler = PairClipSampler(self.num_frames, self.stride, min_gap, self.short_video)

    def _video_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"video": self._clip_shape(), "video_shift": self._clip_shape()}

    def _load(
        self, index: int, generator: torch.Generator, video: VideoReader | None = None
    ) -> dict[str, Any]:
        reader, first, length = self._open(index, video)
        with reader:
            pair = self.sampler(length, generator)
            anchor, shift = self._decode(
                index, (pair.anchor, pair.shift), reader, first, self._crop_offset(generator)
            )
        return self._item(index, video=anchor, video_shift=shift)


class LabelledClipDataset(VideoDataset):
    """Labelled single clips: random clip and crop (``random_clip=True``) or the centre clip.

    Args:
        records: Videos of the split.
        random_clip: Random temporal position and crop (training) instead of centre ones.
        **kwargs: ``VideoDataset`` arguments.
    """

    def __init__(
        self, records: Sequence[VideoRecord], random_clip: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("random_crop", random_clip)
        super().__init__(records, **kwargs)
        self.random_clip = random_clip
        if random_clip:
            self.sampler = RandomClipSampler(self.num_frames, self.stride, self.short_video)
        else:
            self.sampler = UniformClipSampler(self.num_frames, self.stride, 1, self.short_video)

    def _load(
        self, index: int, generator: torch.Generator, video: VideoReader | None = None
    ) -> dict[str, Any]:
        reader, first, length = self._open(index, video)
        with reader:
            sample = self.sampler(length, generator)
            clip = sample if isinstance(sample, ClipSample) else sample.clips[0]
            (video,) = self._decode(index, (clip,), reader, first, self._crop_offset(generator))
        return self._item(index, video=video)


class MultiViewClipDataset(VideoDataset):
    """Evaluation items: ``n_clips`` uniformly spaced windows, ``video`` (V, C, T, H, W).

    Args:
        records: Videos of the split.
        n_clips: Number of temporal windows V.
        **kwargs: ``VideoDataset`` arguments (crops are centred).
    """

    def __init__(self, records: Sequence[VideoRecord], n_clips: int = 10, **kwargs: Any) -> None:
        super().__init__(records, **kwargs)
        self.n_clips = n_clips
        self.sampler = UniformClipSampler(self.num_frames, self.stride, n_clips, self.short_video)

    def _video_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"video": (self.n_clips, *self._clip_shape())}

    def _load(
        self, index: int, generator: torch.Generator, video: VideoReader | None = None
    ) -> dict[str, Any]:
        reader, first, length = self._open(index, video)
        with reader:
            clips = self.sampler(length).clips
            views = self._decode(index, clips, reader, first, self._crop_offset(generator))
        return self._item(index, video=torch.stack(views))


#: Dataset class of each ``VideoDataModule.dataset`` kind.
DATASET_KINDS: dict[str, type[VideoDataset]] = {
    "pretrain": PretrainClipDataset,
    "clip": LabelledClipDataset,
    "multiview": MultiViewClipDataset,
}


def clip_dataset(kind: str, records: Sequence[VideoRecord], **kwargs: Any) -> VideoDataset:
    """The map-style dataset of ``kind`` (a key of ``DATASET_KINDS``) over ``records``.

    Raises:
        ValueError: Unknown ``kind`` (the message names it).
    """
    check_choice("kind", kind, tuple(DATASET_KINDS))
    return DATASET_KINDS[kind](records, **kwargs)
