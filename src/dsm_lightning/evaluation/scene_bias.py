"""Scene-bias probe: accuracy on normal vs static clips, per class (the paper's Figure 1).

Every labelled video is classified twice: as its normal clip and as its *static* clip (the
middle frame repeated, no motion). A motion-aware classifier gains much more from the
normal clip; contrasted accuracy (right on normal AND wrong on static) sums it up in one
number. An optional scene-swapped test set adds the accuracy there. Plain torch code, no
Lightning; a Lightning logger may be passed to :func:`run_scene_bias_probe` (duck-typed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsm_lightning.evaluation.plots import log_png, save_figure
from dsm_lightning.evaluation.retrieval import BatchTransform, prepare_batch
from dsm_lightning.evaluation.video_level import (
    _as_class_indices,
    contrasted_accuracy,
    make_static,
    per_class_accuracy,
    video_level_predictions,
)


@dataclass
class SceneBiasReport:
    """Result of the scene-bias probe. Accuracies are fractions in [0, 1].

    Attributes:
        class_names: one name per class.
        n_per_class: number of test videos of each class.
        accuracy_normal: overall accuracy on normal clips.
        accuracy_static: overall accuracy on static clips.
        per_class_normal: accuracy of each class on normal clips (NaN: no sample).
        per_class_static: accuracy of each class on static clips.
        per_class_gain: ``per_class_normal - per_class_static`` (Figure 1's bars).
        contrasted_accuracy: fraction right on normal AND wrong on static.
        accuracy_swapped: accuracy on the scene-swapped test set, ``None`` when not given.
        per_class_swapped: per-class accuracy there, ``None`` when not given.
    """

    class_names: list[str]
    n_per_class: list[int]
    accuracy_normal: float
    accuracy_static: float
    per_class_normal: list[float]
    per_class_static: list[float]
    per_class_gain: list[float]
    contrasted_accuracy: float
    accuracy_swapped: float | None = None
    per_class_swapped: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        """Overall accuracy gain of normal over static clips."""
        return self.accuracy_normal - self.accuracy_static

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as ``None``)."""
        out = asdict(self)
        out["gain"] = self.gain
        return _nan_to_none(out)

    def metrics(self, prefix: str = "scene_bias/") -> dict[str, float]:
        """Scalar metrics for a logger, keys prefixed with ``prefix``."""
        values = {
            "acc_normal": self.accuracy_normal,
            "acc_static": self.accuracy_static,
            "gain": self.gain,
            "contrasted_acc": self.contrasted_accuracy,
        }
        if self.accuracy_swapped is not None:
            values["acc_swapped"] = self.accuracy_swapped
        return {prefix + key: float(value) for key, value in values.items()}


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    return value


def scene_bias_report(
    pred_normal: Tensor,
    pred_static: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    pred_swapped: Tensor | None = None,
    labels_swapped: Tensor | None = None,
) -> SceneBiasReport:
    """Build the scene-bias report from predictions on normal and static clips.

    Args:
        pred_normal: (N,) predicted classes or (N, K) scores on the normal clips.
        pred_static: (N,) or (N, K) on the static clips of the same videos.
        labels: (N,) true classes.
        num_classes: K; defaults to ``len(class_names)``, else to the score width, else to
            ``max(label, prediction) + 1``.
        class_names: names of the classes; defaults to ``"0", "1", ...``.
        pred_swapped: (M,) or (M, K) predictions on a scene-swapped test set (optional).
        labels_swapped: (M,) its true classes (required with ``pred_swapped``).

    Returns:
        The :class:`SceneBiasReport`.

    Raises:
        ValueError: on mismatched lengths, a class-name count that disagrees with
            ``num_classes``, or ``pred_swapped`` without ``labels_swapped``.
    """
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        elif pred_normal.dim() == 2:
            num_classes = pred_normal.shape[1]
        else:
            num_classes = int(max(labels.max(), pred_normal.max(), pred_static.max())) + 1
    if class_names is None:
        class_names = [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
    normal = _as_class_indices(pred_normal).cpu()
    static = _as_class_indices(pred_static).cpu()
    labels = labels.cpu().long()
    contrasted = contrasted_accuracy(normal, static, labels)
    acc_normal = per_class_accuracy(normal, labels, num_classes)
    acc_static = per_class_accuracy(static, labels, num_classes)
    report = SceneBiasReport(
        class_names=list(class_names),
        n_per_class=torch.bincount(labels, minlength=num_classes).tolist(),
        accuracy_normal=(normal == labels).float().mean().item(),
        accuracy_static=(static == labels).float().mean().item(),
        per_class_normal=acc_normal.tolist(),
        per_class_static=acc_static.tolist(),
        per_class_gain=(acc_normal - acc_static).tolist(),
        contrasted_accuracy=contrasted,
    )
    if pred_swapped is not None:
        if labels_swapped is None:
            raise ValueError("pred_swapped needs labels_swapped")
        swapped = _as_class_indices(pred_swapped).cpu()
        labels_swapped = labels_swapped.cpu().long()
        if swapped.shape != labels_swapped.shape:
            raise ValueError(
                f"pred_swapped {tuple(swapped.shape)} vs labels_swapped "
                f"{tuple(labels_swapped.shape)}"
            )
        report.accuracy_swapped = (swapped == labels_swapped).float().mean().item()
        report.per_class_swapped = per_class_accuracy(
            swapped, labels_swapped, num_classes
        ).tolist()
    return report


def format_table(report: SceneBiasReport, max_classes: int | None = 50) -> str:
    """Format the report as a text table (overall rows, then one row per class).

    Args:
        report: the probe's result.
        max_classes: show at most this many classes (largest gain first); ``None``: all.

    Returns:
        The table as a string, accuracies in percent.
    """

    def pct(value: float | None) -> str:
        return "   n/a" if value is None or math.isnan(value) else f"{100 * value:6.1f}"

    name_width = max([len("class"), *(len(n) for n in report.class_names)])
    name_width = min(name_width, 32)
    has_swap = report.per_class_swapped is not None
    head = f"{'class':<{name_width}} |     n | normal | static |   gain" + (
        " | swapped" if has_swap else ""
    )
    lines = [head, "-" * len(head)]
    overall = (
        f"{'ALL':<{name_width}} | {sum(report.n_per_class):5d} | {pct(report.accuracy_normal)} "
        f"| {pct(report.accuracy_static)} | {pct(report.gain)}"
    )
    if has_swap:
        overall += f" |  {pct(report.accuracy_swapped)}"
    lines += [overall, "-" * len(head)]
    order = sorted(
        range(len(report.class_names)),
        key=lambda k: -math.inf if math.isnan(report.per_class_gain[k])
        else report.per_class_gain[k],
        reverse=True,
    )
    if max_classes is not None:
        order = order[:max_classes]
    for k in order:
        row = (
            f"{report.class_names[k][:name_width]:<{name_width}} | {report.n_per_class[k]:5d} "
            f"| {pct(report.per_class_normal[k])} | {pct(report.per_class_static[k])} "
            f"| {pct(report.per_class_gain[k])}"
        )
        if has_swap:
            row += f" |  {pct(report.per_class_swapped[k])}"
        lines.append(row)
    lines.append(
        f"contrasted accuracy (right on normal, wrong on static): "
        f"{100 * report.contrasted_accuracy:.1f}%"
    )
    return "\n".join(lines)


def save_report_json(report: SceneBiasReport, path: str | Path) -> Path:
    """Write the report as JSON (NaN as ``null``); parent folders are created.

    Args:
        report: the probe's result.
        path: the .json file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return path


def plot_per_class(report: SceneBiasReport, path: str | Path, title: str | None = None) -> Path:
    """Save a per-class bar plot of accuracy on normal vs static clips (like Figure 1).

    Classes are sorted by gain (normal - static), largest first.

    Args:
        report: the probe's result.
        path: the .png file; parent folders are created.
        title: plot title; a default names the overall accuracies.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    gains = np.nan_to_num(np.asarray(report.per_class_gain, dtype=float), nan=-np.inf)
    order = np.argsort(-gains, kind="stable")
    normal = np.nan_to_num(np.asarray(report.per_class_normal, dtype=float))[order] * 100
    static = np.nan_to_num(np.asarray(report.per_class_static, dtype=float))[order] * 100
    names = [report.class_names[k] for k in order]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4.0))
    ax.bar(x - 0.2, normal, width=0.4, label="normal clip", color="tab:blue")
    ax.bar(x + 0.2, static, width=0.4, label="static clip", color="tab:orange")
    crowded = sum(len(n) for n in names) > 60  # labels would run into each other
    ax.set_xticks(x, names, rotation=90 if len(names) > 10 else (30 if crowded else 0),
                  ha="right" if crowded and len(names) <= 10 else "center", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right")
    ax.set_title(
        title
        or (
            f"normal {100 * report.accuracy_normal:.1f}% vs static "
            f"{100 * report.accuracy_static:.1f}%, contrasted "
            f"{100 * report.contrasted_accuracy:.1f}%"
        )
    )
    return save_figure(fig, path)


def _classifier_device(classifier: nn.Module) -> torch.device:
    for tensor in classifier.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict_normal_and_static(
    classifier: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    batch_transform: BatchTransform | None = None,
    device: str | torch.device | None = None,
    with_static: bool = True,
) -> dict[str, Tensor]:
    """Class probabilities of every video as a normal clip and as a static clip.

    Multi-view videos (B, V, C, T, H, W) are classified per view and the softmax is
    averaged over views (video level); the static clip repeats the middle frame of each
    view (:func:`make_static`).

    Args:
        classifier: maps (N, C, T, H, W) float clips to (N, K) logits; put in eval mode.
        batches: batch dicts with ``video``, ``label`` and optionally ``index`` (e.g. a
            DataLoader).
        batch_transform: applied after moving a batch to ``device`` (e.g. the datamodule's
            ``on_after_batch_transfer``); ``None`` expects normalised float clips.
        device: where to run; defaults to the classifier's device.
        with_static: also classify the static clips.

    Returns:
        ``{"normal": (N, K), "static": (N, K) (when asked), "labels": (N,),
        "index": (N,)}`` on the CPU (``index`` counts from 0 when batches carry none).
    """
    classifier.eval()
    device = torch.device(device) if device is not None else _classifier_device(classifier)
    out: dict[str, list[Tensor]] = {"normal": [], "static": [], "labels": [], "index": []}

    def classify(video: Tensor) -> Tensor:
        if video.dim() == 5:
            return classifier(video).float().softmax(dim=-1)
        logits = classifier(video.flatten(0, 1))
        return video_level_predictions(logits.view(*video.shape[:2], -1))

    seen = 0
    for batch in batches:
        batch = prepare_batch(batch, device, batch_transform)
        video = batch["video"].float()
        out["normal"].append(classify(video).cpu())
        if with_static:
            out["static"].append(classify(make_static(video)).cpu())
        out["labels"].append(batch["label"].cpu().long())
        index = batch.get("index")
        if index is None:
            index = torch.arange(seen, seen + video.shape[0])
        out["index"].append(index.cpu().long())
        seen += video.shape[0]
    if not out["labels"]:
        raise ValueError("no batches to classify")
    return {key: torch.cat(value) for key, value in out.items() if value}


def _resolve_batches(
    data: Any, source: Any, n_clips: int
) -> tuple[Iterable[Mapping[str, Tensor]], BatchTransform | None]:
    """(batches, transform) for a split name of a datamodule, or an iterable of batches."""
    if isinstance(source, str):
        if not hasattr(data, "clip_dataloader"):
            raise ValueError(
                f"split {source!r} given but data is not a datamodule with clip_dataloader"
            )
        loader = data.clip_dataloader(source, n_clips=n_clips, shuffle=False)

        def transform(batch: dict[str, Any]) -> dict[str, Any]:
            return data.on_after_batch_transfer(batch, 0)

        return loader, transform
    return source, None


def _by_index(preds: dict[str, Tensor]) -> dict[str, Tensor]:
    order = torch.argsort(preds["index"], stable=True)
    return {key: value[order] for key, value in preds.items()}


def run_scene_bias_probe(
    classifier: nn.Module,
    data: Any,
    split: str = "test",
    static: str | Iterable[Mapping[str, Tensor]] | None = None,
    swapped: str | Iterable[Mapping[str, Tensor]] | None = None,
    output_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    n_clips: int = 1,
    batch_transform: BatchTransform | None = None,
    device: str | torch.device | None = None,
    logger: Any | None = None,
    verbose: bool = True,
) -> SceneBiasReport:
    """Run the scene-bias probe: classify each test video as a normal and a static clip.

    Prints the table, writes ``scene_bias.json`` and ``scene_bias_per_class.png`` to
    ``output_dir`` and, when a Lightning logger is given, logs the scalars and the plot.

    Args:
        classifier: maps (N, C, T, H, W) normalised clips to (N, K) logits, e.g. a
            fine-tuned or linearly probed ``FinetuneModule``.
        data: a datamodule with ``clip_dataloader(split, n_clips, shuffle)`` and
            ``on_after_batch_transfer`` (a ``VideoDataModule``), or an iterable of batches
            whose ``video`` is already float and normalised.
        split: the labelled split to probe when ``data`` is a datamodule.
        static: where the static clips come from: ``None`` builds them from each normal
            clip (middle frame repeated); a split name of ``data`` (e.g. the synthetic
            source's ``"balanced_test_static"``) or an iterable of batches reads them.
            Static and normal videos are paired by ``index`` (their labels must agree).
        swapped: a scene-swapped test set (split name of ``data`` or iterable), or ``None``.
        output_dir: where to write the JSON and PNG; ``None`` writes nothing.
        class_names: class names; defaults to ``classifier.class_names`` or
            ``data.class_names`` when present, else indices.
        num_classes: K; defaults to the classifier's output width.
        n_clips: temporal windows per video requested from a datamodule.
        batch_transform: overrides the transform applied to each batch after transfer.
        device: where to run; defaults to the classifier's device.
        logger: a Lightning logger to log the scalars and the plot to (see
            :func:`log_report`).
        verbose: print the table.

    Returns:
        The :class:`SceneBiasReport`.

    Raises:
        ValueError: when static and normal videos cannot be paired.
    """

    def predict(source: Any, with_static: bool) -> dict[str, Tensor]:
        batches, transform = _resolve_batches(data, source, n_clips)
        return predict_normal_and_static(
            classifier, batches, batch_transform or transform, device, with_static
        )

    preds = predict(split if hasattr(data, "clip_dataloader") else data, static is None)
    if static is not None:
        preds = _by_index(preds)
        static_preds = _by_index(predict(static, False))
        if not torch.equal(static_preds["labels"], preds["labels"]):
            raise ValueError(
                f"static clips ({len(static_preds['labels'])} videos) do not pair with the "
                f"normal ones ({len(preds['labels'])}) by index and label"
            )
        preds["static"] = static_preds["normal"]
    swapped_preds = None if swapped is None else predict(swapped, False)
    if class_names is None:
        class_names = getattr(classifier, "class_names", None) or getattr(
            data, "class_names", None
        )
    if num_classes is None:
        num_classes = preds["normal"].shape[1]
    if class_names is not None and len(class_names) != num_classes:
        class_names = None
    report = scene_bias_report(
        preds["normal"],
        preds["static"],
        preds["labels"],
        num_classes=num_classes,
        class_names=class_names,
        pred_swapped=None if swapped_preds is None else swapped_preds["normal"],
        labels_swapped=None if swapped_preds is None else swapped_preds["labels"],
    )
    if verbose:
        print(format_table(report))
    png = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        save_report_json(report, output_dir / "scene_bias.json")
        png = plot_per_class(report, output_dir / "scene_bias_per_class.png")
    if logger is not None:
        log_report(logger, report, png)
    return report


def log_report(logger: Any, report: SceneBiasReport, png: str | Path | None = None) -> None:
    """Log the report's scalars, and the per-class PNG when the logger takes images.

    Args:
        logger: a Lightning logger (``log_metrics``; images via
            :func:`dsm_lightning.evaluation.plots.log_png`).
        report: the probe's result.
        png: path of the per-class plot, if written.
    """
    logger.log_metrics(report.metrics())
    if png is not None:
        log_png(logger, "scene_bias/per_class", png)
