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
import torch
from helpers.fit_configs import fit_trainer_yaml, logged_losses

from dsm_lightning import cli

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
