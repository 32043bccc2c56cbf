"""EMA update and schedules as plain functions (no Lightning): momentum and learning rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dsm_lightning._checks import check_choice

__all__ = ["LR_SCHEDULES", "MOMENTUM_SCHEDULES", "lr_factor", "momentum_at", "update_momentum"]

LR_SCHEDULES = ("cosine", "constant", "multistep")
MOMENTUM_SCHEDULES = ("constant", "cosine")


@torch.no_grad()
def update_momentum(online: nn.Module, ema: nn.Module, momentum: float) -> None:
    """EMA of parameters, in place: ``ema = momentum * ema + (1 - momentum) * online``.

    Buffers (e.g. BatchNorm statistics) are left alone: a momentum encoder running in train
    mode tracks its own, as in MoCo.

    Args:
        online: the trained module.
        ema: its momentum copy (same architecture).
        momentum: in [0, 1]; 1 freezes ``ema``, 0 copies ``online``.

    Raises:
        ValueError: ``momentum`` outside [0, 1] or modules with different parameter counts.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    ema_params = list(ema.parameters())
    online_params = [p.detach() for p in online.parameters()]
    if len(ema_params) != len(online_params):
        raise ValueError(
            f"online and ema modules differ: {len(online_params)} vs {len(ema_params)} parameters"
        )
    if ema_params:
        torch._foreach_mul_(ema_params, momentum)
        torch._foreach_add_(ema_params, online_params, alpha=1.0 - momentum)


def momentum_at(base: float, step: int, total_steps: float, schedule: str = "constant") -> float:
    """EMA momentum at ``step``: ``base`` throughout, or a cosine from ``base`` to 1.0 (BYOL).

    Args:
        base: momentum at step 0.
        step: optimizer steps taken so far.
        total_steps: steps of the whole run (``inf`` / <= 0 keeps ``base``).
        schedule: ``"constant"`` or ``"cosine"``.

    Raises:
        ValueError: unknown ``schedule``.
    """
    check_choice("momentum_schedule", schedule, MOMENTUM_SCHEDULES)
    if schedule == "constant" or not math.isfinite(total_steps) or total_steps <= 0:
        return float(base)
    progress = min(step / total_steps, 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def lr_factor(
    step: int,
    total_steps: float,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step``.

    Linear warm-up over ``warmup_steps``, then ``"constant"`` (1), ``"cosine"`` (to 0 at
    ``total_steps``; constant when ``total_steps`` is unknown) or ``"multistep"`` (times
    ``gamma`` at each step in ``milestones``, the public DSM code's step schedule).

    Args:
        step: optimizer steps taken so far.
        total_steps: steps of the whole run (``inf`` when unknown).
        warmup_steps: length of the linear warm-up.
        schedule: ``"cosine"``, ``"constant"`` or ``"multistep"``.
        milestones: steps where ``"multistep"`` multiplies by ``gamma``.
        gamma: ``"multistep"`` factor.

    Raises:
        ValueError: unknown ``schedule``.
    """
    check_choice("lr_schedule", schedule, LR_SCHEDULES)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "multistep":
        return gamma ** sum(1 for m in milestones if step >= m)
    if schedule == "constant" or not math.isfinite(total_steps):
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
