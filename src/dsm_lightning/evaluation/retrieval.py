"""Nearest-neighbour video retrieval: feature extraction, top-k neighbours and recall@k.

Protocol (docs/method.md, "Video retrieval"): features are the pooled backbone output of one or
several clips per video, L2-normalised; queries come from the test split, the gallery from
the train split; similarity is the cosine; a query is a hit at k when any of its k nearest
gallery videos has its class. Plain tensor code, no Lightning.

Two ways to turn a video into clips (``protocol``, see docs/reproduce.md):

- ``"centre"``: one clip per video, the centre window with the centre crop: the public DSM
  code's protocol (one clip per video: its ``reterival.py`` keeps the VCOP-style retrieval
  code but comments out its average over clips). The loader must give one view per video.
- ``"average"``: the mean of the unit-norm features of all the views the loader gives (e.g.
  10 windows): smoother features and higher recall than one clip, so an optimistic
  variant; say which one a number used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning._checks import check_choice
from dsm_lightning.progress import track

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)
CLIP_REDUCTIONS: tuple[str, ...] = ("mean", "first")
#: ``"centre"`` (one centre clip per video, the public code) or ``"average"`` (all views)
RETRIEVAL_PROTOCOLS: tuple[str, ...] = ("centre", "average")


def check_one_view(video: Tensor) -> None:
    """Check that a batch holds one view per video (the ``"centre"`` protocol).

    Args:
        video: (B, C, T, H, W), or (B, V, C, T, H, W) with V = 1.

    Raises:
        ValueError: for more than one view per video, naming the data settings that give
            one (``n_clips: 1``, ``n_crops: 1``).
    """
    if video.dim() == 6 and video.shape[1] != 1:
        raise ValueError(
            f"protocol='centre' takes one clip per video (the centre window, centre crop); "
            f"the batch holds {video.shape[1]} views per video: set the data module's "
            "n_clips: 1 and n_crops: 1, or use protocol='average'"
        )


def _check_features(query_feats: Tensor, gallery_feats: Tensor) -> None:
    if query_feats.dim() != 2 or gallery_feats.dim() != 2:
        raise ValueError(
            "features must be 2-D (N, D); got query "
            f"{tuple(query_feats.shape)} and gallery {tuple(gallery_feats.shape)}"
        )
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(
            f"feature dims differ: query D={query_feats.shape[1]}, "
            f"gallery D={gallery_feats.shape[1]}"
        )
    if gallery_feats.shape[0] == 0:
        raise ValueError("the gallery is empty")


def topk_neighbours(
    query_feats: Tensor,
    gallery_feats: Tensor,
    k: int,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Return the k most cosine-similar gallery items of every query, best first.

    Features are L2-normalised here, so raw or already-normalised inputs give the same
    result. Queries are processed in chunks of ``chunk_size`` so memory stays
    ``O(chunk_size * N_gallery)``.

    Args:
        query_feats: (Nq, D) query features.
        gallery_feats: (Ng, D) gallery features.
        k: number of neighbours; clamped to ``Ng`` when larger.
        chunk_size: queries per similarity block.

    Returns:
        ``(scores, indices)``, both (Nq, min(k, Ng)): cosine similarities (descending) and
        gallery row indices.

    Raises:
        ValueError: on mismatched shapes, an empty gallery, ``k < 1`` or ``chunk_size < 1``.
    """
    _check_features(query_feats, gallery_feats)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    k = min(k, gallery_feats.shape[0])
    gallery = F.normalize(gallery_feats.float(), dim=1)
    scores, indices = [], []
    for start in range(0, query_feats.shape[0], chunk_size):
        query = F.normalize(query_feats[start : start + chunk_size].float(), dim=1)
        top = (query @ gallery.T).topk(k, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    if not scores:
        empty = query_feats.new_zeros((0, k))
        return empty.float(), empty.long()
    return torch.cat(scores), torch.cat(indices)


def recall_at_k(
    query_feats: Tensor,
    query_labels: Tensor,
    gallery_feats: Tensor,
    gallery_labels: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Recall@k of cosine nearest-neighbour retrieval.

    A query is a hit at k when any of its k nearest gallery items (cosine similarity) has
    the query's label. A k larger than the gallery is clamped to the gallery size (every
    item retrieved), so the result stays defined and non-decreasing in k; the returned
    dict is still keyed by the requested k.

    Args:
        query_feats: (Nq, D) query features (test split).
        query_labels: (Nq,) integer labels.
        gallery_feats: (Ng, D) gallery features (train split).
        gallery_labels: (Ng,) integer labels.
        ks: the k values.
        chunk_size: queries per similarity block (memory bound).

    Returns:
        ``{k: recall}`` with recall in [0, 1], in the order of ``ks``.

    Raises:
        ValueError: on mismatched shapes, an empty gallery or query set, or a k < 1.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be non-empty positive integers, got {tuple(ks)}")
    if query_labels.shape != (query_feats.shape[0],):
        raise ValueError(
            f"query_labels shape {tuple(query_labels.shape)} does not match "
            f"{query_feats.shape[0]} queries"
        )
    if gallery_labels.shape != (gallery_feats.shape[0],):
        raise ValueError(
            f"gallery_labels shape {tuple(gallery_labels.shape)} does not match "
            f"{gallery_feats.shape[0]} gallery items"
        )
    if query_feats.shape[0] == 0:
        raise ValueError("no queries")
    _, indices = topk_neighbours(query_feats, gallery_feats, max(ks), chunk_size)
    gallery_labels = gallery_labels.to(indices.device)
    matches = gallery_labels[indices] == query_labels.to(indices.device).unsqueeze(1)
    # first_hit[i] = rank (0-based) of the first correct neighbour, or +inf-like when none.
    n_retrieved = indices.shape[1]
    ranks = torch.arange(n_retrieved, device=indices.device).expand_as(matches)
    first_hit = torch.where(matches, ranks, torch.full_like(ranks, n_retrieved)).amin(dim=1)
    n_queries = first_hit.shape[0]
    return {
        int(k): int((first_hit < min(int(k), n_retrieved)).sum()) / n_queries for k in ks
    }


def pool_view_features(features: Tensor, reduction: str = "mean") -> Tensor:
    """Reduce per-view features to one L2-normalised feature per video.

    Args:
        features: (B, V, D) features of V views (clips x crops) per video, or (B, D).
        reduction: ``"mean"``: normalise each view, average, renormalise;
            ``"first"``: keep the first view only.

    Returns:
        (B, D) unit-norm features.

    Raises:
        ValueError: on an unknown reduction or a tensor that is not 2-D or 3-D.
    """
    check_choice("reduction", reduction, CLIP_REDUCTIONS)
    if features.dim() == 2:
        return F.normalize(features.float(), dim=-1)
    if features.dim() != 3:
        raise ValueError(f"features must be (B, D) or (B, V, D), got {tuple(features.shape)}")
    if reduction == "first":
        return F.normalize(features[:, 0].float(), dim=-1)
    return F.normalize(F.normalize(features.float(), dim=-1).mean(dim=1), dim=-1)


def encode_videos(
    encoder: nn.Module, video: Tensor, reduction: str = "mean", protocol: str = "average"
) -> Tensor:
    """Encode a batch of single- or multi-view clips into one unit-norm feature per video.

    Args:
        encoder: a backbone mapping (N, C, T, H, W) to pooled (N, D) features.
        video: (B, C, T, H, W) or (B, V, C, T, H, W) float clips.
        reduction: how views are combined (see :func:`pool_view_features`).
        protocol: ``"average"`` (any number of views) or ``"centre"`` (exactly one view per
            video, see :func:`check_one_view`).

    Returns:
        (B, D) unit-norm features.

    Raises:
        ValueError: when ``video`` is neither 5-D nor 6-D, or holds several views under
            ``protocol="centre"``.
    """
    check_choice("protocol", protocol, RETRIEVAL_PROTOCOLS)
    if protocol == "centre":
        check_one_view(video)
    if video.dim() == 5:
        return pool_view_features(encoder(video), reduction)
    if video.dim() != 6:
        raise ValueError(
            f"video must be (B, C, T, H, W) or (B, V, C, T, H, W), got {tuple(video.shape)}"
        )
    batch, views = video.shape[:2]
    features = encoder(video.flatten(0, 1))
    return pool_view_features(features.view(batch, views, -1), reduction)


BatchTransform = Callable[[dict[str, Any]], dict[str, Any]]


def prepare_batch(
    batch: Mapping[str, Any], device: str | torch.device, batch_transform: BatchTransform | None
) -> dict[str, Any]:
    """Move a batch's tensors to ``device`` and apply ``batch_transform`` (if any)."""
    moved = {key: value.to(device) if isinstance(value, Tensor) else value
             for key, value in batch.items()}
    return moved if batch_transform is None else batch_transform(moved)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    batch_transform: BatchTransform | None = None,
    device: str | torch.device | None = None,
    reduction: str = "mean",
    progress: str | None = None,
    protocol: str = "average",
) -> dict[str, Tensor]:
    """Run an encoder over batches of videos and collect one feature per video.

    Args:
        encoder: backbone mapping (N, C, T, H, W) to (N, D); put in eval mode here.
        batches: an iterable of batch dicts with ``video``, ``label`` and (optionally)
            ``index`` (e.g. a DataLoader).
        batch_transform: applied to each batch after moving it to ``device``, e.g.
            ``lambda b: datamodule.views(b, "eval")`` to turn uint8 clips into
            normalised float crops. ``None`` expects float clips already.
        device: where to run; defaults to the encoder's device.
        reduction: view reduction (see :func:`pool_view_features`).
        progress: description of the progress shown over the batches (None = none): a bar
            on a terminal, periodic lines otherwise.
        protocol: ``"average"`` or ``"centre"`` (see :func:`encode_videos`).

    Returns:
        ``{"features": (N, D) unit-norm, "labels": (N,), "index": (N,)}`` on the CPU;
        ``index`` counts from 0 when the batches carry none.
    """
    encoder.eval()
    if device is None:
        device = next(encoder.parameters()).device
    features, labels, indices = [], [], []
    seen = 0
    if progress is not None:
        batches = track(batches, progress, unit="batch")
    for batch in batches:
        batch = prepare_batch(batch, device, batch_transform)
        video = batch["video"]
        features.append(encode_videos(encoder, video.float(), reduction, protocol).cpu())
        labels.append(batch["label"].cpu().long())
        if "index" in batch:
            indices.append(batch["index"].cpu().long())
        else:
            indices.append(torch.arange(seen, seen + video.shape[0]))
        seen += video.shape[0]
    if not features:
        raise ValueError("no batches to encode")
    return {
        "features": torch.cat(features),
        "labels": torch.cat(labels),
        "index": torch.cat(indices),
    }


