"""Run a few DSM steps on 1 or 2 CPU processes (gloo) and save each rank's final state.

Usage: python tests/helpers/pretrain_ddp_script.py OUT_DIR DEVICES NORM [SYNC_BN]
(Lightning's DDP launcher re-runs this script for rank 1.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the helpers package
from dsm_lightning.modules.dsm import DSMLightningModule  # noqa: E402
from helpers.pretrain_data import TripletDataModule  # noqa: E402

GLOBAL_BATCH, STEPS = 8, 4


class _Losses(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def main() -> None:
    out, devices, norm = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    sync_bn = len(sys.argv) > 4 and sys.argv[4] == "1"
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = DSMLightningModule(
        backbone="tiny3d", backbone_kwargs={"width": 4, "norm": norm}, queue_size=12,
        lr=0.05, momentum=0.9, sync_batchnorm=sync_bn,
    )
    record = _Losses()
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, callbacks=[record],
        default_root_dir=str(out),
    )
    data = TripletDataModule(n=GLOBAL_BATCH * STEPS, batch_size=GLOBAL_BATCH,
                             rank_slices=devices)
    trainer.fit(model, data)
    torch.save(
        {
            "losses": record.losses,
            "queue": model.queue.keys.clone(),
            "ptr": int(model.queue.ptr),
            "params": {k: v.clone() for k, v in model.state_dict().items()},
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
