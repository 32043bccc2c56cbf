"""``TripletMediaLogger``: pictures of the training triplets (PNG grid + GIF) as run media."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from dsm_lightning.disturb.simple import KINETICS_MEAN, KINETICS_STD
from dsm_lightning.disturb.visualize import ROWS, save_triplet_gif, save_triplet_png
from dsm_lightning.evaluation.plots import log_png

__all__ = ["TripletMediaLogger"]

log = logging.getLogger(__name__)


class TripletMediaLogger(pl.Callback):
    """Save and log what the encoder is trained on: anchor / positive / negative clips.

    On the first training batch of every ``every_n_epochs``-th epoch (epochs 0, n, 2n, ...)
    the batch, as the module receives it (after ``on_after_batch_transfer``: normalised
    float ``anchor``, ``positive`` and, for DSM, ``negative`` of shape (B, C, T, H, W)), is
    drawn for its first ``max_samples`` clips: a PNG grid (rows anchor / positive /
    negative, ``max_frames`` columns) and, with ``gif``, an animated GIF of the three clips
    side by side. Files go to ``<trainer.log_dir>/<dirname>/`` as
    ``triplet_e{epoch:03d}_s{sample}.png`` / ``.gif`` (global rank 0 only). They are also
    logged: ``WandbLogger`` gets the PNGs with ``log_image`` and the GIFs as
    ``wandb.Video``; a TensorBoard logger gets the PNGs with ``add_image``; other loggers
    (CSV) only have the files. Normalisation is undone with the datamodule's
    ``augment.mean`` / ``augment.std`` (Kinetics statistics when absent).

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
        triplet = _triplet(batch)
        if triplet is None:
            if not self._warned:
                keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                log.info("TripletMediaLogger: no 'anchor' clips in the batch (%s); skipped", keys)
                self._warned = True
            return
        self.log_triplet(trainer, triplet)

    def log_triplet(self, trainer: pl.Trainer, triplet: Mapping[str, Tensor]) -> list[Path]:
        """Write the PNG (and GIF) of the first clips of ``triplet`` and log them.

        Args:
            trainer: the running trainer (log directory, loggers, epoch, step).
            triplet: ``anchor`` / ``positive`` / ``negative`` normalised (B, C, T, H, W).

        Returns:
            The files written.
        """
        augment = getattr(getattr(trainer, "datamodule", None), "augment", None)
        mean = tuple(getattr(augment, "mean", KINETICS_MEAN))
        std = tuple(getattr(augment, "std", KINETICS_STD))
        out = self.media_dir(trainer)
        epoch, step = trainer.current_epoch, trainer.global_step
        samples = min(self.max_samples, next(iter(triplet.values())).shape[0])
        pngs, gifs = [], []
        for sample in range(samples):
            stem = out / f"triplet_e{epoch:03d}_s{sample}"
            pngs.append(save_triplet_png(stem.with_suffix(".png"), triplet, sample=sample,
                                         max_frames=self.max_frames, mean=mean, std=std))
            if self.gif:
                gifs.append(save_triplet_gif(stem.with_suffix(".gif"), triplet, sample=sample,
                                             mean=mean, std=std))
        for logger in trainer.loggers:
            _log_files(logger, pngs, gifs, step)
        self.saved.extend([*pngs, *gifs])
        return [*pngs, *gifs]


def _triplet(batch: Any) -> dict[str, Tensor] | None:
    """The batch's float clip tensors by row name, or None without an ``anchor``."""
    if not isinstance(batch, Mapping) or not isinstance(batch.get("anchor"), Tensor):
        return None
    return {k: batch[k] for k in ROWS if isinstance(batch.get(k), Tensor) and batch[k].dim() == 5}


def _log_files(logger: Any, pngs: list[Path], gifs: list[Path], step: int) -> None:
    """Hand the files to a logger that takes media (wandb, TensorBoard); others are skipped."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        captions = [p.stem for p in pngs]
        logger.log_image(key="media/triplet", images=[str(p) for p in pngs], step=step,
                         caption=captions)
        if gifs:
            videos = [wandb.Video(str(p), format="gif", caption=p.stem) for p in gifs]
            logger.experiment.log({"media/triplet_gif": videos, "trainer/global_step": step})
        return
    for i, path in enumerate(pngs):
        log_png(logger, f"media/triplet_s{i}", path, step=step)
