"""EMA update and schedules (plain functions): exact values against the formulas."""

from __future__ import annotations

import math

import pytest
import torch

from dsm_lightning.schedules import lr_factor, momentum_at, update_momentum


def test_update_momentum_formula_exact_and_buffers_untouched():
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema[1].running_mean.fill_(7.0)
    before = [p.detach().clone() for p in ema.parameters()]
    update_momentum(online, ema, 0.9)
    for new, old, theta in zip(ema.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta.detach(), rtol=0, atol=1e-7)
    assert torch.all(ema[1].running_mean == 7.0)
    update_momentum(online, ema, 0.0)  # momentum 0 copies the online weights
    for new, theta in zip(ema.parameters(), online.parameters()):
        torch.testing.assert_close(new, theta.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [-0.1, 1.1])
def test_update_momentum_rejects_out_of_range(bad):
    layer = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="momentum"):
        update_momentum(layer, torch.nn.Linear(2, 2), bad)


def test_update_momentum_rejects_different_modules():
    with pytest.raises(ValueError, match="differ"):
        update_momentum(torch.nn.Linear(2, 2), torch.nn.Sequential(), 0.5)


def test_momentum_schedules():
    assert momentum_at(0.99, 50, 100, "constant") == 0.99
    assert momentum_at(0.99, 0, 100, "cosine") == pytest.approx(0.99)
    assert momentum_at(0.99, 50, 100, "cosine") == pytest.approx(0.995)
    assert momentum_at(0.99, 100, 100, "cosine") == pytest.approx(1.0)
    assert momentum_at(0.99, 10, math.inf, "cosine") == 0.99  # unknown length: constant
    with pytest.raises(ValueError, match="momentum_schedule"):
        momentum_at(0.99, 0, 10, "linear")


def test_lr_factor_warmup_cosine_constant_multistep():
    assert [lr_factor(s, 10, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(4, 10, 4, "cosine") == pytest.approx(1.0)
    assert lr_factor(7, 10, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(10, 10, 4, "cosine") == pytest.approx(0.0)
    assert lr_factor(9, 10, 0, "constant") == 1.0
    assert lr_factor(5, math.inf, 0, "cosine") == 1.0
    steps = [lr_factor(s, 30, 0, "multistep", (10, 20), 0.1) for s in (0, 9, 10, 19, 20, 29)]
    assert steps == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(0, 10, 0, "step")
