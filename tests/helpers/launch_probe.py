"""A callback for the launch tests: each rank saves what it trained and how it was launched."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch


class RankState(pl.Callback):
    """Write ``<out>/rank<global rank>.pt`` at the end of fit: the cluster environment,
    node rank, world size, the video indices of every batch, the weights and the queue.

    Args:
        out: Folder of the files.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += batch["index"].tolist()

    def on_train_end(self, trainer, pl_module):
        queue = getattr(pl_module, "queue", None)
        torch.save({
            "environment": type(trainer.strategy.cluster_environment).__name__,
            "node_rank": trainer.node_rank, "world_size": trainer.world_size,
            "global_step": trainer.global_step, "seen": self.seen,
            "queue": queue.keys.clone() if queue is not None else None,
            "params": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
        }, Path(self.out) / f"rank{trainer.global_rank}.pt")
