"""Exact resume through the CLI: ``dsm fit --ckpt_path`` continues the uninterrupted run.

The device-side draws come from a generator seeded per batch from (seed, epoch, batch,
rank) and the training loader restarts a resumed epoch at the batch it stopped at, so a run
resumed at an epoch boundary or mid-epoch ends with bit-identical weights, queue keys and
per-step losses (CPU, default DSM settings, the synthetic source).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

from dsm_lightning import cli

STEPS_PER_EPOCH = 4  # 2 classes x 4 videos, batch 2

CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args: {{save_dir: "{run}", name: "", version: ""}}
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{run}/ckpt", filename: "epoch={{epoch}}", every_n_epochs: 1,
                  save_top_k: -1, auto_insert_metric_name: false}}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{run}/ckpt", filename: "step={{step}}", every_n_train_steps: 3,
                  save_top_k: -1, auto_insert_metric_name: false}}
model:
  class_path: DSMLightningModule
  init_args:
    backbone: tiny3d
    backbone_kwargs: {{width: 4}}
    queue_size: 16
data:
  class_path: VideoDataModule
  init_args:
    source:
      class_path: SyntheticSource
      init_args: {{num_classes: 2, videos_per_class: 4, eval_videos_per_class: 1,
                  num_frames: 12, size: 32, cache_dir: "{cache}"}}
    num_frames: 4
    stride: 2
    frame_size: 32
    crop_size: 32
    batch_size: 2
    num_workers: 0
"""


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dsm"])


def _fit(tmp_path: Path, name: str, *extra: str) -> Path:
    run = tmp_path / name
    run.mkdir()
    config = run / "config_in.yaml"
    config.write_text(CONFIG.format(run=run, cache=tmp_path / "cache"))
    assert cli.main(["fit", "--config", str(config), *extra]) == 0
    return run


def _state(run: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run / "ckpt" / "epoch=1.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2 * STEPS_PER_EPOCH
    return checkpoint["state_dict"]


def _losses(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(per-step ``train/loss_step`` by step, per-epoch ``train/loss_epoch`` by epoch)."""
    steps, epochs = {}, {}
    with open(run / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss_step"):
                steps[int(row["step"])] = float(row["train/loss_step"])
            if row.get("train/loss_epoch"):
                epochs[int(row["epoch"])] = float(row["train/loss_epoch"])
    return steps, epochs


def test_resume_is_bit_identical_at_an_epoch_boundary_and_mid_epoch(tmp_path):
    full = _fit(tmp_path, "full")
    ckpt = full / "ckpt"
    boundary = _fit(tmp_path, "boundary", "--ckpt_path", str(ckpt / "epoch=0.ckpt"))
    middle = _fit(tmp_path, "middle", "--ckpt_path", str(ckpt / "step=6.ckpt"))  # epoch 1, 2 of 4

    reference = _state(full)
    assert any(k.startswith("queue.") for k in reference)  # the queue keys are compared too
    for run in (boundary, middle):
        state = _state(run)
        assert state.keys() == reference.keys()
        differences = {k: (state[k].double() - reference[k].double()).abs().max().item()
                       for k in reference if state[k].is_floating_point()}
        assert max(differences.values()) == 0.0, {k: v for k, v in differences.items() if v}
        for key in reference:
            assert torch.equal(state[key], reference[key]), key

    full_steps, full_epochs = _losses(full)
    assert sorted(full_steps) == list(range(2 * STEPS_PER_EPOCH))
    boundary_steps, boundary_epochs = _losses(boundary)
    assert sorted(boundary_steps) == list(range(STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH))
    assert boundary_epochs == {1: full_epochs[1]}
    middle_steps, _ = _losses(middle)
    assert sorted(middle_steps) == [6, 7]
    for resumed in (boundary_steps, middle_steps):
        assert resumed == {step: full_steps[step] for step in resumed}
