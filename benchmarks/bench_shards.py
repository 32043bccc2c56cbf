"""Shards vs file tree: training loader clips/s on the same videos, and the packing cost.

The same synthetic videos are read two ways by ``VideoDataModule(task="pretrain")`` with the
same settings (workers, batch, clip span): from the file tree (``SyntheticSource``) and from
LitData shards written by ``dsm prepare`` (``source="shards"``, a local folder). Both give
the same clips (tests/data/test_shards.py); both keep their workers between epochs (what a
training run does), the loaders take turns epoch by epoch, best of the timed epochs after a
warm-up epoch. The packing cost (indexing + writing, cold frame-index
cache, one process) is reported per video next to what one training epoch costs per video
from the files. Run: ``python -m benchmarks.bench_shards [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.frame_index import CACHE, INDEX_DIR_ENV
from dsm_lightning.data.sources import SyntheticSource
from dsm_lightning.prepare import prepare_shards


def _epoch_clips_per_s(loader, clips_per_item: int, epoch: int) -> float:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    count, start = 0, time.perf_counter()
    for batch in loader:
        count += len(batch["video"]) * clips_per_item
    return count / (time.perf_counter() - start)


def _best_clips_per_s(loaders: list, epochs: int) -> list[float]:
    """Best clips/s of each loader over ``epochs`` timed epochs after a warm-up epoch,
    taking turns so that a slow spell of a shared machine hits both alike."""
    rates: list[list[float]] = [[] for _ in loaders]
    for epoch in range(epochs + 1):
        for rate, loader in zip(rates, loaders):
            measured = _epoch_clips_per_s(loader, 2, epoch)
            if epoch:
                rate.append(measured)
    return [max(rate) for rate in rates]


def _folder_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run(quick: bool = False) -> list[dict]:
    """Rows: ``shards_vs_files_loader`` (goal 1.0) and ``shards_prepare_per_video``."""
    work = tempfile.mkdtemp(prefix="bench-shards-")
    if quick:
        setting = dict(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                       num_frames=16, size=32, cache_dir=os.path.join(work, "videos"))
        clip = dict(num_frames=4, stride=2, frame_size=32, crop_size=28)
        workers, batch, epochs, chunk = 0, 4, 1, "64kb"
    else:
        setting = dict()  # the default synthetic set: 8 classes x 48 videos, 64 px, 48 frames
        clip = dict(num_frames=16, stride=2, frame_size=64, crop_size=56)
        workers, batch, epochs, chunk = 2, 16, 5, "64MB"
    common = dict(num_workers=workers, batch_size=batch, drop_last=False, task="pretrain",
                  persistent_workers=workers > 0, **clip)
    try:
        files = VideoDataModule(source=SyntheticSource(**setting), **common)
        files.prepare_data()
        files.setup("fit")
        videos = len(files.records("train"))
        # packing from a cold frame-index cache: demux + read + write, one process
        previous = os.environ.get(INDEX_DIR_ENV)
        os.environ[INDEX_DIR_ENV] = os.path.join(work, "fresh_index")
        CACHE.clear()
        shards = os.path.join(work, "shards")
        start = time.perf_counter()
        prepare_shards(files, shards, splits=["train"], chunk_bytes=chunk, progress=False)
        prepare_ms = 1000 * (time.perf_counter() - start) / videos
        if previous is None:
            os.environ.pop(INDEX_DIR_ENV, None)
        else:
            os.environ[INDEX_DIR_ENV] = previous
        streamed = VideoDataModule(source="shards", root=shards, **common)
        from_shards, from_files = _best_clips_per_s(
            [streamed.train_dataloader(), files.train_dataloader()], epochs)
        tree_bytes = sum(os.path.getsize(r.path) for r in files.records("train"))
        shard_bytes = _folder_bytes(shards)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    described = (f"{videos} videos, pretrain pairs (3, {clip['num_frames']}, "
                 f"{clip['frame_size']}, {clip['frame_size']}) stride {clip['stride']}, "
                 f"{workers} persistent workers, batch {batch}")
    epoch_ms = 1000 * 2 / from_files  # one pair per video and epoch
    return [
        {
            "name": "shards_vs_files_loader",
            "ratio": from_shards / from_files,
            "goal": 1.0,
            "what": f"train loader from LitData shards (local) vs from the file tree; {described}",
            "a_per_s": from_shards,
            "b_per_s": from_files,
            "unit": "clips/s",
            "shard_bytes_over_tree_bytes": shard_bytes / tree_bytes,
        },
        {
            "name": "shards_prepare_per_video",
            "ratio": epoch_ms / prepare_ms,
            "goal": None,
            "what": ("one training epoch from the file tree (ms per video) vs packing a video "
                     f"into shards (ms per video: index + copy, cold cache, 1 process); "
                     f"{described}"),
            "a_ms_per_video": epoch_ms,
            "b_ms_per_video": prepare_ms,
            "unit": "ms/video",
            "prepare_ms_per_video": prepare_ms,
        },
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run (a few seconds)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(run(quick=args.quick), indent=1))
