"""Scene-bias probe: accuracy on normal vs static clips, per class (the paper's Figure 1).

Every labelled video is classified twice: as its normal clip and as its *static* clip (the
middle frame repeated, no motion). A motion-aware classifier gains much more from the
normal clip; contrasted accuracy (right on normal AND wrong on static) sums it up in one
number. An optional scene-swapped test set adds the accuracy there. This module holds the
report (table, JSON, per-class plot, logging); ``evaluation.scene_bias_probe`` runs a
classifier to make one. Plain torch code, no Lightning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsm_lightning.evaluation.plots import log_png, save_figure
from dsm_lightning.evaluation.video_level import (
    _as_class_indices,
    contrasted_accuracy,
    per_class_accuracy,
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
