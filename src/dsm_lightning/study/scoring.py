"""Scoring a study's encoders on one data module: features of the labelled splits, the
synthesized out-of-context tests (built once per split, background and seed, cached), the
probes, retrieval and the per-class plots (``evaluation.study``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning.evaluation.retrieval import extract_features
from dsm_lightning.evaluation.study import StudySplits, evaluate_features, study_features
from dsm_lightning.evaluation.synthesized import (
    OutOfContextTests,
    SynthesizedSplit,
    synthesize_split,
)
from dsm_lightning.study.encoders import renormalize

__all__ = ["save_examples", "score_encoders", "synthesized_splits", "true_masks"]

#: Videos of each background kind drawn in the report's example figures.
EXAMPLES = 2


def true_masks(datamodule: Any, split: str, n_clips: int) -> Callable[[Tensor], Tensor] | None:
    """The source's true foreground masks of ``split``, cut as the evaluation clips are.

    A source that knows its masks has ``foreground_masks(split)`` (the synthetic sources):
    ``masks[i]`` is the bool (T_video, S, S) mask of the split's ``i``-th video. The returned
    function maps video positions (B,) to (B, V, T, H, W): the frames of each of the ``V``
    evaluation windows (the multi-view dataset's sampler), resized to the decoded frame side.

    Returns:
        The function, or None when the source has no masks.
    """
    masks_of = getattr(datamodule.source, "foreground_masks", None)
    if masks_of is None:
        return None
    masks = masks_of(split)
    dataset = datamodule.dataset("multiview", split, n_clips=n_clips, evaluation=True)
    side = dataset.frame_size

    def of(index: Tensor) -> Tensor:
        out = []
        for i in index.tolist():  # evaluation set-up, a video at a time (not a training path)
            video = torch.from_numpy(masks[i])  # (T_video, S, S) bool
            frames = [torch.as_tensor(clip.frame_indices)
                      for clip in dataset.sampler(video.shape[0]).clips]
            windows = video[torch.stack(frames)].float()  # (V, T, S, S)
            if windows.shape[-1] != side:
                windows = F.interpolate(windows, size=(side, side), mode="nearest")
            out.append(windows > 0.5)
        return torch.stack(out)

    return of


def synthesized_splits(
    datamodule: Any, split: str, n_clips: int, tests: OutOfContextTests, seed: int, cache: Path,
    progress: bool = False,
) -> dict[str, SynthesizedSplit]:
    """The out-of-context clips of ``split`` for each background kind (cached in ``cache``).

    Returns:
        ``{background kind: SynthesizedSplit}``.
    """
    truth = true_masks(datamodule, split, n_clips)
    spec = datamodule.clip_spec
    identity = {"split": split, "n_clips": n_clips, "num_frames": spec.num_frames,
                "frame_size": datamodule.hparams.frame_size, "stride": datamodule.hparams.stride,
                "source": repr(datamodule.source), "records": len(datamodule.records(split))}
    out = {}
    for kind in tests.backgrounds:
        if progress:
            print(f"[study] synthesizing {split} ({kind} backgrounds, seed {seed})", flush=True)
        batches = datamodule.clip_dataloader(split, n_clips=n_clips, shuffle=True)
        out[kind] = synthesize_split(batches, kind, seed, tests, truth,
                                     cache / f"{split}_{kind}_seed{seed}.pt", identity)
    return out


def save_examples(synthesized: Mapping[str, SynthesizedSplit], out: Path,
                  videos: int = EXAMPLES) -> list[str]:
    """A PNG per background kind showing what was tested: for the first ``videos`` videos,
    rows swap / static / conflict (first window), columns evenly spaced frames.

    Returns:
        The files written (relative to ``out``'s parent, for the report's links).
    """
    from dsm_lightning.callbacks.media import save_labelled_png

    written = []
    for kind, split in synthesized.items():
        for number in range(min(videos, len(split.labels))):
            rows = [(f"{test} (class {int(split.labels[number])}"
                     + (f", still {int(split.still_labels[number])})" if test == "conflict"
                        else ")"), clips[number:number + 1, 0].float() / 255.0)
                    for test, clips in split.clips.items()]
            path = save_labelled_png(out / f"examples_{kind}_{number}.png", rows,
                                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
            written.append(str(path.relative_to(out.parent)))
    return written


def score_encoders(
    datamodule: Any,
    scored: Mapping[str, tuple[nn.Module, Mapping[str, Any]]],
    splits: StudySplits,
    n_clips: int,
    out: Path,
    tests: OutOfContextTests | None,
    seed: int,
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Score every encoder (``evaluation.study.evaluate_features``) on the data module.

    Args:
        datamodule: the evaluation ``VideoDataModule`` (set up).
        scored: name -> (encoder, its ``encoder.pt`` metadata).
        splits: the labelled split names.
        n_clips: evaluation windows per video.
        out: where the plots and the synthesized-clip cache go.
        tests: the synthesized tests (None or no backgrounds: none).
        seed: seed of the synthesis.
        progress: progress lines.

    Returns:
        ``(results, notes)``: ``{encoder: {metric: value}}`` and what the run measured once
        for every encoder (``mask_iou`` of the foreground estimate, when known).
    """
    class_names = list(datamodule.class_names)

    def batches_of(split: str) -> Any:
        return datamodule.clip_dataloader(split, n_clips=n_clips)

    def transform(batch: dict[str, Any]) -> dict[str, Any]:
        return datamodule.views(batch, "eval")

    synthesized: dict[str, SynthesizedSplit] = {}
    notes: dict[str, Any] = {}
    if tests is not None and tests.backgrounds:
        split = tests.split or splits.biased_test
        synthesized = synthesized_splits(datamodule, split, n_clips, tests, seed,
                                         out / "out_of_context", progress)
        ious = [s.mask_iou for s in synthesized.values() if s.mask_iou is not None]
        notes = {"synthesized_split": split, "backgrounds": list(synthesized),
                 "masks": tests.masks, "mask_iou": ious[0] if ious else None,
                 "examples": save_examples(synthesized, out / "out_of_context")}
    stats = (datamodule.clip_spec.mean, datamodule.clip_spec.std)
    results = {}
    for name, (encoder, meta) in scored.items():
        batch_transform = renormalize(transform, stats, meta)
        feats = study_features(encoder, batches_of, splits, batch_transform, progress=progress)
        for kind, clips in synthesized.items():
            for test in clips.clips:
                feats[f"ooc/{kind}/{test}"] = extract_features(
                    encoder, clips.batches(test), batch_transform=batch_transform,
                    progress=f"features ooc {kind} {test}" if progress else None)
        still = {kind: clips.still_labels for kind, clips in synthesized.items()}
        results[name] = evaluate_features(name, feats, splits, class_names, out_dir=out,
                                          out_of_context=still or None)
    return results, notes
