"""Progress bars that stay readable in a log file: tqdm on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from dsm_lightning.progress import DEFAULT_INTERVAL, progress_style

__all__ = ["LineProgressBar", "default_progress_bar"]


class LineProgressBar(ProgressBar):
    """One plain line every ``interval`` seconds (and at each epoch end) instead of a bar.

    Lines read ``epoch 3/30 batch 12/48 (25%) 41s train/loss=5.12 train/hn_acc=0.31``.

    Args:
        interval: seconds between two lines within an epoch.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._enabled = True
        self._last = 0.0
        self._epoch_start = 0.0
        self._batches = 0  # batches of the epoch done: the last hook's batch_idx + 1

    def disable(self) -> None:
        """Stop writing lines."""
        self._enabled = False

    def enable(self) -> None:
        """Write lines again."""
        self._enabled = True

    def _line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: int) -> str:
        total = self.total_train_batches
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        pct = f" ({100 * batch / total:.0f}%)" if isinstance(total, int) and total else ""
        metrics = self.get_metrics(trainer, pl_module)
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in metrics.items() if k != "v_num")
        elapsed = time.monotonic() - self._epoch_start
        return (f"epoch {trainer.current_epoch + 1}/{epochs} batch {batch}/{total}{pct} "
                f"{elapsed:.0f}s {shown}").rstrip()

    def _write(self, text: str) -> None:
        if self._enabled:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self._last = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's clock."""
        self._epoch_start = self._last = time.monotonic()
        self._batches = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        """A line when ``interval`` has passed."""
        self._batches = batch_idx + 1
        if time.monotonic() - self._last >= self.interval:
            self._write(self._line(trainer, pl_module, self._batches))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A line per epoch, with the epoch's metrics."""
        self._write(self._line(trainer, pl_module, self._batches))

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print on its own line."""
        print(*args, **kwargs)


def default_progress_bar(interval: float = DEFAULT_INTERVAL) -> ProgressBar:
    """``TQDMProgressBar`` on a terminal, ``LineProgressBar`` otherwise (``DSM_PROGRESS``)."""
    style = progress_style()
    if style == "bar":
        return TQDMProgressBar()
    bar = LineProgressBar(interval)
    if style == "off":
        bar.disable()
    return bar
