"""The optimiser and learning-rate schedule every module builds from its named arguments."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from dsm_lightning.schedules import lr_factor

__all__ = ["OPTIMIZERS", "make_optimizer", "scheduled", "total_steps"]

#: ``optimizer`` values of the modules.
OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(params: Iterable[Any], optimizer: str, lr: float, weight_decay: float,
                   momentum: float) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or AdamW over ``params`` (tensors or parameter groups)."""
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def total_steps(trainer: pl.Trainer) -> tuple[float, float]:
    """(total optimizer steps, steps per epoch) of the run; ``inf`` when unknown."""
    total = float(trainer.estimated_stepping_batches)
    max_epochs = trainer.max_epochs
    if math.isfinite(total) and max_epochs and max_epochs > 0:
        return total, total / max_epochs
    return math.inf, math.inf


def scheduled(optimizer: torch.optim.Optimizer, trainer: pl.Trainer, schedule: str,
              warmup_epochs: float = 0.0, milestones: Sequence[float] = (),
              gamma: float = 0.1) -> dict[str, Any]:
    """The Lightning optimiser configuration: ``optimizer`` with a per-step schedule
    (``schedules.lr_factor``: linear warm-up, then cosine / constant / multistep at epochs).

    Raises:
        ValueError: ``"multistep"`` when the steps per epoch are unknown.
    """
    total, per_epoch = total_steps(trainer)
    finite = math.isfinite(per_epoch)
    if schedule == "multistep" and milestones and not finite:
        raise ValueError("lr_schedule='multistep' needs a known number of steps per epoch "
                         "(set trainer max_epochs)")
    warmup = int(round(warmup_epochs * per_epoch)) if finite else 0
    steps = [int(round(m * per_epoch)) for m in milestones] if finite else []

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, schedule, steps, gamma)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
