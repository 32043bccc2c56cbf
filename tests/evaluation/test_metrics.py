"""Plain tensor evaluation code: recall@k, video-level averaging, static clips, contrast."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dsm_lightning.evaluation import (
    contrasted_accuracy,
    evaluate_retrieval,
    extract_features,
    format_recall_table,
    make_static,
    neighbours_table,
    per_class_accuracy,
    pool_view_features,
    recall_at_k,
    topk_neighbours,
    video_level_predictions,
)


def brute_force_recall(query, query_labels, gallery, gallery_labels, k):
    """Slow reference: for each query, sort the whole gallery by cosine, look at the top k."""
    hits = 0
    for i in range(query.shape[0]):
        sims = [
            (F.cosine_similarity(query[i], gallery[j], dim=0).item(), j)
            for j in range(gallery.shape[0])
        ]
        sims.sort(key=lambda item: -item[0])
        top = [j for _, j in sims[:k]]
        hits += any(gallery_labels[j] == query_labels[i] for j in top)
    return hits / query.shape[0]


@pytest.fixture
def feature_set():
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(60, 8, generator=gen)
    gallery_labels = torch.randint(0, 6, (60,), generator=gen)
    query = torch.randn(25, 8, generator=gen) * 3.0  # unnormalised on purpose
    query_labels = torch.randint(0, 6, (25,), generator=gen)
    return query, query_labels, gallery, gallery_labels


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_recall_matches_brute_force(feature_set, chunk_size):
    query, query_labels, gallery, gallery_labels = feature_set
    ks = (1, 2, 5, 10, 20, 50)
    recalls = recall_at_k(query, query_labels, gallery, gallery_labels, ks, chunk_size)
    assert list(recalls) == list(ks)
    for k in ks:
        expected = brute_force_recall(query, query_labels, gallery, gallery_labels, k)
        assert recalls[k] == pytest.approx(expected, abs=1e-12)


def test_recall_non_decreasing_and_clamped(feature_set):
    query, query_labels, gallery, gallery_labels = feature_set
    ks = (1, 3, 5, 10, 20, 50, 60, 500)
    recalls = recall_at_k(query, query_labels, gallery, gallery_labels, ks)
    values = [recalls[k] for k in ks]
    assert values == sorted(values)
    # k >= gallery size retrieves everything: every query whose class is present is a hit.
    present = torch.isin(query_labels, gallery_labels).float().mean().item()
    assert recalls[60] == pytest.approx(present)
    assert recalls[500] == recalls[60]


def test_recall_perfect_and_zero():
    gallery = torch.eye(4)
    labels = torch.arange(4)
    assert recall_at_k(gallery * 2, labels, gallery, labels, (1,)) == {1: 1.0}
    # each query's nearest item is another class; at k=1 nothing is a hit.
    assert recall_at_k(gallery, labels.roll(1), gallery, labels, (1,)) == {1: 0.0}


def test_recall_rejects_bad_input(feature_set):
    query, query_labels, gallery, gallery_labels = feature_set
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(query, query_labels, gallery, gallery_labels, (0, 1))
    with pytest.raises(ValueError, match="dims differ"):
        recall_at_k(query[:, :4], query_labels, gallery, gallery_labels)
    with pytest.raises(ValueError, match="query_labels"):
        recall_at_k(query, query_labels[:3], gallery, gallery_labels)


def test_topk_neighbours_are_sorted_cosines(feature_set):
    query, _, gallery, _ = feature_set
    scores, indices = topk_neighbours(query, gallery, k=5, chunk_size=4)
    assert scores.shape == indices.shape == (25, 5)
    cos = F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
    torch.testing.assert_close(scores, cos.gather(1, indices))
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    torch.testing.assert_close(scores[:, 0], cos.max(dim=1).values)
    # k beyond the gallery is clamped
    assert topk_neighbours(query, gallery[:3], k=10)[1].shape == (25, 3)


def test_pool_view_features_normalises_each_view_then_mean():
    feats = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])  # one video, two views
    pooled = pool_view_features(feats)
    torch.testing.assert_close(pooled, torch.tensor([[2**-0.5, 2**-0.5]]))
    torch.testing.assert_close(pool_view_features(feats, "first"), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="reduction"):
        pool_view_features(feats, "max")


class MeanColourEncoder(torch.nn.Module):
    """(N, C, T, H, W) -> (N, C): per-channel mean, a deterministic stand-in backbone."""

    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, video):
        return video.mean(dim=(2, 3, 4)) * self.scale


def test_evaluate_retrieval_from_loaders_equals_function():
    gen = torch.Generator().manual_seed(1)

    def batches(n, views):
        out = []
        for start in range(0, n, 4):
            b = min(4, n - start)
            out.append(
                {
                    "video": torch.rand(b, views, 3, 2, 4, 4, generator=gen),
                    "label": torch.randint(0, 3, (b,), generator=gen),
                    "index": torch.arange(start, start + b),
                }
            )
        return out

    gallery, query = batches(10, 2), batches(6, 2)
    encoder = MeanColourEncoder()
    recalls = evaluate_retrieval(encoder, gallery, query, ks=(1, 3))
    g = extract_features(encoder, gallery)
    q = extract_features(encoder, query)
    assert g["features"].shape == (10, 3) and g["index"].tolist() == list(range(10))
    # by hand: each view's channel mean, normalised, averaged, renormalised
    video = torch.cat([b["video"] for b in gallery])
    expected = F.normalize(F.normalize(video.mean(dim=(3, 4, 5)), dim=-1).mean(1), dim=-1)
    torch.testing.assert_close(g["features"], expected)
    assert recalls == recall_at_k(q["features"], q["labels"], g["features"], g["labels"], (1, 3))
    table = neighbours_table(q, g, k=2)
    assert len(table) == 6 and len(table[0]["neighbours"]) == 2
    json.dumps(table)
    assert "R@1" in format_recall_table(recalls)


def test_video_level_predictions_by_hand():
    # 2 videos x (2 clips x 3 crops) views x 4 classes
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, 4, generator=gen)
    expected = torch.zeros(2, 4)
    for b in range(2):
        for v in range(6):
            e = [float(torch.exp(x)) for x in logits[b, v]]
            expected[b] += torch.tensor([x / sum(e) for x in e]) / 6
    torch.testing.assert_close(video_level_predictions(logits, 2, 3), expected)
    torch.testing.assert_close(video_level_predictions(logits.view(12, 4), 2, 3), expected)
    torch.testing.assert_close(video_level_predictions(logits), expected)
    torch.testing.assert_close(video_level_predictions(logits).sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="multiple"):
        video_level_predictions(logits.view(12, 4), 5, 1)
    with pytest.raises(ValueError, match="views"):
        video_level_predictions(logits, 10, 3)


def test_video_level_can_differ_from_majority_vote():
    # one very confident view outweighs two weakly wrong ones
    logits = torch.tensor([[[10.0, 0.0], [0.0, 0.5], [0.0, 0.5]]])
    assert video_level_predictions(logits).argmax().item() == 0


@pytest.mark.parametrize("shape", [(2, 3, 5, 4, 4), (2, 3, 3, 6, 4, 4)])
def test_make_static_repeats_middle_frame(shape):
    video = torch.rand(shape)
    static = make_static(video)
    t_dim = len(shape) - 3
    middle = video.select(t_dim, shape[t_dim] // 2)
    assert static.shape == video.shape and static.dtype == video.dtype
    for t in range(shape[t_dim]):
        torch.testing.assert_close(static.select(t_dim, t), middle)
    assert static.is_contiguous()
    static[0] = 0  # a new tensor: the input is untouched
    assert video.abs().sum() > 0 and not torch.equal(static, make_static(video))


def test_make_static_uint8_explicit_dim():
    video = torch.arange(2 * 4 * 3, dtype=torch.uint8).view(2, 4, 3)  # (B, T, X)
    static = make_static(video, dim_t=1)
    assert static[:, :, 0].tolist() == [[6, 6, 6, 6], [18, 18, 18, 18]]


def test_contrasted_accuracy_hand_table():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    normal = torch.tensor([0, 1, 2, 1, 1, 0])  # right, right, right, wrong, right, wrong
    static = torch.tensor([1, 1, 0, 0, 2, 2])  # wrong, right, wrong, right, wrong, right
    # right on normal AND wrong on static: rows 0, 2, 4 -> 3 / 6
    assert contrasted_accuracy(normal, static, labels) == pytest.approx(0.5)
    scores = F.one_hot(normal, 3).float()
    assert contrasted_accuracy(scores, static, labels) == pytest.approx(0.5)
    assert contrasted_accuracy(labels, labels, labels) == 0.0
    with pytest.raises(ValueError, match="equal"):
        contrasted_accuracy(normal[:3], static, labels)


def test_per_class_accuracy():
    labels = torch.tensor([0, 0, 1, 1, 1])
    pred = torch.tensor([0, 1, 1, 1, 0])
    acc = per_class_accuracy(pred, labels, 3)
    torch.testing.assert_close(acc[:2], torch.tensor([0.5, 2 / 3]))
    assert torch.isnan(acc[2])


def test_recall_table_rows_in_percent_and_nan_as_not_available():
    table = format_recall_table({1: 0.125, 5: 0.5, 50: float("nan")}, title="dsm")
    head, rule, row = table.splitlines()
    assert head.split(" | ") == ["k  ", "   R@1", "   R@5", "  R@50"]
    assert row.split(" | ") == ["dsm", " 12.50", " 50.00", "   n/a"]
    assert set(rule) == {"-"} and len(rule) == len(head)
