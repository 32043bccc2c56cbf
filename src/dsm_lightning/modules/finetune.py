"""Action recognition on top of a (pretrained) backbone: full fine-tuning or a linear probe.

The paper's downstream protocol (docs/method.md, "Action recognition fine-tuning"): load the
pretrained encoder, add a dropout + linear classifier, train; report clip-level top-1 during
validation and video-level top-1 at test time (softmax averaged over ``n_clips`` temporal
windows x ``n_crops`` spatial crops).

Testing (or validating, predicting) a classifier that was never fitted -- no fit in this
process and no checkpoint of a fit loaded -- measures a random linear layer: the module
refuses with :class:`UnfittedClassifierError` (``require_fitted=True``, the default, in
Python and under ``dsm test`` alike), or only warns with :class:`UnfittedClassifierWarning`
when built with ``require_fitted=False``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from dsm_lightning._checks import (
    check_at_least,
    check_choice,
    check_fraction,
    check_int,
    check_positive,
)
from dsm_lightning.evaluation.plots import log_png, plot_confusion_matrix
from dsm_lightning.evaluation.video_level import (
    per_class_from_confusion,
    video_level_predictions,
)
from dsm_lightning.models.encoder_io import downstream_encoder
from dsm_lightning.modules.fit_guard import (
    FitGuard,
    UnfittedClassifierError,
    UnfittedClassifierWarning,
)
from dsm_lightning.modules.optim import OPTIMIZERS, make_optimizer, scheduled

__all__ = ["FinetuneModule", "UnfittedClassifierError", "UnfittedClassifierWarning"]

MODES = ("finetune", "linear")
LR_SCHEDULES = ("cosine", "multistep", "constant")
DEFAULT_BACKBONE = "r3d_18"
def _stages(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's stages: parameter-holding children of its innermost single container."""
    module = getattr(backbone, "model", backbone)
    while True:
        children = [c for c in module.children() if any(True for _ in c.parameters())]
        if len(children) != 1:
            return children
        module = children[0]


def frozen_parts(encoder: nn.Module, mode: str, freeze_stages: int) -> list[nn.Module]:
    """Freeze (no gradient, eval mode) what ``mode`` / ``freeze_stages`` keep fixed.

    Returns:
        The frozen modules (kept in eval mode by ``FinetuneModule.train``).

    Raises:
        ValueError: ``freeze_stages`` larger than the backbone's number of stages.
    """
    frozen: list[nn.Module] = []
    if mode == "linear":
        frozen = [encoder]
    elif freeze_stages:
        stages = _stages(encoder)
        if freeze_stages > len(stages):
            raise ValueError(f"freeze_stages={freeze_stages} but the backbone has "
                             f"{len(stages)} stages")
        frozen = stages[:freeze_stages]
    for module in frozen:
        module.requires_grad_(False)
        module.eval()
    return frozen


