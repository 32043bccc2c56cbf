"""LineProgressBar: the epoch-end line counts the epoch's batches from the hooks' batch_idx."""

from __future__ import annotations

import re

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dsm_lightning.callbacks.progress import LineProgressBar


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (batch[0] * self.weight).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _epoch_lines(capsys, **trainer_kwargs) -> list[tuple[str, str, str]]:
    bar = LineProgressBar(interval=3600.0)  # no line within an epoch: only the epoch ends
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         callbacks=[bar], **trainer_kwargs)
    loader = DataLoader(TensorDataset(torch.ones(6, 1)), batch_size=2)
    trainer.fit(_Tiny(), loader)
    return re.findall(r"^epoch (\d+)/(\d+) batch (\d+)/(\d+)", capsys.readouterr().err,
                      flags=re.MULTILINE)


def test_epoch_end_line_counts_the_batches_of_the_epoch(capsys):
    assert _epoch_lines(capsys) == [("1", "2", "3", "3"), ("2", "2", "3", "3")]


def test_epoch_end_line_follows_limit_train_batches(capsys):
    assert _epoch_lines(capsys, limit_train_batches=2) == [("1", "2", "2", "2"),
                                                           ("2", "2", "2", "2")]