def evaluate_retrieval(
    encoder: nn.Module,
    gallery_batches: Iterable[Mapping[str, Tensor]],
    query_batches: Iterable[Mapping[str, Tensor]],
    ks: Sequence[int] = DEFAULT_KS,
    batch_transform: BatchTransform | None = None,
    device: str | torch.device | None = None,
    reduction: str = "mean",
    protocol: str = "average",
) -> dict[int, float]:
    """Recall@k of an encoder from two loaders, without a Trainer.

    Args:
        encoder: backbone mapping (N, C, T, H, W) to pooled (N, D) features.
        gallery_batches: batches of the gallery (train split).
        query_batches: batches of the queries (test split).
        ks: the k values.
        batch_transform: see :func:`extract_features`.
        device: where to run; defaults to the encoder's device.
        reduction: view reduction (see :func:`pool_view_features`).
        protocol: ``"average"`` or ``"centre"`` (see :func:`encode_videos`).

    Returns:
        ``{k: recall}`` (see :func:`recall_at_k`).
    """
    gallery = extract_features(encoder, gallery_batches, batch_transform, device, reduction,
                               protocol=protocol)
    query = extract_features(encoder, query_batches, batch_transform, device, reduction,
                             protocol=protocol)
    return recall_at_k(
        query["features"], query["labels"], gallery["features"], gallery["labels"], ks
    )


