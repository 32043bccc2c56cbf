"""Memory of a pretraining run: peak RSS (main process + loader workers) and its growth.

A real ``pl.Trainer`` runs DSM pretraining (``VideoDataModule`` with persistent PyAV
workers -> ``TripletBuilder`` -> ``DSMLightningModule``) for ``epochs`` epochs on a small
synthetic set while a thread samples the resident set size of the process tree (psutil,
every 50 ms). Per epoch we keep the peak of the summed RSS; summing RSS counts pages the
forked workers share with the main process more than once, so the absolute figure is an
upper bound, while the epoch-to-epoch growth is what matters.

Convention (higher is better): ``ratio = 1.05 * rss(epoch 2) / rss(last epoch)``, goal 1.0,
i.e. the peak RSS of epoch 10 is at most 5% above that of epoch 2. Quick mode runs 3 epochs
without workers and compares epoch 3 with epoch 2. Run: ``python -m benchmarks.bench_memory [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

import psutil
import pytorch_lightning as pl
import torch

from benchmarks.bench_pretrain import QUICK_SYNTHETIC, trainer
from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.sources import SyntheticSource
from dsm_lightning.modules.dsm import DSMLightningModule

MIB = 2.0**20


def tree_rss(process: psutil.Process) -> int:
    """Summed RSS in bytes of ``process`` and all its descendants (gone ones are skipped)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class RSSMonitor(pl.Callback):
    """Sample the process tree's RSS in a thread; keep the peak of every training epoch."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.epoch_peaks: list[int] = []
        self.peak = 0
        self._current = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process(os.getpid())

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self._process)
            self._current = max(self._current, rss)
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval_s)

    def on_train_start(self, trainer, pl_module) -> None:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._current = tree_rss(self._process)
        self.peak = max(self.peak, self._current)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._current = max(self._current, tree_rss(self._process))
        self.peak = max(self.peak, self._current)
        self.epoch_peaks.append(self._current)

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run(quick: bool = False) -> list[dict]:
    """Peak RSS and epoch-2 vs last-epoch RSS of a small pretraining run."""
    torch.set_num_threads(os.cpu_count() or 1)
    epochs = 3 if quick else 10
    cache = tempfile.mkdtemp(prefix="bench-mem-")
    if quick:
        synthetic = dict(QUICK_SYNTHETIC, cache_dir=cache)
        clip = dict(num_frames=4, stride=2, frame_size=32, crop_size=28)
        batch, workers = 2, 0
    else:
        synthetic = dict(num_classes=4, videos_per_class=8, eval_videos_per_class=1,
                         num_frames=32, size=64, cache_dir=cache)
        clip = dict(num_frames=8, stride=2, frame_size=64, crop_size=56)
        batch, workers = 4, 2
    dm = VideoDataModule(task="pretrain", batch_size=batch, num_workers=workers,
                         persistent_workers=True, **clip, source=SyntheticSource(**synthetic))
    model = DSMLightningModule(backbone="tiny3d", backbone_kwargs={"width": 8},
                               queue_size=64)
    monitor = RSSMonitor()
    pl.seed_everything(0, verbose=False)
    start = time.perf_counter()
    trainer(-1, [monitor], max_epochs=epochs).fit(model, dm)
    seconds = time.perf_counter() - start
    peaks = [p / MIB for p in monitor.epoch_peaks]
    return [{
        "name": "memory_rss_growth",
        "ratio": 1.05 * peaks[1] / peaks[-1],
        "goal": 1.0,
        "what": (
            f"peak RSS of epoch 2 (x 1.05) vs epoch {epochs} (main + {workers} persistent "
            f"workers, summed RSS) of DSM pretraining, tiny3d, batch {batch}, "
            f"clips 3x{clip['num_frames']}x{clip['crop_size']}x{clip['crop_size']}, "
            f"{len(dm.records('train'))} videos"
        ),
        "a_mib": peaks[1],
        "b_mib": peaks[-1],
        "unit": "MiB",
        "peak_rss_mib": monitor.peak / MIB,
        "epoch_peak_rss_mib": peaks,
        "run_s": seconds,
    }]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 tiny epochs, seconds")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
