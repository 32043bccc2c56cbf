"""The scene-bias study on frozen features: does an encoder carry motion or scene?

docs/method.md, "Measuring the effect". For each encoder, on features of labelled splits:

- a linear probe trained on the scene-*biased* training split, tested in distribution, on
  static clips and (optionally) on a scene-swapped split;
- a linear probe trained on a scene-*balanced* split (every class on every scene, so motion
  is the only cue), tested on balanced normal and static clips: top-1 and the *contrasted
  accuracy* (right on the normal clip AND wrong on its static copy), the main number;
- retrieval recall@k with balanced queries and with scene-swapped queries;
- the per-class scene-bias report (normal vs static, the paper's Figure 1), JSON + PNG.

- the out-of-context tests synthesized from the in-distribution test split
  (``evaluation.synthesized``, after SCUBA / SCUFO), scored with the biased probe, per
  background kind ``b``: top-1 on the background-swapped clips (``ooc/b/swap``), on their
  static copies (``ooc/b/static``), the contrasted accuracy (right on the swap clip AND
  wrong on its static copy), the conflicting-foreground scores (the moving foreground's
  label, the inserted still foreground's, and how often the moving one's score is higher),
  and retrieval with the swap clips as queries.

Static clips are made here from the decoded clips (middle frame repeated), so any labelled
data works: give the split names of a biased train/test pair, optionally a balanced
train/test pair and a swapped test split; the synthesized rows need only the biased pair.
Plain torch, no Lightning: the caller passes a function returning the batches of a split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsm_lightning.evaluation.out_of_context import conflict_scores
from dsm_lightning.evaluation.probe import LinearProbe, fit_linear_probe
from dsm_lightning.evaluation.retrieval import BatchTransform, extract_features, recall_at_k
from dsm_lightning.evaluation.scene_bias import plot_per_class, save_report_json, scene_bias_report
from dsm_lightning.evaluation.video_level import contrasted_accuracy, make_static

__all__ = ["StudySplits", "STUDY_ROWS", "evaluate_features", "evaluate_out_of_context",
           "format_study_table", "study_features", "study_rows"]

Batches = Iterable[Mapping[str, Tensor]]


@dataclass(frozen=True)
class StudySplits:
    """Names of the labelled splits the study reads (None = not available).

    Args:
        biased_train: the scene-biased training split (labels correlate with scenes).
        biased_test: its in-distribution test split.
        balanced_train: a scene-balanced training split (every class on every scene).
        balanced_test: its test split.
        swapped_test: a test split whose classes never appear on their usual scene.
    """

    biased_train: str = "train"
    biased_test: str = "test"
    balanced_train: str | None = "balanced_train"
    balanced_test: str | None = "balanced_test"
    swapped_test: str | None = "swapped_test"

    def normal(self) -> list[str]:
        """Splits whose normal clips are encoded."""
        names = [self.biased_train, self.biased_test, self.balanced_train, self.balanced_test,
                 self.swapped_test]
        return list(dict.fromkeys(n for n in names if n is not None))

    def static(self) -> list[str]:
        """Splits whose static clips are encoded too."""
        return [n for n in (self.biased_test, self.balanced_test) if n is not None]


#: (result key, table label) in table order; rows whose key is absent are left out.
STUDY_ROWS: tuple[tuple[str, str], ...] = (
    ("balanced_probe/contrasted", "balanced probe: contrasted acc (main)"),
    ("balanced_probe/test", "balanced probe: top-1 normal clips"),
    ("balanced_probe/test_static", "balanced probe: top-1 static clips"),
    ("biased_probe/test", "biased probe: top-1 in-distribution"),
    ("biased_probe/swapped_test", "biased probe: top-1 swapped scenes"),
    ("biased_probe/test_static", "biased probe: top-1 static clips"),
    ("retrieval/balanced_test/R@1", "retrieval balanced R@1"),
    ("retrieval/balanced_test/R@5", "retrieval balanced R@5"),
    ("retrieval/balanced_test/R@10", "retrieval balanced R@10"),
    ("retrieval/swapped_test/R@1", "retrieval swapped-scene R@1"),
    ("retrieval/swapped_test/R@5", "retrieval swapped-scene R@5"),
    ("retrieval/swapped_test/R@10", "retrieval swapped-scene R@10"),
    ("scene_bias/gain", "scene-bias gain (normal - static)"),
)
#: (metric, label) of the synthesized rows of one background kind (``ooc/<kind>/<metric>``).
OOC_ROWS: tuple[tuple[str, str], ...] = (
    ("contrasted", "contrasted acc (swap right, static wrong)"),
    ("swap", "top-1 background-swapped"),
    ("static", "top-1 static copies of the swap"),
    ("conflict_moving", "conflict: top-1 of the moving foreground"),
    ("conflict_still", "conflict: top-1 of the still foreground"),
    ("conflict_moving_beats_still", "conflict: moving label scores higher"),
)


def study_rows(keys: Iterable[str]) -> list[tuple[str, str]]:
    """(key, label) of the table's rows for the result keys present, in table order: the
    fixed rows, then the synthesized rows of each background kind found."""
    present = set(keys)
    rows = [(key, label) for key, label in STUDY_ROWS if key in present]
    kinds = list(dict.fromkeys(k.split("/")[1] for k in sorted(present) if k.startswith("ooc/")))
    for kind in kinds:
        rows += [(f"ooc/{kind}/{m}", f"synthesized ({kind}): {label}") for m, label in OOC_ROWS
                 if f"ooc/{kind}/{m}" in present]
        rows += [(f"retrieval/ooc_{kind}/R@{k}", f"retrieval swap ({kind}) queries R@{k}")
                 for k in (1, 5, 10) if f"retrieval/ooc_{kind}/R@{k}" in present]
    return rows


def _static_transform(transform: BatchTransform | None) -> BatchTransform:
    """Apply ``make_static`` to the batch's video before ``transform``."""

    def apply(batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch, video=make_static(batch["video"]))
        return transform(batch) if transform is not None else batch

    return apply


