"""DSM losses (plain tensor code, no Lightning).

Wang et al., "Enhancing Unsupervised Video Representation Learning by Decoupling the Scene
and the Motion", AAAI 2021. All embeddings are expected L2-normalised, so dot products are
cosine similarities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning._checks import check_positive

__all__ = [
    "dsm_infonce_loss",
    "moco_loss",
    "dsm_triplet_loss",
    "DSMInfoNCELoss",
    "DSMTripletLoss",
]


def _check_weight(negative_weight: float) -> None:
    check_positive("negative_weight", negative_weight)


def _as_hard_negatives(query: Tensor, negative: Tensor) -> Tensor:
    """``(B, D)`` or ``(B, M, D)`` hard negatives as ``(B, M, D)``."""
    if negative.ndim == 2:
        negative = negative.unsqueeze(1)
    if negative.ndim != 3 or negative.shape[0] != query.shape[0] or negative.shape[2] != query.shape[1]:
        raise ValueError(
            f"negative must be (B, D) or (B, M, D) matching query {tuple(query.shape)}, "
            f"got {tuple(negative.shape)}"
        )
    return negative


def dsm_infonce_loss(
    query: Tensor,
    key: Tensor,
    queue: Tensor | None = None,
    negative: Tensor | None = None,
    temperature: float = 0.07,
    negative_weight: float = 1.0,
    queue_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DSM InfoNCE: cross-entropy over logits ``[q.k+ | q.queue | q.n] / tau``, target 0.

    With ``M`` hard negatives per sample and weight ``w`` the loss of sample ``i`` is::

        -log( e^{s_p/tau} / (e^{s_p/tau} + sum_j e^{s_qj/tau} + w * sum_m e^{s_nm/tau}) )

    i.e. ``log(w)`` is added to each hard-negative logit, which is the same as counting each
    hard negative ``w`` times among the negatives (``w = 1``: plain InfoNCE).

    Args:
        query: ``(B, D)`` query embeddings ``q`` (gradient flows).
        key: ``(B, D)`` positive keys ``k+`` (normally from the momentum encoder, detached).
        queue: ``(K, D)`` past keys used as negatives, or None / ``K = 0``.
        negative: hard negatives ``n``: ``(B, D)`` or ``(B, M, D)``, or None (MoCo).
        temperature: ``tau`` > 0.
        negative_weight: ``w`` > 0 scaling the hard negatives' share of the denominator.
        queue_mask: ``(B, K)`` bool, True where a queue entry must not count as a negative
            of that query (e.g. an older key of the query's own video); None = none masked.

    Returns:
        ``(loss, stats)``: the mean loss (scalar) and detached statistics of the raw
        similarities (before ``/ tau``): ``pos_logit``, ``queue_logit`` (when the queue is
        not empty), ``neg_logit`` and ``hard_negative_accuracy`` (fraction of the ``B * M``
        hard negatives with ``q.k+ > q.n``) when ``negative`` is given.

    Raises:
        ValueError: ``temperature`` or ``negative_weight`` <= 0, or mismatched shapes.
    """
    check_positive("temperature", temperature)
    _check_weight(negative_weight)
    if key.shape != query.shape:
        raise ValueError(f"key {tuple(key.shape)} must match query {tuple(query.shape)}")
    pos = (query * key).sum(dim=1, keepdim=True)  # (B, 1)
    columns = [pos / temperature]
    stats: dict[str, Tensor] = {"pos_logit": pos.detach().mean()}
    if queue is not None and queue.shape[0] > 0:
        queue_sim = query @ queue.to(query.dtype).t()  # (B, K)
        if queue_mask is None:
            columns.append(queue_sim / temperature)
            stats["queue_logit"] = queue_sim.detach().mean()
        else:
            if queue_mask.shape != queue_sim.shape:
                raise ValueError(
                    f"queue_mask {tuple(queue_mask.shape)} must be (B, K) = "
                    f"{tuple(queue_sim.shape)}"
                )
            columns.append((queue_sim / temperature).masked_fill(queue_mask, -math.inf))
            kept = ~queue_mask
            stats["queue_logit"] = (queue_sim.detach() * kept).sum() / kept.sum().clamp_min(1)
    if negative is not None:
        negative = _as_hard_negatives(query, negative)
        neg = torch.einsum("bd,bmd->bm", query, negative)  # (B, M)
        columns.append(neg / temperature + math.log(negative_weight))
        stats["neg_logit"] = neg.detach().mean()
        stats["hard_negative_accuracy"] = (pos.detach() > neg.detach()).float().mean()
    logits = torch.cat(columns, dim=1)
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target), stats


