"""Fed pretraining throughput vs model-only throughput, both through a real ``pl.Trainer``.

- fed: ``VideoDataModule(task="pretrain")`` train loader (PyAV decode in workers) ->
  ``on_after_batch_transfer`` (``TripletBuilder``: simple augs, SLD, temporal-shift negative)
  -> ``DSMLightningModule`` step (query + hard-negative passes with gradient, key pass,
  queue, EMA).
- model-only: the same module, backbone, batch and Trainer step, fed a triplet batch that is
  already in memory (built once by the same loader and builder, then repeated).

Throughput is counted between the ends of training steps after a warm-up (worker start,
first allocations), so both sides are timed the same way. Ratio = fed / model-only, goal 0.9.

Loader workers on a CPU-only machine: every worker process takes CPU time from the model's
own threads (here 2 cores for 2 torch threads), so the fed run is decoded in the main
process (``num_workers=0``): measured on this 2-core machine, fed / model-only = 0.70 with
2 persistent workers, 0.90 with 1 and 1.01 with 0 (decoding costs ~20 ms of a ~0.9 s step).
With a GPU the workers do not compete with the model and 2+ workers are the right choice.

Full mode uses torchvision ``r3d_18`` on 8 x 56 x 56 clips (batch 2, in-process loading): at the
paper's 16 x 112 x 112 one DSM step of batch 8 (two forward+backward passes and a key pass)
takes over a minute on 2 CPU cores, too long for a benchmark run; quick mode uses ``tiny3d``. Run: ``python -m benchmarks.bench_pretrain``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.sources import SyntheticSource
from dsm_lightning.modules.dsm import DSMLightningModule

QUICK_SYNTHETIC = dict(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                       num_frames=16, size=32)


class StepTimer(pl.Callback):
    """Record the wall-clock time at the end of every training step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())

    def per_s(self, batch_size: int, warmup: int) -> float:
        """Samples per second over the steps after the first ``warmup`` ones."""
        ends = self.ends[warmup - 1 :] if warmup > 0 else self.ends
        if len(ends) < 2:
            raise RuntimeError(f"need at least {warmup + 1} timed steps, got {len(self.ends)}")
        return batch_size * (len(ends) - 1) / (ends[-1] - ends[0])


class _RepeatBatch(Dataset):
    """The same ready-made batch ``length`` times (``DataLoader(batch_size=None)``)."""

    def __init__(self, batch: dict[str, torch.Tensor], length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batch


class InMemoryTriplets(pl.LightningDataModule):
    """A DataModule whose train loader repeats one in-memory triplet batch (no workers)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_RepeatBatch(self.batch, self.steps), batch_size=None)


def trainer(max_steps: int, callbacks: list, devices: int = 1, **kwargs: Any) -> pl.Trainer:
    """A quiet single-process CPU Trainer that stops after ``max_steps`` steps (-1: epochs)."""
    return pl.Trainer(
        accelerator="cpu", devices=devices, max_steps=max_steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks, **kwargs,
    )


def settings(quick: bool) -> dict[str, Any]:
    """Backbone, clip and loader settings of the quick / full runs."""
    if quick:
        return dict(
            backbone="tiny3d", backbone_kwargs={"width": 4},
            clip=dict(num_frames=4, stride=2, frame_size=32, crop_size=28),
            synthetic=dict(QUICK_SYNTHETIC, cache_dir=tempfile.mkdtemp(prefix="bench-pre-")),
            batch=2, workers=0, warmup=1, steps=2,
        )
    return dict(
        backbone="r3d_18", backbone_kwargs={},
        clip=dict(num_frames=8, stride=4, frame_size=64, crop_size=56),
        synthetic=dict(),  # the default synthetic set: 8 classes x 48 videos, 64 px
        batch=2, workers=0, warmup=2, steps=8,
    )


def make_datamodule(cfg: dict[str, Any]) -> VideoDataModule:
    """The pretraining DataModule of ``cfg`` (persistent workers when there are any)."""
    return VideoDataModule(
        task="pretrain", batch_size=cfg["batch"], num_workers=cfg["workers"],
        persistent_workers=cfg["workers"] > 0, **cfg["clip"],
        source=SyntheticSource(**cfg["synthetic"]),
    )


def make_model(cfg: dict[str, Any]) -> DSMLightningModule:
    """The DSM module of ``cfg`` (no encoder export)."""
    return DSMLightningModule(
        backbone=cfg["backbone"], backbone_kwargs=cfg["backbone_kwargs"], queue_size=256,
    )


def one_triplet_batch(dm: VideoDataModule) -> dict[str, torch.Tensor]:
    """One real training batch after the device transform (what the module's step receives)."""
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))

    class _Training:  # on_after_batch_transfer builds triplets only while training
        training = True

    dm.trainer = _Training()  # type: ignore[assignment]
    try:
        return {k: v.clone() for k, v in dm.on_after_batch_transfer(batch, 0).items()}
    finally:
        dm.trainer = None


def run(quick: bool = False) -> list[dict]:
    """Fed vs model-only DSM pretraining samples/s (quick: tiny3d, a few seconds)."""
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = settings(quick)
    total = cfg["warmup"] + cfg["steps"]

    pl.seed_everything(0, verbose=False)
    ready = one_triplet_batch(make_datamodule(dict(cfg, workers=0)))
    timer_model = StepTimer()
    trainer(total, [timer_model]).fit(make_model(cfg), InMemoryTriplets(ready, total))
    model_per_s = timer_model.per_s(cfg["batch"], cfg["warmup"])

    pl.seed_everything(0, verbose=False)
    timer_fed = StepTimer()
    trainer(total, [timer_fed]).fit(make_model(cfg), make_datamodule(cfg))
    fed_per_s = timer_fed.per_s(cfg["batch"], cfg["warmup"])

    c = cfg["clip"]
    return [{
        "name": "pretrain_fed_vs_model_only",
        "ratio": fed_per_s / model_per_s,
        "goal": 0.9,
        "what": (
            f"DSM step of {cfg['backbone']} fed by VideoDataModule (PyAV, {cfg['workers']} "
            f"persistent workers) + TripletBuilder vs the same step on an in-memory triplet "
            f"batch; batch {cfg['batch']}, clips 3x{c['num_frames']}x{c['crop_size']}x"
            f"{c['crop_size']} (decoded at {c['frame_size']} px, stride {c['stride']}); "
            f"{cfg['steps']} timed steps after {cfg['warmup']}; "
            f"cpu, {torch.get_num_threads()} threads"
        ),
        "a_per_s": fed_per_s,
        "b_per_s": model_per_s,
        "unit": "samples/s",
        "step_s_model_only": cfg["batch"] / model_per_s,
    }]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and clips, seconds")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
