"""A classifier that was never fitted is not measured: the guard of ``FinetuneModule``.

Testing (or validating, predicting) a classifier that was never fitted -- no fit in this
process and no checkpoint of a fit loaded -- measures a random linear layer. A module with
this mixin refuses with :class:`UnfittedClassifierError` (``require_fitted`` True, the
default, the same in Python and under ``dsm test``) or only warns with
:class:`UnfittedClassifierWarning`; whether it was fitted is saved in its checkpoints.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn

__all__ = ["FITTED_KEY", "FitGuard", "UnfittedClassifierError", "UnfittedClassifierWarning"]

#: checkpoint key recording whether the classifier had been trained when it was saved
FITTED_KEY = "classifier_fitted"


class UnfittedClassifierWarning(UserWarning):
    """``test`` / ``validate`` / ``predict`` ran on a classifier that was never trained."""


class UnfittedClassifierError(ValueError):
    """``test`` / ``validate`` / ``predict`` asked of a classifier that was never trained."""


class FitGuard(pl.LightningModule):
    """Mixin: ``classifier_fitted`` (set by a training step, saved in checkpoints) and the
    refusal (``require_fitted``) to evaluate a classifier that was never fitted.

    Attributes:
        classifier_fitted: True once a training step ran here or a fitted checkpoint loaded.
        require_fitted: raise ``UnfittedClassifierError`` instead of warning (set by the
            subclass's constructor).
    """

    classifier_fitted: bool = False
    require_fitted: bool = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Record that the classifier has been trained (saved in checkpoints)."""
        self.classifier_fitted = True

    def check_fitted(self, stage: str) -> None:
        """Warn (or raise) when ``stage`` runs outside a fit on a never-trained classifier.

        Raises:
            UnfittedClassifierError: the classifier was never fitted and ``require_fitted``
                is True (the same on every rank, so no rank waits for another).
        """
        if self.classifier_fitted or self.trainer.state.fn == TrainerFn.FITTING:
            return
        message = (
            f"{type(self).__name__}: {stage} on a classifier that was never fitted (no fit in "
            "this process and no checkpoint of a fit loaded), so its accuracy is chance "
            f"level; fit first, then `dsm {stage} --config <config> --ckpt_path <checkpoint "
            "of that fit>` (or trainer.fit before trainer.test)"
        )
        if self.require_fitted:
            raise UnfittedClassifierError(message)
        rank_zero_warn(message, category=UnfittedClassifierWarning)

    def on_validation_start(self) -> None:
        self.check_fitted("validate")

    def on_test_start(self) -> None:
        self.check_fitted("test")

    def on_predict_start(self) -> None:
        self.check_fitted("predict")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[FITTED_KEY] = self.classifier_fitted

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before the flag existed came from a fit
        self.classifier_fitted = bool(checkpoint.get(FITTED_KEY, True))
