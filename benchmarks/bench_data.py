"""Data loading throughput: VideoDataModule's train loader vs a bare PyAV decode loop.

Both read the same synthetic videos with the same DataLoader settings (workers, batch size)
and the same clip span (``num_frames`` frames every ``stride``), resize to the same size
and return uint8 (C, T, H, W) clips. The bare loop has no sampling logic, no bad-input
handling and no item determinism, but uses the same fast primitives as the data layer (one
decoder thread inside workers, a cached libswscale context, numpy's transpose), so the ratio
is the cost of the DataModule's own logic, frame-exact decoding included (the frame index
of each file is built once, by demuxing, and read back from its cache afterwards: the rows
also report what building and reading an index costs per file). (With the per-frame
``frame.reformat`` and torch ``permute().contiguous()`` idiom a bare loop is ~3x slower than
the DataModule.)
Run: ``python -m benchmarks.bench_data [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dsm_lightning.data import video_io
from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.frame_index import CACHE, FrameIndex, file_key
from dsm_lightning.data.sources import SyntheticSource


class BarePyAVClips(Dataset):
    """Random clip per video: seek, decode the span, convert the sampled frames."""

    def __init__(self, paths: list[str], num_frames: int, stride: int, size: int) -> None:
        self.paths, self.num_frames, self.stride, self.size = paths, num_frames, stride, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        span = (self.num_frames - 1) * self.stride + 1
        with av.open(self.paths[index]) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = 1 if get_worker_info() is not None else 0
            reformatter = VideoReformatter()
            total = stream.frames
            start = int(np.random.randint(0, max(1, total - span + 1)))
            if start:
                pts = int(start / float(stream.average_rate) / float(stream.time_base))
                container.seek(pts, stream=stream, backward=True)
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                position = round(frame.pts * float(stream.time_base) * float(stream.average_rate))
                if position >= start and (position - start) % self.stride == 0:
                    frame = reformatter.reformat(
                        frame, width=self.size, height=self.size, format="rgb24"
                    )
                    frames.append(frame.to_ndarray())
                if len(frames) == self.num_frames or i > total:
                    break
        return torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(3, 0, 1, 2)))


def _epoch_clips_per_s(loader, clips_per_item: int, epoch: int) -> float:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    count, start = 0, time.perf_counter()
    for batch in loader:
        video = batch["video"] if isinstance(batch, dict) else batch
        count += len(video) * clips_per_item
    return count / (time.perf_counter() - start)


def _best_clips_per_s(loaders: list[tuple[DataLoader, int]], epochs: int) -> list[float]:
    """Clips/s of each ``(loader, clips per item)``: the best of ``epochs`` timed epochs after
    a warm-up epoch (workers, file cache, frame indexes), the loaders taking turns epoch by
    epoch so that a slow spell of a shared machine hits both alike."""
    rates: list[list[float]] = [[] for _ in loaders]
    for epoch in range(epochs + 1):
        for rate, (loader, per_item) in zip(rates, loaders):
            measured = _epoch_clips_per_s(loader, per_item, epoch)
            if epoch:
                rate.append(measured)
    return [max(rate) for rate in rates]


def index_costs(paths: list[str]) -> dict[str, float]:
    """Milliseconds per file to build a frame index (demux) and to read it from disk."""
    directory = tempfile.mkdtemp(prefix="bench-index-")
    start = time.perf_counter()
    for path in paths:
        CACHE.put(file_key(path), video_io._build_index(path), directory)
    build = time.perf_counter() - start
    CACHE.clear()
    start = time.perf_counter()
    for path in paths:
        index = CACHE.get(file_key(path), directory)
        assert isinstance(index, FrameIndex)
    load = time.perf_counter() - start
    CACHE.clear()
    return {"index_build_ms_per_file": 1000 * build / len(paths),
            "index_read_ms_per_file": 1000 * load / len(paths)}


def run(quick: bool = False) -> list[dict]:
    """Clips/s of the train loader (classify and pretrain tasks) vs a bare PyAV loop."""
    if quick:
        cache = tempfile.mkdtemp(prefix="bench-data-")
        setting = dict(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                       num_frames=16, size=32, cache_dir=cache)
        clip = dict(num_frames=4, stride=2, frame_size=32, crop_size=28)
        workers, batch, epochs = 0, 4, 1
    else:
        setting = dict()  # the default synthetic set: 8 classes x 48 videos, 64 px, 48 frames
        clip = dict(num_frames=16, stride=2, frame_size=64, crop_size=56)
        workers, batch, epochs = 2, 16, 3
    common = dict(num_workers=workers, batch_size=batch, drop_last=False,
                  source=SyntheticSource(**setting), **clip)
    results = []
    for task, per_item in (("classify", 1), ("pretrain", 2)):
        dm = VideoDataModule(task=task, **common)
        dm.prepare_data()
        dm.setup("fit")
        paths = [r.path for r in dm.records("train")]
        bare_ds = BarePyAVClips(paths, clip["num_frames"], clip["stride"], clip["frame_size"])
        bare_loader = DataLoader(bare_ds, batch_size=batch, shuffle=True, num_workers=workers)
        ours, bare = _best_clips_per_s(
            [(dm.train_dataloader(), per_item), (bare_loader, 1)], epochs
        )
        costs = index_costs(paths)
        results.append({
            "name": f"data_train_loader_{task}",
            "ratio": ours / bare,
            "goal": 0.9,
            "what": (f"VideoDataModule(task={task}) train loader vs bare PyAV loop, "
                     f"{len(paths)} videos, clips (3, {clip['num_frames']}, "
                     f"{clip['frame_size']}, {clip['frame_size']}) stride {clip['stride']}, "
                     f"{workers} workers, batch {batch}"),
            "a_per_s": ours,
            "b_per_s": bare,
            "unit": "clips/s",
            **costs,
        })
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run (a few seconds)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(run(quick=args.quick), indent=1))
