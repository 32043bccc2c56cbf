"""Running the scene-bias probe: a classifier's predictions on normal and static clips of a
labelled split (and a scene-swapped one), gathered into a ``SceneBiasReport``
(``evaluation.scene_bias``). Plain torch code, no Lightning; a Lightning logger may be
passed to :func:`run_scene_bias_probe` (duck-typed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsm_lightning.evaluation.retrieval import BatchTransform, prepare_batch
from dsm_lightning.evaluation.scene_bias import (
    SceneBiasReport,
    format_table,
    log_report,
    plot_per_class,
    save_report_json,
    scene_bias_report,
)
from dsm_lightning.evaluation.video_level import make_static, video_level_predictions

__all__ = ["predict_normal_and_static", "run_scene_bias_probe"]


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
            ``views(batch, "eval")``); ``None`` expects normalised float clips.
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
            return data.views(batch, "eval")

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
            ``views(batch, stage)`` (a ``VideoDataModule``), or an iterable of batches
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
