"""YAML pieces shared by the tests that run ``dsm fit`` on CPU, and the losses those runs log."""

from __future__ import annotations

import csv
from pathlib import Path

_TRAINER = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  log_every_n_steps: 1
{logger}\
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{run}/ckpt", filename: "epoch={{epoch}}", every_n_epochs: 1,
                  save_top_k: -1, auto_insert_metric_name: false}}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{run}/ckpt", filename: "step={{step}}", every_n_train_steps: {steps},
                  save_top_k: -1, auto_insert_metric_name: false}}
"""


def csv_logger_yaml(run: Path | str) -> str:
    """``trainer`` lines (two-space indent) of a quiet run logging to ``<run>/metrics.csv``."""
    return (
        "  enable_progress_bar: false\n"
        "  enable_model_summary: false\n"
        "  logger:\n"
        "    class_path: pytorch_lightning.loggers.CSVLogger\n"
        f'    init_args: {{save_dir: "{run}", name: "", version: ""}}\n'
    )


def fit_trainer_yaml(run: Path | str, every_n_train_steps: int) -> str:
    """``seed_everything`` and a quiet 2-epoch CPU ``trainer`` saving ``<run>/ckpt/epoch=E.ckpt``
    each epoch and ``<run>/ckpt/step=S.ckpt`` every ``every_n_train_steps`` steps."""
    return _TRAINER.format(logger=csv_logger_yaml(run), run=run, steps=every_n_train_steps)


def logged_losses(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(``train/loss_step`` by step, ``train/loss_epoch`` by epoch) from ``<run>/metrics.csv``."""
    steps, epochs = {}, {}
    with open(run / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss_step"):
                steps[int(row["step"])] = float(row["train/loss_step"])
            if row.get("train/loss_epoch"):
                epochs[int(row["epoch"])] = float(row["train/loss_epoch"])
    return steps, epochs


#: pretraining configs that follow a public script (224 px, queue 3569) instead of the
#: library's 112 px family: tests/project/test_configs.py leaves them to test_reproduce.py
SCRIPT_CONFIGS = {"pretrain_ucf101_i3d", "pretrain_ucf101_moco_i3d",
                  "pretrain_ucf101_dsm_triplet_i3d", "pretrain_ssv2_i3d", "pretrain_diving48_i3d"}
