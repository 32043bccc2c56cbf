"""``TripletMediaLogger``: pictures of the training triplets (PNG grid + GIF) as run media.

Every picture has one labelled row per clip: ``anchor``, ``positive`` and the hard
negative(s): ``negative`` (``negative_mode="sample"``: one per clip, its kind drawn) or one
row per kind, ``negative: <kind>``, when the builder stacks every kind
(``negative_mode="all"``, a (B, M, C, T, H, W) tensor).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from dsm_lightning.data.datamodule import clip_spec_of
from dsm_lightning.disturb.views import ViewBuilder
from dsm_lightning.disturb.visualize import save_png
from dsm_lightning.evaluation.plots import log_png
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD, denormalize

__all__ = ["TripletMediaLogger", "triplet_rows", "labelled_grid", "save_labelled_png",
           "save_labelled_gif"]

log = logging.getLogger(__name__)

_GAP = 2  # white pixels between tiles
_PAD = 4  # pixels around a label


def triplet_rows(
    triplet: Mapping[str, Tensor], negative_kinds: Sequence[str] = ()
) -> list[tuple[str, Tensor]]:
    """The batch's clips as labelled rows: anchor, positive, then every hard negative.

    Args:
        triplet: ``anchor`` and ``positive`` (B, C, T, H, W); optional ``negative``
            (B, C, T, H, W) or (B, M, C, T, H, W) (one negative per kind).
        negative_kinds: the builder's ``negative_kinds``, to name the M stacked negatives;
            ``"shift"`` is dropped first when it leaves exactly M names (the builder drops
            it without a shifted clip). Without matching names they are numbered.

    Returns:
        ``[(label, clips (B, C, T, H, W)), ...]``.

    Raises:
        ValueError: a clip tensor of another shape.
    """
    rows: list[tuple[str, Tensor]] = []
    for key in ("anchor", "positive"):
        if isinstance(triplet.get(key), Tensor):
            rows.append((key, _check_clips(key, triplet[key], 5)))
    negative = triplet.get("negative")
    if isinstance(negative, Tensor):
        if negative.dim() == 5:
            name = f"negative: {negative_kinds[0]}" if len(negative_kinds) == 1 else "negative"
            rows.append((name, negative))
        else:
            _check_clips("negative", negative, 6)
            count = negative.shape[1]
            kinds = list(negative_kinds)
            if len(kinds) != count and len([k for k in kinds if k != "shift"]) == count:
                kinds = [k for k in kinds if k != "shift"]
            if len(kinds) != count:
                kinds = [str(m + 1) for m in range(count)]
            rows.extend((f"negative: {kind}", negative[:, m]) for m, kind in enumerate(kinds))
    return rows


def _check_clips(key: str, clips: Tensor, dims: int) -> Tensor:
    if clips.dim() != dims:
        shape = "(B, C, T, H, W)" if dims == 5 else "(B, M, C, T, H, W)"
        raise ValueError(f"{key} must be {shape}, got {tuple(clips.shape)}")
    return clips


def _frames(
    rows: Sequence[tuple[str, Tensor]], sample: int, mean: Sequence[float], std: Sequence[float]
) -> list[tuple[str, np.ndarray]]:
    """One sample's clips as uint8 (T, H, W, 3) arrays."""
    if not rows:
        raise ValueError("no clips to draw")
    out = []
    for label, clips in rows:
        pixels = denormalize(clips[sample].detach().cpu(), tuple(mean), tuple(std))
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, *pixels.shape[1:])
        out.append((label, (pixels.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()))
    return out


def _canvas(clips: Sequence[tuple[str, np.ndarray]], columns: Sequence[int]) -> Image.Image:
    """Rows of tiles (the given frame indices) with each row's label on its left."""
    font = ImageFont.load_default()
    boxes = [font.getbbox(label) for label, _ in clips]
    label_width = max(box[2] for box in boxes) + 2 * _PAD
    _, h, w, _ = clips[0][1].shape
    row_height = max(h, max(box[3] for box in boxes) + _PAD)
    width = label_width + len(columns) * (w + _GAP) - _GAP
    height = len(clips) * (row_height + _GAP) - _GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    for r, (_, frames) in enumerate(clips):
        y = r * (row_height + _GAP)
        for c, f in enumerate(columns):
            x = label_width + c * (w + _GAP)
            canvas[y : y + h, x : x + w] = frames[min(f, frames.shape[0] - 1)]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, (label, _) in enumerate(clips):
        draw.text((_PAD, r * (row_height + _GAP) + _PAD // 2), label, fill=(0, 0, 0), font=font)
    return image


def labelled_grid(
    rows: Sequence[tuple[str, Tensor]],
    sample: int = 0,
    max_frames: int = 8,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> Image.Image:
    """Grid of one sample: one labelled row per clip, columns evenly spaced frames.

    Args:
        rows: ``(label, normalised clips (B, C, T, H, W))`` from :func:`triplet_rows`.
        sample: which clip of the batch.
        max_frames: at most this many columns.
        mean: normalisation mean to undo.
        std: normalisation std to undo.

    Returns:
        RGB image: a label column, then ``min(max_frames, T)`` tiles of H x W per row,
        2 white pixels apart.
    """
    clips = _frames(rows, sample, mean, std)
    t = clips[0][1].shape[0]
    shown = np.unique(np.linspace(0, t - 1, min(max_frames, t)).round().astype(int))
    return _canvas(clips, shown.tolist())


def save_labelled_png(path: str | Path, rows: Sequence[tuple[str, Tensor]], **kwargs) -> Path:
    """Write :func:`labelled_grid` as a PNG (parent folders created); returns the path."""
    return save_png(labelled_grid(rows, **kwargs), path)


def save_labelled_gif(
    path: str | Path,
    rows: Sequence[tuple[str, Tensor]],
    sample: int = 0,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    duration_ms: int = 120,
) -> Path:
    """Write an animated GIF of one sample: the labelled rows, one GIF frame per clip frame.

    Args:
        path: output file (parent folders created).
        rows: ``(label, normalised clips (B, C, T, H, W))`` from :func:`triplet_rows`.
        sample: which clip of the batch.
        mean: normalisation mean to undo.
        std: normalisation std to undo.
        duration_ms: display time per frame.

    Returns:
        The path written.
    """
    clips = _frames(rows, sample, mean, std)
    # one image per frame of one sample: display code, not the training path
    images = [_canvas(clips, [f]) for f in range(clips[0][1].shape[0])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
    )
    return path


class TripletMediaLogger(pl.Callback):
    """Save and log what the encoder is trained on: anchor / positive / negative clips.

    On the first training batch of every ``every_n_epochs``-th epoch (epochs 0, n, 2n, ...)
    the batch, as the module receives it (after ``on_after_batch_transfer``: normalised
    float ``anchor``, ``positive`` (B, C, T, H, W) and, for DSM, ``negative`` (B, C, T, H, W)
    or (B, M, C, T, H, W) with ``negative_mode="all"``), is drawn for its first
    ``max_samples`` clips: a PNG grid with one labelled row per clip (``anchor``,
    ``positive``, ``negative`` or one ``negative: <kind>`` row per stacked kind, named from
    the datamodule's ``augment.negative_kinds``) and ``max_frames`` columns, and, with
    ``gif``, an animated GIF of the same labelled rows. Files go to
    ``<trainer.log_dir>/<dirname>/`` as ``triplet_e{epoch:03d}_s{sample}.png`` / ``.gif``
    (global rank 0 only). They are also logged: ``WandbLogger`` gets the PNGs with
    ``log_image`` and the GIFs as ``wandb.Video``; a TensorBoard logger gets the PNGs with
    ``add_image``; other loggers (CSV) only have the files. Normalisation is undone with
    the datamodule's ``augment.mean`` / ``augment.std`` (Kinetics statistics when absent).

    Batches without ``anchor`` (fine-tuning, evaluation) are skipped with one info message.

    Args:
        every_n_epochs: draw every this many epochs.
        max_samples: clips of the batch drawn each time.
        max_frames: frames (columns) of the PNG grid, evenly spaced.
        gif: also write (and log) the animated GIF.
        dirname: folder under the log directory.

    Raises:
        ValueError: ``every_n_epochs``, ``max_samples`` or ``max_frames`` below 1.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_samples: int = 2,
        max_frames: int = 8,
        gif: bool = True,
        dirname: str = "media",
    ) -> None:
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("max_samples", max_samples),
                            ("max_frames", max_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if not dirname:
            raise ValueError("dirname must be a non-empty folder name")
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.max_frames = max_frames
        self.gif = gif
        self.dirname = dirname
        #: every file written so far, in order
        self.saved: list[Path] = []
        self._warned = False

    def media_dir(self, trainer: pl.Trainer) -> Path:
        """``<trainer.log_dir>/<dirname>`` (the trainer's root dir when there is no logger)."""
        return Path(trainer.log_dir or trainer.default_root_dir) / self.dirname

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Draw the first batch of every ``every_n_epochs``-th epoch."""
        if batch_idx != 0 or trainer.current_epoch % self.every_n_epochs != 0:
            return
        if not trainer.is_global_zero:
            return
        if not isinstance(batch, Mapping) or not isinstance(batch.get("anchor"), Tensor):
            if not self._warned:
                keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                log.info("TripletMediaLogger: no 'anchor' clips in the batch (%s); skipped", keys)
                self._warned = True
            return
        self.log_triplet(trainer, batch)

    def log_triplet(self, trainer: pl.Trainer, triplet: Mapping[str, Tensor]) -> list[Path]:
        """Write the PNG (and GIF) of the first clips of ``triplet`` and log them.

        Args:
            trainer: the running trainer (log directory, loggers, epoch, step, datamodule).
            triplet: normalised ``anchor`` / ``positive`` (B, C, T, H, W) and ``negative``
                (B, C, T, H, W) or (B, M, C, T, H, W); other keys are ignored.

        Returns:
            The files written.
        """
        datamodule = getattr(trainer, "datamodule", None)
        mean, std = clip_spec_of(datamodule)[2:4]
        augment = getattr(datamodule, "augment", None)
        kinds = augment.negative_kinds if isinstance(augment, ViewBuilder) else ()
        rows = triplet_rows(triplet, tuple(kinds))
        out = self.media_dir(trainer)
        epoch, step = trainer.current_epoch, trainer.global_step
        samples = min(self.max_samples, rows[0][1].shape[0])
        pngs, gifs = [], []
        for sample in range(samples):
            stem = out / f"triplet_e{epoch:03d}_s{sample}"
            pngs.append(save_labelled_png(stem.with_suffix(".png"), rows, sample=sample,
                                          max_frames=self.max_frames, mean=mean, std=std))
            if self.gif:
                gifs.append(save_labelled_gif(stem.with_suffix(".gif"), rows, sample=sample,
                                              mean=mean, std=std))
        caption = " / ".join(label for label, _ in rows)
        for logger in trainer.loggers:
            _log_files(logger, pngs, gifs, step, caption)
        self.saved.extend([*pngs, *gifs])
        return [*pngs, *gifs]


def _log_files(logger: Any, pngs: list[Path], gifs: list[Path], step: int, rows: str) -> None:
    """Hand the files to a logger that takes media (wandb, TensorBoard); others are skipped."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        captions = [f"{p.stem} (rows: {rows})" for p in pngs]
        logger.log_image(key="media/triplet", images=[str(p) for p in pngs], step=step,
                         caption=captions)
        if gifs:
            videos = [wandb.Video(str(p), format="gif", caption=f"{p.stem} (rows: {rows})")
                      for p in gifs]
            logger.experiment.log({"media/triplet_gif": videos, "trainer/global_step": step})
        return
    for i, path in enumerate(pngs):
        log_png(logger, f"media/triplet_s{i}", path, step=step)
