"""``EncoderExport``: write ``encoder.pt`` at the end of fit and say where fit's outputs went."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

__all__ = ["EncoderExport", "fit_outputs"]


def fit_outputs(trainer: pl.Trainer) -> dict[str, str]:
    """Where a fit wrote its files: log dir, checkpoint dir, best and last checkpoints."""
    out: dict[str, str] = {}
    if trainer.log_dir:
        out["log dir"] = str(Path(trainer.log_dir).resolve())
    for callback in trainer.checkpoint_callbacks:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath:
            out["checkpoints"] = str(Path(dirpath).resolve())
        for label, attr in (("last checkpoint", "last_model_path"),
                            ("best checkpoint", "best_model_path")):
            value = getattr(callback, attr, "")
            if value:
                out[label] = str(Path(value).resolve())
    return out


class EncoderExport(pl.Callback):
    """Write the pretrained backbone as ``encoder.pt`` when fit ends, then report the outputs.

    The module must have ``save_encoder(path)`` (every pretraining module does); for other
    modules only the report is printed. ``encoder.pt`` loads with
    ``dsm_lightning.load_encoder`` (or ``torch.load(..., weights_only=True)``).

    Args:
        path: where to write; None = ``<log dir>/encoder.pt`` (the trainer's ``log_dir``,
            else ``default_root_dir``); a relative path is relative to the working directory
            at construction, i.e. where the command runs.
        enabled: False turns the export off (the report is still printed).
        report: print where the encoder, checkpoints and logs went (global rank 0).
    """

    def __init__(self, path: str | None = None, enabled: bool = True, report: bool = True) -> None:
        self.path = None if path is None else Path(os.path.abspath(path))
        self.enabled, self.report = enabled, report
        self.written: Path | None = None

    def target(self, trainer: pl.Trainer) -> Path:
        """The file this callback writes for ``trainer``."""
        if self.path is not None:
            return self.path
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root).resolve() / "encoder.pt"

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Export on global rank 0, then print the report.

        Every rank asks for the paths (``trainer.log_dir`` is a collective under DDP: asked
        on rank 0 alone, it waits for the other ranks forever).
        """
        save = getattr(pl_module, "save_encoder", None)
        target = self.target(trainer) if self.enabled and callable(save) else None
        outputs = fit_outputs(trainer) if self.report else {}
        if target is not None and trainer.is_global_zero:
            self.written = Path(save(target))
        if self.report:
            self._print_report(outputs)

    @rank_zero_only
    def _print_report(self, outputs: dict[str, str]) -> None:
        lines = {"encoder": str(self.written)} if self.written is not None else {}
        lines.update(outputs)
        if lines:
            width = max(len(k) for k in lines)
            print("[dsm] fit outputs:\n" + "\n".join(
                f"  {name:<{width}}  {value}" for name, value in lines.items()), flush=True)

    def state_dict(self) -> dict[str, Any]:
        """Nothing to resume."""
        return {}
