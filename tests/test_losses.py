"""Loss math: slow-loop references of the paper's formulas, hand-computed cases, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dsm_lightning.losses import (
    DSMInfoNCELoss,
    DSMTripletLoss,
    dsm_infonce_loss,
    dsm_triplet_loss,
    moco_loss,
)


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _slow_infonce(q, k, queue, negative, tau, w):
    """Per-sample loop of -log(e^{q.k/t} / (e^{q.k/t} + sum_j e^{q.Q_j/t} + w sum_m e^{q.n_m/t}))."""
    total = 0.0
    for i in range(q.shape[0]):
        qi = q[i].tolist()
        dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
        pos = math.exp(dot(qi, k[i].tolist()) / tau)
        denominator = pos
        for row in queue.tolist() if queue is not None else []:
            denominator += math.exp(dot(qi, row) / tau)
        if negative is not None:
            negs = negative[i] if negative.ndim == 3 else negative[i : i + 1]
            for n in negs.tolist():
                denominator += w * math.exp(dot(qi, n) / tau)
        total += -math.log(pos / denominator)
    return total / q.shape[0]


def test_infonce_hand_computed_2d_case():
    # q = e_x, k+ = e_x, queue = {e_y}, n = -e_x, tau = 0.5:
    # loss = -log(e^2 / (e^2 + e^0 + e^-2))
    q = torch.tensor([[1.0, 0.0]])
    loss, stats = dsm_infonce_loss(q, q.clone(), torch.tensor([[0.0, 1.0]]),
                                   torch.tensor([[-1.0, 0.0]]), temperature=0.5)
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["pos_logit"].item() == pytest.approx(1.0)
    assert stats["queue_logit"].item() == pytest.approx(0.0)
    assert stats["neg_logit"].item() == pytest.approx(-1.0)
    assert stats["hard_negative_accuracy"].item() == 1.0


@pytest.mark.parametrize("m", [None, 1, 3])
@pytest.mark.parametrize("weight", [1.0, 2.5])
def test_infonce_matches_slow_loop(m, weight):
    b, d, k = 5, 4, 7
    q, key, queue = _unit(b, d, seed=1), _unit(b, d, seed=2), _unit(k, d, seed=3)
    negative = None if m is None else (_unit(b, d, seed=4) if m == 1 else _unit(b, m, d, seed=4))
    loss, _ = dsm_infonce_loss(q, key, queue, negative, temperature=0.2, negative_weight=weight)
    assert loss.item() == pytest.approx(_slow_infonce(q, key, queue, negative, 0.2, weight),
                                        rel=1e-9)


def test_negative_weight_equals_repeated_hard_negative_columns():
    """w = 3 gives the same loss as listing each hard negative three times."""
    q, key, queue, n = _unit(4, 6, seed=5), _unit(4, 6, seed=6), _unit(9, 6, seed=7), _unit(4, 2, 6)
    weighted, _ = dsm_infonce_loss(q, key, queue, n, temperature=0.1, negative_weight=3.0)
    repeated, _ = dsm_infonce_loss(q, key, queue, n.repeat(1, 3, 1), temperature=0.1)
    assert weighted.item() == pytest.approx(repeated.item(), rel=1e-12)
    lighter, _ = dsm_infonce_loss(q, key, queue, n, temperature=0.1, negative_weight=0.5)
    plain, _ = dsm_infonce_loss(q, key, queue, n, temperature=0.1)
    assert lighter < plain < weighted


def test_moco_loss_is_infonce_without_hard_negative_and_empty_queue_is_allowed():
    q, key, queue = _unit(3, 5, seed=8), _unit(3, 5, seed=9), _unit(6, 5, seed=10)
    loss, stats = moco_loss(q, key, queue, temperature=0.3)
    assert loss.item() == pytest.approx(_slow_infonce(q, key, queue, None, 0.3, 1.0), rel=1e-9)
    assert "neg_logit" not in stats and "hard_negative_accuracy" not in stats
    # empty queue: only the positive column -> loss exactly 0
    zero, stats = moco_loss(q, key, queue[:0])
    assert zero.item() == 0.0 and "queue_logit" not in stats


def test_hard_negative_accuracy_counts_every_hard_negative():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    key = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # q.k+ = 0.6, 1.0
    # sample 0: n = (1,0) (0.6 < 1: wrong), (0,1) (0 < 0.6: right); sample 1: both right
    negative = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.6, 0.8]]])
    _, stats = dsm_infonce_loss(q, key, None, negative)
    assert stats["hard_negative_accuracy"].item() == pytest.approx(3 / 4)


def test_gradient_reaches_negative_through_its_column_only():
    q = _unit(3, 4, seed=11).float().requires_grad_(True)
    negative = _unit(3, 4, seed=12).float().requires_grad_(True)
    key = _unit(3, 4, seed=13).float()
    loss, _ = dsm_infonce_loss(q, key, _unit(5, 4, seed=14).float(), negative)
    grad_q, grad_n = torch.autograd.grad(loss, [q, negative])
    assert grad_n.abs().sum() > 0
    # d loss / d n_i = softmax_n,i * q_i / (tau B): the analytic hard-negative gradient
    logits = torch.cat([(q * key).sum(1, keepdim=True), q @ _unit(5, 4, seed=14).float().t(),
                        (q * negative).sum(1, keepdim=True)], 1) / 0.07
    p_n = logits.softmax(1)[:, -1:]
    torch.testing.assert_close(grad_n, (p_n * q / (0.07 * 3)).detach(), rtol=1e-4, atol=1e-6)


def test_triplet_loss_matches_torch_reference():
    a, p, n = _unit(6, 8, seed=15), _unit(6, 8, seed=16), _unit(6, 8, seed=17)
    ref = torch.nn.TripletMarginLoss(margin=0.5, p=2)
    loss, stats = dsm_triplet_loss(a, p, n, margin=0.5, inter_video=False)
    assert loss.item() == pytest.approx(ref(a, p, n).item(), rel=1e-12)
    loss, stats = dsm_triplet_loss(a, p, n, margin=0.5, inter_video=True)
    inter = ref(a, p, n.roll(1, dims=0))  # the negative of another video
    assert loss.item() == pytest.approx((ref(a, p, n) + inter).item(), rel=1e-12)
    assert stats["inter_loss"].item() == pytest.approx(inter.item())
    closer = (F.pairwise_distance(a, p) < F.pairwise_distance(a, n)).double().mean()
    assert stats["hard_negative_accuracy"].item() == pytest.approx(closer.item())


def test_triplet_loss_with_several_negatives_averages_triplets():
    a, p, n = _unit(3, 4, seed=18), _unit(3, 4, seed=19), _unit(3, 2, 4, seed=20)
    ref = torch.nn.TripletMarginLoss(margin=0.3, p=2)
    loss, _ = dsm_triplet_loss(a, p, n, margin=0.3, inter_video=False)
    expected = (ref(a, p, n[:, 0]) + ref(a, p, n[:, 1])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_wrappers_hold_settings_and_validate():
    q, key, n = _unit(2, 3, seed=21), _unit(2, 3, seed=22), _unit(2, 3, seed=23)
    assert DSMInfoNCELoss(0.1, 2.0)(q, key, None, n)[0] == dsm_infonce_loss(
        q, key, None, n, 0.1, 2.0)[0]
    assert DSMTripletLoss(0.2, False)(q, key, n)[0] == dsm_triplet_loss(q, key, n, 0.2, False)[0]
    for bad in (lambda: DSMInfoNCELoss(temperature=0), lambda: DSMInfoNCELoss(negative_weight=0),
                lambda: DSMTripletLoss(margin=-1), lambda: dsm_infonce_loss(q, key, None, n[:1])):
        with pytest.raises(ValueError):
            bad()


def test_queue_mask_equals_removing_those_queue_rows_per_sample():
    """Masked queue entries drop out of that query's denominator only (slow per-sample loop)."""
    b, d, k = 4, 5, 6
    q, key, queue, n = _unit(b, d, seed=11), _unit(b, d, seed=12), _unit(k, d, seed=13), _unit(b, d, seed=14)
    mask = torch.zeros(b, k, dtype=torch.bool)
    mask[0, [1, 4]] = True
    mask[2, 0] = True
    loss, stats = dsm_infonce_loss(q, key, queue, n, temperature=0.2, queue_mask=mask)
    per_sample = [
        _slow_infonce(q[i : i + 1], key[i : i + 1], queue[~mask[i]], n[i : i + 1], 0.2, 1.0)
        for i in range(b)
    ]
    assert loss.item() == pytest.approx(sum(per_sample) / b, rel=1e-9)
    kept = (q @ queue.t())[~mask]
    assert stats["queue_logit"].item() == pytest.approx(kept.mean().item(), rel=1e-9)
    with pytest.raises(ValueError, match="queue_mask"):
        dsm_infonce_loss(q, key, queue, n, queue_mask=mask[:, :3])