class FinetuneModule(FitGuard, pl.LightningModule):
    """Classifier = backbone + dropout + linear layer, trained on labelled clips.

    Batches follow the batch contract: ``video`` float (B, C, T, S, S) for training and
    validation (a (B, V, C, T, S, S) batch is treated as B * V clips there), and
    (B, V, C, T, S, S) with ``V = n_clips * n_crops`` views for the video-level test;
    ``label`` int64 (B,) (``-1`` is ignored).

    Test results: logged ``test/acc_top1``, ``test/acc_top5``, ``test/clip_acc_top1`` and
    per-class accuracies; ``self.test_results`` (confusion matrix, per-class accuracy);
    ``confusion_matrix.png`` in the logger's run directory (``trainer.log_dir``), not
    written without a logger. ``self.classifier_fitted`` (saved in checkpoints) tells
    whether the classifier was trained; ``validate`` / ``test`` / ``predict`` outside a fit
    raise ``UnfittedClassifierError`` (a ``ValueError``, on every rank) when it was not, or
    warn with ``UnfittedClassifierWarning`` when ``require_fitted`` is False.

    Args:
        num_classes: number of action classes K.
        pretrained: a ``DSMLightningModule`` checkpoint (.ckpt) or an ``encoder.pt``;
            ``None`` trains from random init (the baseline). Loaded with
            ``weights_only=True``, exact ``encoder.`` prefix, ``strict=True``; a mismatch
            raises ``EncoderLoadError`` listing missing/unexpected keys and both backbones.
        backbone: registry name, or a user's ``nn.Module`` (wrapped in ``BackboneWrapper``
            as in pretraining, so the ``encoder.pt`` of a pretraining run with that module
            loads into it; reloading a checkpoint of this module then needs
            ``load_from_checkpoint(path, backbone=<the module>)``). ``None`` takes the
            file's backbone (or ``"r3d_18"`` without ``pretrained``). A name that differs
            from the file's is loaded strictly and fails with ``EncoderLoadError`` when the
            weights do not fit.
        backbone_kwargs: builder arguments; ``None`` takes the file's.
        mode: ``"finetune"`` trains everything (except ``freeze_stages``); ``"linear"``
            freezes the encoder (BatchNorm kept in eval mode) and trains the classifier only.
        freeze_stages: in ``"finetune"`` mode, freeze (and keep in eval mode) the first N
            stages of the backbone (parameter-holding children of its network, e.g. stem,
            layer1, ... for torchvision ResNets).
        dropout: dropout probability before the classifier.
        lr: learning rate of the classifier (and of the backbone unless ``backbone_lr``).
        backbone_lr: learning rate of the backbone; ``None``: ``lr``.
        optimizer: ``"sgd"`` (momentum) or ``"adamw"``.
        weight_decay: weight decay of every parameter group.
        momentum: SGD momentum.
        lr_schedule: ``"cosine"`` (per step, to 0 at the end of training), ``"multistep"``
            (x ``lr_gamma`` at each epoch in ``lr_milestones``) or ``"constant"``.
        lr_milestones: epochs of the ``"multistep"`` schedule.
        lr_gamma: factor of the ``"multistep"`` schedule.
        n_clips: temporal windows per test video (link it to the datamodule's).
        n_crops: spatial crops per test clip (link it to the datamodule's).
        class_names: K class names for per-class metrics and the confusion matrix.
        label_smoothing: cross-entropy label smoothing.
        require_fitted: refuse (``UnfittedClassifierError``) to validate, test or predict
            with a classifier that was never fitted; False only warns (e.g. to measure a
            random classifier on purpose).

    Raises:
        ValueError: on an invalid argument value.
        EncoderLoadError: when ``pretrained`` does not match the backbone.
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: str | None = None,
        backbone: str | nn.Module | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        mode: str = "finetune",
        freeze_stages: int = 0,
        dropout: float = 0.5,
        lr: float = 0.001,
        backbone_lr: float | None = None,
        optimizer: str = "sgd",
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        lr_schedule: str = "cosine",
        lr_milestones: tuple[int, ...] = (20, 40),
        lr_gamma: float = 0.1,
        n_clips: int = 10,
        n_crops: int = 3,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        require_fitted: bool = True,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_choice("mode", mode, MODES)
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        check_fraction("dropout", dropout, 0.0, 1.0 - 1e-9)
        check_positive("lr", lr)
        if backbone_lr is not None:
            check_at_least("backbone_lr", backbone_lr)
        check_int("freeze_stages", freeze_stages, 0)
        check_int("n_clips", n_clips)
        check_int("n_crops", n_crops)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names for num_classes={num_classes}"
            )
        check_fraction("label_smoothing", label_smoothing, 0.0, 1.0 - 1e-9)
        user_module = isinstance(backbone, nn.Module)
        self.save_hyperparameters(ignore=["backbone"] if user_module else None)
        self.encoder, self.encoder_meta = downstream_encoder(pretrained, backbone,
                                                             backbone_kwargs, DEFAULT_BACKBONE)
        # self-describing hyper-parameters: a checkpoint of this module holds every weight,
        # so reloading it needs the architecture, not the pretrained file
        self.hparams["backbone"] = self.encoder_meta["backbone"]
        self.hparams["backbone_kwargs"] = self.encoder_meta["backbone_kwargs"]
        self.hparams["pretrained"] = None
        self.pretrained_source = str(pretrained) if pretrained is not None else None
        feature_dim = int(self.encoder.feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

        self._frozen = frozen_parts(self.encoder, mode, freeze_stages)
        self.class_names = list(class_names) if class_names else None
        top5 = min(5, num_classes)
        metric_kwargs = {"num_classes": num_classes, "ignore_index": -1}
        self.val_top1 = MulticlassAccuracy(top_k=1, average="micro", **metric_kwargs)
        self.val_top5 = MulticlassAccuracy(top_k=top5, average="micro", **metric_kwargs)
        self.test_clip_top1 = MulticlassAccuracy(top_k=1, average="micro", **metric_kwargs)
        self.test_top1 = MulticlassAccuracy(top_k=1, average="micro", **metric_kwargs)
        self.test_top5 = MulticlassAccuracy(top_k=top5, average="micro", **metric_kwargs)
        self.test_confusion = MulticlassConfusionMatrix(**metric_kwargs)
        self.test_results: dict[str, Any] = {}
        self._warned_views = False
        self.require_fitted = require_fitted

    # ----------------------------------------------------------------------------- model

    def train(self, mode: bool = True) -> FinetuneModule:
        """Set train/eval mode, keeping frozen parts (and their BatchNorm) in eval mode."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def features(self, video: Tensor) -> Tensor:
        """Pooled backbone features.

        Args:
            video: (B, C, T, H, W) normalised clips.

        Returns:
            (B, D) features. In ``"linear"`` mode the encoder's parameters do not require
            gradients, so no graph is built through it unless ``video`` requires one
            (as for class-activation maps).
        """
        return self.encoder(video)

    def forward(self, video: Tensor) -> Tensor:
        """Class logits of clips.

        Args:
            video: (B, C, T, H, W) normalised clips.

        Returns:
            (B, K) logits.
        """
        return self.classifier(self.dropout(self.features(video)))

    def _clip_logits(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits of every clip of a batch and the matching labels (views flattened)."""
        video, labels = batch["video"], batch["label"]
        if video.dim() == 6:
            views = video.shape[1]
            video = video.flatten(0, 1)
            labels = labels.repeat_interleave(views)
        return self(video), labels

    def _view_logits(self, video: Tensor) -> Tensor:
        """(B, V, K) logits of every view; a (B, C, T, H, W) input is one view."""
        if video.dim() == 5:
            return self(video).unsqueeze(1)
        batch, views = video.shape[:2]
        if views != self.hparams.n_clips * self.hparams.n_crops and not self._warned_views:
            rank_zero_warn(
                f"test videos have {views} views but n_clips * n_crops = "
                f"{self.hparams.n_clips} x {self.hparams.n_crops}; averaging over {views}"
            )
            self._warned_views = True
        return self(video.flatten(0, 1)).view(batch, views, -1)

    def video_probabilities(self, video: Tensor) -> Tensor:
        """Video-level class probabilities: softmax averaged over the views of each video.

        Args:
            video: (B, V, C, T, H, W) views (``V = n_clips * n_crops``) or (B, C, T, H, W).

        Returns:
            (B, K) probabilities.
        """
        return video_level_predictions(self._view_logits(video))

    # ------------------------------------------------------------------------------ steps

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits, labels = self._clip_logits(batch)
        loss = F.cross_entropy(
            logits, labels, ignore_index=-1, label_smoothing=self.hparams.label_smoothing
        )
        valid = labels >= 0
        accuracy = (logits.argmax(1)[valid] == labels[valid]).float().mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc_top1", accuracy, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits, labels = self._clip_logits(batch)
        loss = F.cross_entropy(logits, labels, ignore_index=-1)
        self.val_top1(logits, labels)
        self.val_top5(logits, labels)
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/acc_top1", self.val_top1, prog_bar=True)
        self.log("val/acc_top5", self.val_top5)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        labels = batch["label"]
        logits = self._view_logits(batch["video"])  # (B, V, K)
        probs = video_level_predictions(logits)
        self.test_top1(probs, labels)
        self.test_top5(probs, labels)
        self.test_confusion(probs, labels)
        # clip-level accuracy over every single view, for comparison
        self.test_clip_top1(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))
        self.log("test/acc_top1", self.test_top1)
        self.log("test/acc_top5", self.test_top5)
        self.log("test/clip_acc_top1", self.test_clip_top1)

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        names = self.class_names or [str(k) for k in range(self.hparams.num_classes)]
        per_class = per_class_from_confusion(confusion)
        self.test_results = {"confusion_matrix": confusion,
                             "per_class_accuracy": dict(zip(names, per_class.tolist()))}
        for name, value in zip(names, per_class.tolist()):
            if not math.isnan(value):
                self.log(f"test/acc_class/{name}", value, rank_zero_only=True)
        if not self.trainer.is_global_zero:
            return
        if not self.loggers:
            rank_zero_info("confusion matrix not written (no logger, so no run directory): it "
                           "is in test_results['confusion_matrix']; dsm_lightning.evaluation."
                           "plot_confusion_matrix draws it")
            return
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        path = plot_confusion_matrix(confusion, Path(log_dir) / "confusion_matrix.png",
                                     class_names=names)
        self.test_results["confusion_matrix_png"] = str(path)
        for logger in self.loggers:
            log_png(logger, "test/confusion_matrix", path, step=self.global_step)
        rank_zero_info(f"confusion matrix written to {path}")

    def predict_step(self, batch: dict[str, Tensor] | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities: (B, K), averaged over views for (B, V, C, T, H, W) input."""
        video = batch["video"] if isinstance(batch, dict) else batch
        return self.video_probabilities(video)

    # ------------------------------------------------------------------------ checkpoint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["pretrained_source"] = self.pretrained_source

    # ------------------------------------------------------------------------- optimizer

    def configure_optimizers(self) -> Any:
        """The classifier's and the (unfrozen) backbone's parameter groups, each with its
        learning rate; the schedule per step (``modules.optim.scheduled``)."""
        hp = self.hparams
        groups = [{"params": [p for p in self.classifier.parameters() if p.requires_grad],
                   "lr": hp.lr, "name": "classifier"}]
        backbone = [p for p in self.encoder.parameters() if p.requires_grad]
        if backbone:
            lr = hp.backbone_lr if hp.backbone_lr is not None else hp.lr
            groups.append({"params": backbone, "lr": lr, "name": "backbone"})
        optimizer = make_optimizer(groups, hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)
        return scheduled(optimizer, self.trainer, hp.lr_schedule, 0.0, hp.lr_milestones,
                         hp.lr_gamma)