def study_features(
    encoder: nn.Module,
    batches_of: Callable[[str], Batches],
    splits: StudySplits,
    batch_transform: BatchTransform | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Tensor]]:
    """Frozen, view-averaged, L2-normalised features of every split the study needs.

    Args:
        encoder: backbone ``(N, C, T, H, W) -> (N, D)``.
        batches_of: split name -> batches with ``video`` (raw, e.g. uint8), ``label``,
            ``index`` (e.g. ``lambda s: datamodule.clip_dataloader(s, n_clips=2)``).
        splits: which splits to read.
        batch_transform: turns a raw batch into normalised clips (e.g.
            ``lambda b: datamodule.views(b, "eval")``); static clips are made before it.
        progress: show progress per split.

    Returns:
        ``{split: {"features", "labels", "index"}}``, plus ``"<split>_static"`` entries.
    """
    out: dict[str, dict[str, Tensor]] = {}
    jobs = [(name, name, batch_transform) for name in splits.normal()]
    jobs += [(f"{name}_static", name, _static_transform(batch_transform))
             for name in splits.static()]
    for key, split, transform in jobs:
        out[key] = extract_features(encoder, batches_of(split), batch_transform=transform,
                                    progress=f"features {key}" if progress else None)
    return out


def _xy(feats: Mapping[str, Mapping[str, Tensor]], split: str) -> tuple[Tensor, Tensor]:
    return feats[split]["features"], feats[split]["labels"]


def evaluate_features(
    name: str,
    feats: Mapping[str, Mapping[str, Tensor]],
    splits: StudySplits,
    class_names: list[str],
    out_dir: str | Path | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
    out_of_context: Mapping[str, Tensor] | None = None,
) -> dict[str, float]:
    """The study's measures for one encoder's features (see the module docstring).

    Args:
        name: the encoder's name (file names of its report and plot).
        feats: output of :func:`study_features`.
        splits: the split names used there.
        class_names: one name per class.
        out_dir: where ``scene_bias_<name>.json`` / ``.png`` go (None: not written).
        ks: recall@k values.
        out_of_context: background kind -> still labels of its conflict clips, for the
            synthesized rows (``evaluate_out_of_context``); None: no synthesized rows.

    Returns:
        ``{metric key: fraction in [0, 1]}`` with the keys of :data:`STUDY_ROWS` that the
        available splits allow, and the synthesized rows.

    Raises:
        RuntimeError: a static split is not aligned with its normal split.
    """
    k = len(class_names)
    res: dict[str, float] = {}
    biased = fit_linear_probe(*_xy(feats, splits.biased_train), num_classes=k)
    res["biased_probe/test"] = biased.accuracy(*_xy(feats, splits.biased_test))
    res["biased_probe/test_static"] = biased.accuracy(
        *_xy(feats, f"{splits.biased_test}_static"))
    if splits.swapped_test is not None:
        res["biased_probe/swapped_test"] = biased.accuracy(*_xy(feats, splits.swapped_test))

    balanced = splits.balanced_train is not None and splits.balanced_test is not None
    probe = fit_linear_probe(*_xy(feats, splits.balanced_train), num_classes=k) if (
        balanced) else biased
    test = splits.balanced_test if balanced else splits.biased_test
    x_n, y_n = _xy(feats, test)
    x_s, _ = _xy(feats, f"{test}_static")
    if not torch.equal(feats[test]["index"], feats[f"{test}_static"]["index"]):
        raise RuntimeError(f"{test} and its static clips are not aligned by index")
    pred_n, pred_s = probe.predict(x_n), probe.predict(x_s)
    if balanced:
        res["balanced_probe/test"] = (pred_n == y_n).float().mean().item()
        res["balanced_probe/test_static"] = (pred_s == y_n).float().mean().item()
        res["balanced_probe/contrasted"] = contrasted_accuracy(pred_n, pred_s, y_n)
        gallery = splits.balanced_train
        for kk, value in recall_at_k(x_n, y_n, *_xy(feats, gallery), ks=ks).items():
            res[f"retrieval/balanced_test/R@{kk}"] = value
    if splits.swapped_test is not None:
        recalls = recall_at_k(*_xy(feats, splits.swapped_test),
                              *_xy(feats, splits.biased_train), ks=ks)
        for kk, value in recalls.items():
            res[f"retrieval/swapped_test/R@{kk}"] = value
    if out_of_context:
        res.update(evaluate_out_of_context(feats, biased, _xy(feats, splits.biased_train),
                                           out_of_context, ks))
    # the per-class plot's third bar: the real swapped split, else the first synthesized swap
    swapped = splits.swapped_test or (f"ooc/{next(iter(out_of_context))}/swap"
                                      if out_of_context else None)
    report = scene_bias_report(
        pred_n, pred_s, y_n, num_classes=k, class_names=class_names,
        pred_swapped=None if swapped is None else biased.predict(_xy(feats, swapped)[0]),
        labels_swapped=None if swapped is None else _xy(feats, swapped)[1],
    )
    res["scene_bias/gain"] = report.gain
    if out_dir is not None:
        out = Path(out_dir)
        save_report_json(report, out / f"scene_bias_{name}.json")
        plot_per_class(report, out / f"scene_bias_{name}.png",
                       title=f"{name}: {'balanced' if balanced else 'biased'} probe")
    return res


