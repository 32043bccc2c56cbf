"""``ContrastiveModule``: the small base of every pretraining method.

It owns what all methods share: the encoder ``f`` (any registered backbone or a user
module) and its projection head, the optimiser and learning-rate schedule, the EMA update of
whatever momentum copies a method declares, logging, feature extraction and the encoder
metadata written to checkpoints. A method is a thin subclass that fills three extension
points, called in this order by :meth:`training_step`::

    views = self.unpack_batch(batch)                # which clip is the query, the key, ...
    outputs = self.forward_views(views)             # embeddings (and anything else)
    loss, stats = self.compute_loss(views, outputs) # a function of losses.py
    self.update_state(views, outputs)               # e.g. enqueue keys (default: nothing)

Batches are dicts of normalised float clips ``anchor``, ``positive`` and optionally
``negative`` ((B, C, T, H, W); ``negative`` may be (B, M, C, T, H, W)), plus ``label`` and
``index`` (see docs/architecture.md), as built by the DataModule's view builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from dsm_lightning._checks import check_choice, check_positive
from dsm_lightning.data.datamodule import clip_spec_of
from dsm_lightning.models.encoder_io import build_backbone, save_encoder
from dsm_lightning.models.heads import ProjectionHead
from dsm_lightning.modules.optim import OPTIMIZERS, make_optimizer, scheduled
from dsm_lightning.schedules import LR_SCHEDULES, update_momentum

__all__ = ["ContrastiveModule"]

QUERY_VIEWS = ("positive", "anchor")


class ContrastiveModule(pl.LightningModule):
    """Base pretraining module: encoder, projection head, optimiser, EMA, logging.

    Subclasses implement :meth:`forward_views` and :meth:`compute_loss` (and may override
    :meth:`unpack_batch`, :meth:`update_state`, :meth:`momentum_pairs`,
    :meth:`current_momentum`); they take their own arguments and pass the rest on with
    ``**kwargs`` (LightningCLI and ``--help`` follow them).

    Args:
        backbone: registry name, or an ``nn.Module`` returning a feature map or vector (a
            user network; the checkpoint then records ``backbone=None`` and loading it back
            needs the module: ``load_encoder(path, backbone=MyNet())``).
        backbone_kwargs: the registry builder's named arguments.
        weights: local weights file for a registry backbone, loaded into it with
            ``models.encoder_io.load_backbone_weights`` (``create_backbone`` itself
            builds random-init networks only).
        proj_dim: embedding (projection) dimension.
        proj_hidden_dim: hidden width of an MLP head; None gives a linear head (the paper's).
        query_view: which clip goes through the query encoder: ``"positive"`` (the public DSM
            code: the disturbed clip is the query, the anchor the key) or ``"anchor"``.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate.
        weight_decay: weight decay.
        sgd_momentum: SGD momentum.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        lr_schedule: ``"cosine"`` (to 0 over the run), ``"constant"`` or ``"multistep"``
            (times ``lr_gamma`` at each epoch in ``lr_milestones``) after warm-up.
        lr_milestones: epochs of the ``"multistep"`` schedule.
        lr_gamma: factor of the ``"multistep"`` schedule.
        sync_batchnorm: convert BatchNorm layers to SyncBatchNorm on > 1 GPU process.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    #: name written to ``encoder.pt`` and checkpoints (``meta["method"]``).
    method_name: ClassVar[str] = "contrastive"
    #: whether batches must carry ``negative`` clips.
    needs_negative: ClassVar[bool] = False
    #: short names of statistics in the logs.
    stat_names: ClassVar[dict[str, str]] = {"hard_negative_accuracy": "hn_acc"}

    def __init__(
        self,
        backbone: str | nn.Module | None = "r3d_18",
        backbone_kwargs: dict[str, Any] | None = None,
        weights: str | None = None,
        proj_dim: int = 128,
        proj_hidden_dim: int | None = None,
        query_view: str = "positive",
        optimizer: str = "sgd",
        lr: float = 0.003,
        weight_decay: float = 1e-4,
        sgd_momentum: float = 0.9,
        warmup_epochs: float = 0.0,
        lr_schedule: str = "cosine",
        lr_milestones: tuple[int, ...] = (),
        lr_gamma: float = 0.1,
        sync_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        check_choice("query_view", query_view, QUERY_VIEWS)
        check_positive("lr", lr)
        for name, value in (("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs),
                            ("sgd_momentum", sgd_momentum), ("lr_gamma", lr_gamma)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if any(m < 0 for m in lr_milestones):
            raise ValueError(f"lr_milestones must be epochs >= 0, got {lr_milestones}")
        user_module = isinstance(backbone, nn.Module)
        self.encoder = build_backbone(backbone, backbone_kwargs, weights)
        self.save_hyperparameters(ignore=["backbone"] if user_module else None)
        if user_module:
            self.hparams["backbone"] = None  # the registry cannot rebuild a user module
        self.projector = ProjectionHead(
            self.encoder.feature_dim, hidden_dim=proj_hidden_dim, output_dim=proj_dim
        )

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper_settings(cls) -> dict[str, Any]:
        """The public DSM code's values of this class's arguments (docs/method-fidelity.md).

        Linear 128-d head, the warped clip as the query, SGD lr 0.003 (momentum 0.9, weight
        decay 1e-4, no warm-up) with the step schedule x0.1 at epochs 120/160/200 (a
        constant rate in runs of <= 120 epochs, as the public short scripts). Subclasses add
        their own.
        """
        return {"proj_dim": 128, "proj_hidden_dim": None, "query_view": "positive",
                "optimizer": "sgd", "lr": 0.003, "sgd_momentum": 0.9, "weight_decay": 1e-4,
                "warmup_epochs": 0.0, "lr_schedule": "multistep",
                "lr_milestones": (120, 160, 200), "lr_gamma": 0.1}

    @classmethod
    def paper(cls, **overrides: Any) -> ContrastiveModule:
        """This method with the public DSM code's settings (:meth:`paper_settings`).

        Args:
            **overrides: any constructor argument (e.g. ``backbone``, or a setting to change).

        Returns:
            An instance of ``cls``.

        Raises:
            ValueError: an invalid argument.
        """
        return cls(**{**cls.paper_settings(), **overrides})

    # ------------------------------------------------------------------ extension points
    def unpack_batch(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Name the views: ``query`` and ``key`` (by ``query_view``), ``negative``, ``index``.

        Raises:
            ValueError: a batch without ``anchor``/``positive``, or without ``negative``
                for a method that needs one (the message says how to get it).
        """
        for key in ("anchor", "positive"):
            if key not in batch:
                raise ValueError(
                    f"pretraining batches need 'anchor' and 'positive' clips, got keys "
                    f"{sorted(batch)}: use VideoDataModule(task='pretrain') with a view "
                    "builder such as TripletBuilder"
                )
        if self.needs_negative and batch.get("negative") is None:
            raise ValueError(
                f"{type(self).__name__} needs a hard negative (batch['negative']) but the batch "
                "has none: give the TripletBuilder negative kinds (e.g. "
                "negative_kinds=('shift',)) or use MoCoModule"
            )
        query, key = ("positive", "anchor") if self.hparams.query_view == "positive" else (
            "anchor", "positive")
        views = {"query": batch[query], "key": batch[key]}
        for name in ("negative", "index"):
            if batch.get(name) is not None:
                views[name] = batch[name]
        return views

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Embed the views; returns at least ``query`` and ``key`` ``(B, proj_dim)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_views")

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The method's objective: ``(scalar loss, detached statistics to log)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss")

    def update_state(self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> None:
        """State changes after the loss (e.g. enqueue keys); nothing by default."""

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum copy) pairs updated by EMA after each optimizer step; none here."""
        return []

    def current_momentum(self) -> float:
        """EMA momentum for the coming step (1.0 = no update; methods with EMA override)."""
        return 1.0

    # ------------------------------------------------------------------ encoders
    def encode_query(self, video: Tensor) -> Tensor:
        """``f``: ``(B, C, T, H, W) -> (B, proj_dim)``, unit norm, with gradient."""
        return self.projector(self.encoder(video))

    def forward(self, video: Tensor) -> Tensor:
        """Pooled backbone features ``(B, C, T, H, W) -> (B, feature_dim)``."""
        return self.encoder(video)

    @torch.no_grad()
    def extract_features(self, video: Tensor) -> Tensor:
        """Pooled backbone features in eval mode, no gradient: ``(B, feature_dim)``."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(video)
        finally:
            self.encoder.train(was_training)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Unpack, encode, loss, state update, log."""
        views = self.unpack_batch(batch)
        outputs = self.forward_views(views)
        loss, stats = self.compute_loss(views, outputs)
        self.update_state(views, outputs)
        self.log_step(loss, stats, batch_size=views["query"].shape[0])
        return loss

    def log_step(self, loss: Tensor, stats: Mapping[str, Tensor], batch_size: int) -> None:
        """Log ``train/loss``, the loss statistics (``hn_acc`` on the bar), lr and momentum."""
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch_size, sync_dist=True)
        for name, value in stats.items():
            short = self.stat_names.get(name, name)
            self.log(f"train/{short}", value, on_step=True, on_epoch=True,
                     prog_bar=short == "hn_acc", batch_size=batch_size, sync_dist=True)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"],
                     on_step=True, on_epoch=False)
        if self.momentum_pairs():
            self.log("train/momentum", self.current_momentum(), on_step=True, on_epoch=False)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Optimizer step, then the EMA update of every :meth:`momentum_pairs` pair.

        The EMA runs here rather than in ``on_train_batch_end`` because Lightning calls the
        callbacks' ``on_train_batch_end`` (hence ``ModelCheckpoint``) before the module's: an
        update there would be missing from mid-epoch checkpoints and break exact resume. It
        runs once per real optimizer step, with the momentum of the step just taken.
        """
        pairs = self.momentum_pairs()
        momentum = self.current_momentum()
        super().optimizer_step(*args, **kwargs)
        for online, ema in pairs:
            update_momentum(online, ema, momentum)

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD or AdamW over the trainable parameters; warm-up + schedule per step."""
        hp = self.hparams
        optimizer = make_optimizer([p for p in self.parameters() if p.requires_grad],
                                   hp.optimizer, hp.lr, hp.weight_decay, hp.sgd_momentum)
        return scheduled(optimizer, self.trainer, hp.lr_schedule, hp.warmup_epochs,
                         hp.lr_milestones, hp.lr_gamma)

    # ------------------------------------------------------------------ setup / export
    def setup(self, stage: str) -> None:
        """Convert BatchNorm to SyncBatchNorm when asked and running on several processes.

        Raises:
            ValueError: ``sync_batchnorm`` on CPU processes (torch's SyncBatchNorm is GPU-only).
        """
        if not (self.hparams.sync_batchnorm and self.trainer.world_size > 1):
            return
        if self.trainer.root_device.type == "cpu":
            raise ValueError(
                "sync_batchnorm=True needs GPU devices: torch's SyncBatchNorm does not run on "
                "CPU processes; use sync_batchnorm=False or a backbone without BatchNorm "
                "(e.g. backbone_kwargs={'norm': 'group'})"
            )
        for name, child in list(self.named_children()):
            setattr(self, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))

    def encoder_metadata(self) -> dict[str, Any]:
        """Input normalisation and clip size of the data it trains on (defaults when unknown)."""
        spec = clip_spec_of(self._trainer.datamodule if self._trainer else None)
        return {"mean": [float(v) for v in spec.mean], "std": [float(v) for v in spec.std],
                "num_frames": spec.num_frames, "crop_size": spec.crop_size}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the input normalisation, clip size and method for ``load_encoder``."""
        meta = self.encoder_metadata()
        checkpoint["encoder_normalization"] = {"mean": meta["mean"], "std": meta["std"]}
        checkpoint["encoder_num_frames"] = meta["num_frames"]
        checkpoint["encoder_crop_size"] = meta["crop_size"]
        checkpoint["encoder_method"] = self.method_name

    def save_encoder(self, path: str | Path) -> Path:
        """Write the query backbone as ``encoder.pt`` (see docs/architecture.md)."""
        meta = self.encoder_metadata()
        return save_encoder(
            path, self.encoder, self.hparams.backbone, self.hparams.backbone_kwargs,
            mean=meta["mean"], std=meta["std"], num_frames=meta["num_frames"],
            crop_size=meta["crop_size"], method=self.method_name,
        )
