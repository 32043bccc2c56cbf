"""Video-level predictions from several views, static clips and contrasted accuracy.

Plain tensor code, no Lightning. Views of a video are its ``n_clips`` temporal windows x
``n_crops`` spatial crops (10 x 3 in the paper's protocol), stored clip-major.
"""

from __future__ import annotations

import torch
from torch import Tensor


def video_level_predictions(
    logits: Tensor,
    n_clips: int | None = None,
    n_crops: int | None = None,
) -> Tensor:
    """Average the softmax over the views of each video.

    Args:
        logits: (B, V, K) logits of V views per video, or flat (B * V, K) with the V views
            of a video contiguous (video-major). A (B, K) input with ``n_clips * n_crops``
            left at 1 is one view per video.
        n_clips: temporal windows per video (only used to split a flat input, default 1).
        n_crops: spatial crops per clip (only used to split a flat input, default 1).

    Returns:
        (B, K) class probabilities (each row sums to 1).

    Raises:
        ValueError: when a flat input's length is not a multiple of ``n_clips * n_crops``,
            when a (B, V, K) input disagrees with ``n_clips * n_crops``, or on a bad shape.
    """
    views = (n_clips or 1) * (n_crops or 1)
    if views < 1:
        raise ValueError(f"n_clips * n_crops must be >= 1, got {n_clips} x {n_crops}")
    if logits.dim() == 3:
        if (n_clips is not None or n_crops is not None) and logits.shape[1] != views:
            raise ValueError(
                f"logits have {logits.shape[1]} views but n_clips * n_crops = {views}"
            )
        return logits.float().softmax(dim=-1).mean(dim=1)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V, K) or (B * V, K), got {tuple(logits.shape)}")
    if logits.shape[0] % views:
        raise ValueError(
            f"{logits.shape[0]} rows are not a multiple of n_clips * n_crops = {views}"
        )
    probs = logits.float().softmax(dim=-1)
    return probs.view(-1, views, logits.shape[-1]).mean(dim=1)


def make_static(video: Tensor, dim_t: int = -3) -> Tensor:
    """Build the static version of a clip: its middle frame repeated T times.

    The static clip keeps the scene (appearance) and removes all motion; it is the probe of
    the paper's Figure 1. The middle frame is ``T // 2``.

    Args:
        video: clips with a time axis, e.g. (B, C, T, H, W) or (B, V, C, T, H, W).
        dim_t: the time axis; the default -3 fits both layouts above.

    Returns:
        A tensor of the same shape, dtype and device (a new contiguous tensor).
    """
    dim_t = dim_t % video.dim()
    middle = video.shape[dim_t] // 2
    frame = video.narrow(dim_t, middle, 1)
    return frame.expand_as(video).contiguous()


def _as_class_indices(pred: Tensor) -> Tensor:
    """Class indices from (N,) indices or (N, K) scores."""
    if pred.dim() == 2:
        return pred.argmax(dim=1)
    if pred.dim() != 1:
        raise ValueError(f"predictions must be (N,) indices or (N, K) scores, got {pred.shape}")
    return pred.long()


def contrasted_accuracy(pred_normal: Tensor, pred_static: Tensor, labels: Tensor) -> float:
    """Fraction of videos classified right on the normal clip AND wrong on the static clip.

    This is the SCUBA/SCUFO-style single number of the scene-bias probe: a model that uses
    motion needs the motion, so removing it should flip its answer.

    Args:
        pred_normal: (N,) predicted classes or (N, K) scores on normal clips.
        pred_static: (N,) predicted classes or (N, K) scores on static clips.
        labels: (N,) true classes.

    Returns:
        The fraction in [0, 1].

    Raises:
        ValueError: on mismatched lengths or an empty input.
    """
    normal = _as_class_indices(pred_normal)
    static = _as_class_indices(pred_static)
    if not (normal.shape == static.shape == labels.shape) or labels.numel() == 0:
        raise ValueError(
            f"need equal non-empty lengths, got normal {tuple(normal.shape)}, "
            f"static {tuple(static.shape)}, labels {tuple(labels.shape)}"
        )
    labels = labels.to(normal.device).long()
    hits = (normal == labels) & (static.to(normal.device) != labels)
    return hits.float().mean().item()


def per_class_accuracy(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Accuracy of each class (NaN for classes with no sample).

    Args:
        pred: (N,) predicted classes or (N, K) scores.
        labels: (N,) true classes in [0, num_classes).
        num_classes: K.

    Returns:
        (K,) float accuracies in [0, 1], NaN where a class has no sample.
    """
    pred = _as_class_indices(pred).to(labels.device)
    labels = labels.long()
    counts = torch.bincount(labels, minlength=num_classes).float()
    correct = torch.bincount(labels[pred == labels], minlength=num_classes).float()
    return torch.where(counts > 0, correct / counts.clamp_min(1), torch.nan)


def per_class_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class accuracy (K,) from a (K, K) confusion matrix (rows = true class); NaN for a
    class with no sample."""
    counts = confusion.sum(dim=1)
    return torch.where(counts > 0, confusion.diag().float() / counts.clamp_min(1), torch.nan)