def evaluate_out_of_context(
    feats: Mapping[str, Mapping[str, Tensor]],
    probe: LinearProbe,
    gallery: tuple[Tensor, Tensor],
    still_labels: Mapping[str, Tensor],
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """The synthesized rows (module docstring) of every background kind in ``still_labels``.

    Args:
        feats: features with ``"ooc/<kind>/<test>"`` entries for the tests swap, static and
            conflict (``evaluation.synthesized``), aligned by ``index``.
        probe: the probe trained on the biased training split.
        gallery: (features, labels) of the retrieval gallery (the biased training split).
        still_labels: background kind -> (N,) labels of the conflict clips' still
            foregrounds, in the order of the features.
        ks: recall@k values.

    Returns:
        ``{"ooc/<kind>/<metric>": fraction, "retrieval/ooc_<kind>/R@k": fraction}``.

    Raises:
        RuntimeError: the three tests of a kind are not aligned by index.
    """
    res: dict[str, float] = {}
    for kind, still in still_labels.items():
        swap, static, conflict = (feats[f"ooc/{kind}/{test}"]
                                  for test in ("swap", "static", "conflict"))
        if not (torch.equal(swap["index"], static["index"])
                and torch.equal(swap["index"], conflict["index"])):
            raise RuntimeError(f"the synthesized {kind} tests are not aligned by index")
        labels = swap["labels"]
        pred_swap, pred_static = probe.predict(swap["features"]), probe.predict(static["features"])
        res[f"ooc/{kind}/swap"] = (pred_swap == labels).float().mean().item()
        res[f"ooc/{kind}/static"] = (pred_static == labels).float().mean().item()
        res[f"ooc/{kind}/contrasted"] = contrasted_accuracy(pred_swap, pred_static, labels)
        scores = conflict_scores(probe.logits(conflict["features"]), labels, still)
        for name, value in scores.items():
            res[f"ooc/{kind}/conflict_{name.removesuffix('_accuracy')}"] = value
        for k, value in recall_at_k(swap["features"], labels, *gallery, ks=ks).items():
            res[f"retrieval/ooc_{kind}/R@{k}"] = value
    return res


def format_study_table(results: Mapping[str, Mapping[str, float]], chance: float) -> str:
    """One table, one column per encoder, percentages; chance level in the footer."""
    names = list(results)
    rows = study_rows(key for n in names for key in results[n])
    width = max(len(label) for _, label in rows) + 2
    col = max(10, *(len(n) + 2 for n in names))
    head = f"{'metric (%)':<{width}}" + "".join(f"{n:>{col}}" for n in names)
    lines = [head, "-" * len(head)]
    for key, label in rows:
        cells = "".join(
            f"{100 * results[n][key]:>{col}.1f}" if not math.isnan(results[n].get(key, math.nan))
            else f"{'-':>{col}}" for n in names)
        lines.append(f"{label:<{width}}{cells}")
    lines.append(f"(chance level {100 * chance:.1f}%; contrasted = right on normal AND wrong "
                 "on static)")
    return "\n".join(lines)
