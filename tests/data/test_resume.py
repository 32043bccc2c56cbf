"""Exact resume through the CLI: ``dsm fit --ckpt_path`` continues the uninterrupted run.

The device-side draws come from a generator seeded per batch from (seed, epoch, batch,
rank) and the training loader restarts a resumed epoch at the batch it stopped at, so a run
resumed at an epoch boundary or mid-epoch ends with bit-identical weights, queue keys and
per-step losses (CPU, default DSM settings, the synthetic source).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers.fit_configs import fit_trainer_yaml, logged_losses
from pytorch_lightning.callbacks import ModelCheckpoint

from dsm_lightning import cli
from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.sources import SyntheticSource

STEPS_PER_EPOCH = 4  # 2 classes x 4 videos, batch 2

CONFIG = """\
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
    config.write_text(fit_trainer_yaml(run, every_n_train_steps=3)
                      + CONFIG.format(cache=tmp_path / "cache"))
    assert cli.main(["fit", "--config", str(config), *extra]) == 0
    return run


def _state(run: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run / "ckpt" / "epoch=1.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2 * STEPS_PER_EPOCH
    return checkpoint["state_dict"]


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

    full_steps, full_epochs = logged_losses(full)
    assert sorted(full_steps) == list(range(2 * STEPS_PER_EPOCH))
    boundary_steps, boundary_epochs = logged_losses(boundary)
    assert sorted(boundary_steps) == list(range(STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH))
    assert boundary_epochs == {1: full_epochs[1]}
    middle_steps, _ = logged_losses(middle)
    assert sorted(middle_steps) == [6, 7]
    for resumed in (boundary_steps, middle_steps):
        assert resumed == {step: full_steps[step] for step in resumed}


# ------------------------------------------------- the position reaches the loader either way


class _Recorder(pl.LightningModule):
    """Records what each step trained on (epoch, videos, anchors); with ``estimated``,
    ``configure_optimizers`` reads ``estimated_stepping_batches`` as the LR schedules do,
    which makes Lightning build the training loader before it restores the checkpoint."""

    def __init__(self, estimated: bool) -> None:
        super().__init__()
        self.estimated = estimated
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.steps: dict[int, tuple[int, list[int], torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        self.steps[self.global_step] = (self.current_epoch, batch["index"].tolist(),
                                        batch["anchor"].clone())
        return (batch["anchor"].mean() * self.weight).sum()

    def configure_optimizers(self):
        if self.estimated:
            assert self.trainer.estimated_stepping_batches == 2 * STEPS_PER_EPOCH
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _recorded_fit(tmp_path: Path, estimated: bool, ckpt: Path | None = None) -> _Recorder:
    source = SyntheticSource(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                             num_frames=12, size=32, cache_dir=str(tmp_path / "cache"))
    data = VideoDataModule(source=source, num_frames=4, stride=2, frame_size=32, crop_size=32,
                           batch_size=2, num_workers=0)
    model = _Recorder(estimated)
    every_two = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", save_top_k=-1,
                                every_n_train_steps=2, auto_insert_metric_name=False)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, callbacks=[every_two],
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt)
    return model


@pytest.mark.parametrize("estimated, route", [
    (True, "data module"),  # the loader's own state is never restored in this case
    (False, "loader"),      # Lightning's saved loader state only (no data module entry)
])
def test_mid_epoch_resume_starts_at_the_saved_batch(tmp_path, estimated, route):
    """Resumed from the checkpoint after batch 2 of epoch 1, the run trains batches 2 and 3
    of epoch 1 with the uninterrupted run's videos and device draws (not the epoch's start)."""
    full = _recorded_fit(tmp_path, estimated)
    assert sorted(full.steps) == list(range(2 * STEPS_PER_EPOCH))
    ckpt = tmp_path / "ckpt" / "6.ckpt"
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert checkpoint["VideoDataModule"] == {"train_loader": {"epoch": 1, "batches": 2}}
    if route == "loader":
        assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
            {"epoch": 1, "batches": 2}]
        del checkpoint["VideoDataModule"]
        ckpt = tmp_path / "loader_state_only.ckpt"
        torch.save(checkpoint, ckpt)
    resumed = _recorded_fit(tmp_path, estimated, ckpt)
    assert sorted(resumed.steps) == [6, 7]
    for step, (epoch, videos, anchor) in resumed.steps.items():
        assert (epoch, videos) == full.steps[step][:2], step
        assert torch.equal(anchor, full.steps[step][2]), step