def format_recall_table(recalls: Mapping[int, float], title: str = "retrieval") -> str:
    """Format ``{k: recall}`` as a two-row text table in percent.

    Args:
        recalls: recall per k, in [0, 1]; NaN (a k not measured) is shown as ``n/a``.
        title: first-column label of the value row.

    Returns:
        The table as a string (no trailing newline).
    """
    width = max(len(title), len("k"))
    head = "k".ljust(width) + "".join(f" | {f'R@{k}':>6}" for k in recalls)
    row = title.ljust(width) + "".join(
        f" | {'n/a':>6}" if math.isnan(v) else f" | {100 * v:6.2f}" for v in recalls.values()
    )
    return "\n".join([head, "-" * len(head), row])


def neighbours_table(
    query: Mapping[str, Tensor],
    gallery: Mapping[str, Tensor],
    k: int = 10,
) -> list[dict[str, Any]]:
    """List every query with its k nearest gallery videos (JSON-serialisable).

    Args:
        query: ``{"features", "labels", "index"}`` as returned by :func:`extract_features`.
        gallery: the same for the gallery.
        k: neighbours per query (clamped to the gallery size).

    Returns:
        One dict per query: ``index``, ``label``, ``neighbours`` (gallery video indices,
        best first), ``neighbour_labels`` and ``scores`` (cosine similarities).
    """
    scores, rows = topk_neighbours(query["features"], gallery["features"], k)
    gallery_index = gallery["index"][rows]
    gallery_labels = gallery["labels"][rows]
    return [
        {
            "index": int(query["index"][i]),
            "label": int(query["labels"][i]),
            "neighbours": gallery_index[i].tolist(),
            "neighbour_labels": gallery_labels[i].tolist(),
            "scores": [round(float(s), 6) for s in scores[i]],
        }
        for i in range(scores.shape[0])
    ]
