"""Linear probe on frozen features."""

import pytest
import torch

from dsm_lightning.evaluation.probe import fit_linear_probe


def _blobs(n_per_class: int, k: int, d: int, seed: int, spread: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(len(y), d, generator=g)
    return x, y


def test_probe_separates_blobs_and_generalises():
    x, y = _blobs(30, 5, 16, seed=0)
    xt, yt = _blobs(20, 5, 16, seed=1)
    probe = fit_linear_probe(x, y, num_classes=5)
    assert probe.accuracy(x, y) == 1.0
    assert probe.accuracy(xt, yt) >= 0.95
    assert probe.logits(xt).shape == (100, 5)


def test_probe_reads_only_informative_dimension():
    """Labels carried by one coordinate among noise: the probe weights that coordinate most."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 3] > 0).long()
    probe = fit_linear_probe(x, y)
    w = probe.linear.weight
    assert (w[1] - w[0]).abs().argmax().item() == 3
    assert probe.accuracy(x, y) > 0.97


def test_probe_is_scale_invariant():
    x, y = _blobs(20, 3, 6, seed=2)
    a = fit_linear_probe(x, y).predict(x)
    b = fit_linear_probe(x * 1000 + 5, y).predict(x * 1000 + 5)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "features,labels,kwargs,match",
    [
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), {}, "features must be"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {}, "at least one"),
        (torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), {"num_classes": 3}, "labels must lie"),
        (torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]), {"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_probe_rejects_bad_input(features, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_linear_probe(features, labels, **kwargs)
