"""Pretrain 2 epochs on shards with 2 CPU processes (gloo) x 2 loader workers; save what
each rank saw (epoch, worker, video index) and its final state.

Usage: python tests/helpers/shards_ddp_script.py SHARD_ROOT OUT_DIR
(Lightning's DDP launcher re-runs this script for rank 1.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import get_worker_info

from dsm_lightning.data import shard_stream
from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.modules.dsm import DSMLightningModule

_item = shard_stream.ShardStream._clip_item


def _tagged(self, sample):
    """The item plus the id of the loader worker that decoded it."""
    item = _item(self, sample)
    item["worker"] = torch.tensor(get_worker_info().id)
    return item


shard_stream.ShardStream._clip_item = _tagged  # forked workers inherit it


class _Seen(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += [(trainer.current_epoch, int(w), int(i))
                      for w, i in zip(batch["worker"], batch["index"])]


def main() -> None:
    root, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = DSMLightningModule(backbone="tiny3d", backbone_kwargs={"width": 4, "norm": "group"},
                               queue_size=8)
    data = VideoDataModule(source="shards", root=root, num_frames=4, stride=2, frame_size=32,
                           crop_size=32, batch_size=2, num_workers=2)
    seen = _Seen()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[seen], default_root_dir=str(out))
    trainer.fit(model, data)
    torch.save({"seen": seen.seen, "ptr": int(model.queue.ptr),
                "queue": model.queue.keys.clone(),
                "params": {k: v.clone() for k, v in model.state_dict().items()}},
               out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