def test_module_passes_queue_mask_like_the_function():
    """``DSMInfoNCELoss`` forwards ``queue_mask``: same as the per-sample slow loop."""
    b, d, k = 3, 4, 5
    q, key, queue, n = _unit(b, d, seed=31), _unit(b, d, seed=32), _unit(k, d, seed=33), _unit(b, d, seed=34)
    mask = torch.zeros(b, k, dtype=torch.bool)
    mask[1, [0, 2, 3]] = True
    loss, _ = DSMInfoNCELoss(temperature=0.1, negative_weight=2.0)(q, key, queue, n, queue_mask=mask)
    per_sample = [
        _slow_infonce(q[i : i + 1], key[i : i + 1], queue[~mask[i]], n[i : i + 1], 0.1, 2.0)
        for i in range(b)
    ]
    assert loss.item() == pytest.approx(sum(per_sample) / b, rel=1e-9)
    unmasked, _ = DSMInfoNCELoss(temperature=0.1, negative_weight=2.0)(q, key, queue, n)
    assert unmasked.item() != pytest.approx(loss.item(), rel=1e-6)  # the mask changes the loss
    with pytest.raises(ValueError, match="queue_mask"):
        DSMInfoNCELoss()(q, key, queue, n, queue_mask=mask[:, :2])