def moco_loss(
    query: Tensor, key: Tensor, queue: Tensor | None = None, temperature: float = 0.07
) -> tuple[Tensor, dict[str, Tensor]]:
    """MoCo InfoNCE ``[q.k+ | q.queue] / tau``: :func:`dsm_infonce_loss` without hard negatives.

    Args:
        query: ``(B, D)``.
        key: ``(B, D)``.
        queue: ``(K, D)`` or None.
        temperature: ``tau`` > 0.

    Returns:
        ``(loss, stats)`` as :func:`dsm_infonce_loss`.
    """
    return dsm_infonce_loss(query, key, queue, None, temperature)


def dsm_triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 0.5,
    inter_video: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DSM triplet objective: intra-video plus inter-video triplet margin loss (p = 2).

    ``intra = TripletMargin(anchor, positive, negative)`` with the same video's temporally
    disturbed clip as negative; ``inter = TripletMargin(anchor, positive, negative')`` where
    ``negative'`` is the batch's negative rolled by one, i.e. a clip of *another* video. The
    loss is ``intra + inter`` (``intra`` alone when ``inter_video`` is False or ``B == 1``).

    Args:
        anchor: ``(B, D)``.
        positive: ``(B, D)``.
        negative: ``(B, D)`` or ``(B, M, D)`` (each of the ``M`` is a triplet).
        margin: triplet margin (> 0 typical, >= 0 required).
        inter_video: add the inter-video term.

    Returns:
        ``(loss, stats)``: scalar loss; stats ``pos_logit``, ``neg_logit`` (mean dot
        products), ``intra_loss``, ``inter_loss`` (when used) and ``hard_negative_accuracy``
        (fraction with ``|a - p| < |a - n|``).

    Raises:
        ValueError: negative margin or mismatched shapes.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    negative = _as_hard_negatives(anchor, negative)
    m = negative.shape[1]
    a = anchor.unsqueeze(1).expand(-1, m, -1).reshape(-1, anchor.shape[1])
    p = positive.unsqueeze(1).expand(-1, m, -1).reshape(-1, anchor.shape[1])
    n = negative.reshape(-1, anchor.shape[1])
    intra = F.triplet_margin_loss(a, p, n, margin=margin, p=2)
    loss = intra
    stats: dict[str, Tensor] = {"intra_loss": intra.detach()}
    if inter_video and anchor.shape[0] > 1:
        other = negative.roll(1, dims=0).reshape(-1, anchor.shape[1])
        inter = F.triplet_margin_loss(a, p, other, margin=margin, p=2)
        loss = loss + inter
        stats["inter_loss"] = inter.detach()
    with torch.no_grad():
        d_pos = F.pairwise_distance(a, p)
        d_neg = F.pairwise_distance(a, n)
        stats["pos_logit"] = (anchor * positive).sum(1).mean()
        stats["neg_logit"] = torch.einsum("bd,bmd->bm", anchor, negative).mean()
        stats["hard_negative_accuracy"] = (d_pos < d_neg).float().mean()
    return loss, stats


class DSMInfoNCELoss(nn.Module):
    """Settings holder for :func:`dsm_infonce_loss`.

    Args:
        temperature: ``tau`` > 0.
        negative_weight: hard-negative weight ``w`` > 0.
    """

    def __init__(self, temperature: float = 0.07, negative_weight: float = 1.0) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        _check_weight(negative_weight)
        self.temperature, self.negative_weight = temperature, negative_weight

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        queue: Tensor | None = None,
        negative: Tensor | None = None,
        queue_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """See :func:`dsm_infonce_loss` (``queue_mask``: (B, K) bool, True = not a negative)."""
        return dsm_infonce_loss(
            query, key, queue, negative, self.temperature, self.negative_weight, queue_mask
        )


class DSMTripletLoss(nn.Module):
    """Settings holder for :func:`dsm_triplet_loss`.

    Args:
        margin: triplet margin >= 0.
        inter_video: add the inter-video term.
    """

    def __init__(self, margin: float = 0.5, inter_video: bool = True) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin, self.inter_video = margin, inter_video

    def forward(
        self, anchor: Tensor, positive: Tensor, negative: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """See :func:`dsm_triplet_loss`."""
        return dsm_triplet_loss(anchor, positive, negative, self.margin, self.inter_video)
