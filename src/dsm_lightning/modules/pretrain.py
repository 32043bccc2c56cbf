"""``DSMLightningModule``: DSM / DSM-triplet / MoCo pretraining of any video backbone."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from dsm_lightning._checks import check_choice
from dsm_lightning.distributed import gather_no_grad
from dsm_lightning.losses import dsm_infonce_loss, dsm_triplet_loss
from dsm_lightning.models.backbones import BackboneWrapper
from dsm_lightning.models.encoder_io import DEFAULT_MEAN, DEFAULT_STD, save_encoder
from dsm_lightning.models.heads import ProjectionHead
from dsm_lightning.models.registry import create_backbone
from dsm_lightning.queue import KeyQueue

__all__ = ["DSMLightningModule"]

METHODS = ("dsm", "dsm_triplet", "moco")
_MOMENTUM_METHODS = ("dsm", "moco")




class DSMLightningModule(pl.LightningModule):
    """Self-supervised pretraining with DSM (Wang et al., AAAI 2021) or the MoCo baseline.

    Batches are dicts with float clips ``anchor``, ``positive`` and (DSM) ``negative`` of
    shape ``(B, C, T, H, W)``, plus ``label`` and ``index`` (see docs/architecture.md).

    - ``method="dsm"``: ``q = f(query view)``, ``k+ = g(key view)`` (``g`` = EMA copy of
      ``f``), ``n = f(negative)`` with gradient; InfoNCE over ``[q.k+ | q.queue | q.n] / tau``.
    - ``method="moco"``: the same without hard negative (``negative`` is ignored).
    - ``method="dsm_triplet"``: one encoder, triplet margin loss on ``(q, k+, n)`` plus the
      inter-video term; no momentum encoder, no queue.

    With ``query_view="positive"`` (the public code) the spatially disturbed clip is the
    query and the anchor (simple augmentation only) is the key; ``"anchor"`` swaps them.

    Subclasses extend the objective by overriding :meth:`encode_query`, :meth:`encode_key`,
    :meth:`forward_views` or :meth:`compute_loss` (e.g. add a loss term to the returned
    value) without copying :meth:`training_step`.

    Args:
        backbone: registry name (``dsm_lightning.list_backbones()``); ignored with ``encoder``.
        backbone_kwargs: the backbone builder's named arguments.
        encoder: a user ``nn.Module`` returning a feature map or vector (wrapped by
            ``BackboneWrapper``); replaces ``backbone``.
        weights: local weights file for the backbone (see ``create_backbone``).
        method: ``"dsm"``, ``"dsm_triplet"`` or ``"moco"``.
        proj_dim: projection (embedding) dimension.
        proj_hidden_dim: hidden width of an MLP head; None gives a linear head.
        temperature: InfoNCE temperature ``tau``.
        queue_size: number of past keys ``K`` (may exceed the dataset: only keys seen so far
            are used, see ``KeyQueue``).
        momentum: EMA momentum of the key encoder (0.999).
        momentum_schedule: ``"constant"`` or ``"cosine"`` (from ``momentum`` to 1.0 over the
            training steps).
        hard_negative_weight: weight ``w`` of the hard negatives: in the InfoNCE denominator
            (``log w`` added to their logits) for ``negative_encoder`` query / key /
            straight_through; the weight of the intra-video term for ``"online"``.
        triplet_margin: margin of the triplet loss.
        inter_video: add the inter-video triplet term.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate.
        weight_decay: weight decay.
        sgd_momentum: SGD momentum.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        lr_schedule: ``"cosine"`` (to 0 over the run) or ``"constant"`` after warm-up.
        sync_batchnorm: convert BatchNorm layers to SyncBatchNorm when running on > 1 device.
        query_view: ``"positive"`` or ``"anchor"``: which clip goes through the query encoder.
        negative_encoder: which encoder embeds the hard negatives. ``"query"`` (the public
            code): ``f`` with gradient, in a forward pass of its own; fair only while ``f``
            and its EMA ``g`` stay close (slow learning rates, momentum 0.999): otherwise
            ``q.n`` (f against f) beats ``q.k+`` (f against g) whatever the content.
            ``"key"``: ``g(n)`` without gradient, computed in the same pass as the keys (one
            encoder, one set of BatchNorm statistics for ``k+`` and ``n``): the gradient
            reaches ``f`` through ``q`` only, along ``k+ - n``, i.e. along what differs
            between the clip and its disturbed copy. ``"straight_through"``: the value of
            ``g(n)`` with the gradient of ``f(n)``. ``"online"``: the hard negatives are
            contrasted in a term of their own, ``-log softmax([q.f(a) | q.f(n_1..M)] / tau)[0]``
            with the anchor ``a`` and its disturbed copies embedded by ``f`` in one pass (one
            encoder, one set of BatchNorm statistics, gradient through all three), added to the
            MoCo term ``[q.g(a) | q.queue]`` with weight ``hard_negative_weight``: what the
            anchor and its negatives share cancels in the gradient, what differs (motion) gets
            all of it. The fastest motion learner at small batch and short budgets.
        exclude_same_video: ignore queue keys of the query's own video (by the batch's
            ``index``): with a queue larger than the dataset they are stale copies of the
            positive, i.e. false negatives.
        export_encoder: ``encoder.pt`` path written at the end of fit (relative paths are
            under ``trainer.log_dir``); None disables the export.
        num_classes: unused by pretraining; accepted so a CLI link from the data is harmless.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    def __init__(
        self,
        backbone: str | None = "r3d_18",
        backbone_kwargs: dict[str, Any] | None = None,
        encoder: nn.Module | None = None,
        weights: str | None = None,
        method: str = "dsm",
        proj_dim: int = 128,
        proj_hidden_dim: int | None = None,
        temperature: float = 0.07,
        queue_size: int = 16384,
        momentum: float = 0.999,
        momentum_schedule: str = "constant",
        hard_negative_weight: float = 1.0,
        triplet_margin: float = 0.5,
        inter_video: bool = True,
        optimizer: str = "sgd",
        lr: float = 0.003,
        weight_decay: float = 1e-4,
        sgd_momentum: float = 0.9,
        warmup_epochs: float = 0.0,
        lr_schedule: str = "cosine",
        sync_batchnorm: bool = False,
        query_view: str = "positive",
        negative_encoder: str = "query",
        exclude_same_video: bool = True,
        export_encoder: str | None = "encoder.pt",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("method", method, METHODS)
        check_choice("momentum_schedule", momentum_schedule, ("constant", "cosine"))
        check_choice("optimizer", optimizer, ("sgd", "adamw"))
        check_choice("lr_schedule", lr_schedule, ("cosine", "constant"))
        check_choice("query_view", query_view, ("positive", "anchor"))
        check_choice("negative_encoder", negative_encoder,
                ("query", "key", "straight_through", "online"))
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        for name, value in (("temperature", temperature), ("lr", lr),
                            ("hard_negative_weight", hard_negative_weight)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in (("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs),
                            ("triplet_margin", triplet_margin), ("sgd_momentum", sgd_momentum)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if encoder is None and backbone is None:
            raise ValueError("backbone=None needs an encoder module")
        self.save_hyperparameters(ignore=["encoder"])
        if encoder is not None:
            self.hparams["backbone"] = None  # the registry cannot rebuild a user module

        if encoder is None:
            self.encoder = create_backbone(backbone, weights=weights, **(backbone_kwargs or {}))
        elif isinstance(encoder, BackboneWrapper):
            self.encoder = encoder
        else:
            self.encoder = BackboneWrapper(encoder, getattr(encoder, "feature_dim", None))
        self.projector = ProjectionHead(
            self.encoder.feature_dim, hidden_dim=proj_hidden_dim, output_dim=proj_dim
        )
        self.momentum_encoder: nn.Module | None = None
        self.momentum_projector: nn.Module | None = None
        self.queue: KeyQueue | None = None
        if method in _MOMENTUM_METHODS:
            self.momentum_encoder = copy.deepcopy(self.encoder)
            self.momentum_projector = copy.deepcopy(self.projector)
            for param in self.momentum_parameters():
                param.requires_grad_(False)
            self.queue = KeyQueue(queue_size, proj_dim)

    # ------------------------------------------------------------------ encoders
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs updated by EMA; override to add more."""
        if self.momentum_encoder is None:
            return []
        return [(self.encoder, self.momentum_encoder), (self.projector, self.momentum_projector)]

    def momentum_parameters(self) -> list[nn.Parameter]:
        """Parameters of the momentum (EMA) modules."""
        return [p for _, ema in self.momentum_pairs() for p in ema.parameters()]

    def encode_query(self, video: Tensor) -> Tensor:
        """Query embedding ``f``: ``(B, C, T, H, W) -> (B, proj_dim)``, unit norm, with gradient."""
        return self.projector(self.encoder(video))

    @torch.no_grad()
    def encode_key(self, video: Tensor) -> Tensor:
        """Key embedding ``g`` (momentum encoder, no gradient): ``(B, proj_dim)``, unit norm."""
        return self.momentum_projector(self.momentum_encoder(video))

    def forward(self, video: Tensor) -> Tensor:
        """Pooled backbone features ``(B, C, T, H, W) -> (B, feature_dim)``."""
        return self.encoder(video)

    @torch.no_grad()
    def extract_features(self, video: Tensor) -> Tensor:
        """Pooled backbone features in eval mode, no gradient.

        Args:
            video: normalised clips ``(B, C, T, H, W)``.

        Returns:
            ``(B, feature_dim)``.
        """
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(video)
        finally:
            self.encoder.train(was_training)

    # ------------------------------------------------------------------ training
    def unpack_batch(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Select the query / key / negative clips of a batch (validates the batch keys).

        Raises:
            ValueError: a DSM method without ``negative`` in the batch.
        """
        for key in ("anchor", "positive"):
            if key not in batch:
                raise ValueError(
                    f"pretraining batches need 'anchor' and 'positive' clips, got keys "
                    f"{sorted(batch)}: use VideoDataModule(task='pretrain') with a TripletBuilder"
                )
        method = self.hparams.method
        if method != "moco" and batch.get("negative") is None:
            raise ValueError(
                f"method={method!r} needs a hard negative (batch['negative']) but the batch has "
                "none: give the TripletBuilder negative kinds (e.g. negative_kinds=('shift',)) "
                "or use method='moco'"
            )
        if self.hparams.query_view == "positive":
            views = {"query": batch["positive"], "key": batch["anchor"]}
        else:
            views = {"query": batch["anchor"], "key": batch["positive"]}
        if method != "moco":
            views["negative"] = batch["negative"]
        if batch.get("index") is not None:
            views["index"] = batch["index"]
        return views

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Embed the views: ``query`` by ``f``, ``key`` by ``g``, ``negative`` per ``negative_encoder``.

        ``negative`` may be ``(B, C, T, H, W)`` or ``(B, M, C, T, H, W)`` (``M`` hard
        negatives per sample, embedded as ``(B, M, proj_dim)``). Queries and hard negatives
        never share a BatchNorm batch: a shared batch would give them common statistics that
        make ``q.n`` larger than ``q.k+`` regardless of content. In ``dsm_triplet`` (one
        encoder, no momentum copy) every view goes through ``f`` with gradient, one pass.
        """
        negative = views.get("negative")
        flat_negative = None
        if negative is not None:
            flat_negative = negative.flatten(0, 1) if negative.ndim == 6 else negative
        if self.momentum_encoder is None:
            online = [views["query"], views["key"]]
            if flat_negative is not None:
                online.append(flat_negative)
            embedded = self.encode_query(torch.cat(online, dim=0)).split(
                [clips.shape[0] for clips in online], dim=0
            )
            out = {"query": embedded[0], "key": embedded[1]}
            if flat_negative is not None:
                out["negative"] = embedded[2]
        else:
            out = {"query": self.encode_query(views["query"])}
            mode, batch = self.hparams.negative_encoder, views["key"].shape[0]
            if flat_negative is None or mode in ("query", "online"):
                out["key"] = self.encode_key(views["key"])
            if flat_negative is not None and mode == "query":
                out["negative"] = self.encode_query(flat_negative)
            elif flat_negative is not None and mode == "online":
                # the anchor and its negatives share one pass of f
                online = self.encode_query(torch.cat([views["key"], flat_negative]))
                out["online_key"], out["negative"] = online[:batch], online[batch:]
            elif flat_negative is not None:  # "key" / "straight_through": one pass of g
                keys = self.encode_key(torch.cat([views["key"], flat_negative]))
                out["key"], out["negative"] = keys[:batch], keys[batch:]
                if mode == "straight_through":  # value of g(n), gradient of f(n)
                    online = self.encode_query(flat_negative)
                    out["negative"] = out["negative"] + online - online.detach()
        if negative is not None:
            out["negative"] = out["negative"].reshape(*negative.shape[: negative.ndim - 4], -1)
        return out

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective of ``method``.

        Returns:
            ``(loss, stats)``: scalar loss and detached statistics to log.
        """
        hp = self.hparams
        if hp.method == "dsm_triplet":
            return dsm_triplet_loss(
                outputs["query"], outputs["key"], outputs["negative"],
                margin=hp.triplet_margin, inter_video=hp.inter_video,
            )
        # A copy: the queue buffer is updated in place after the loss, before backward.
        queue = self.queue.valid_keys().clone()
        mask = None
        if hp.exclude_same_video and views.get("index") is not None:
            ids = self.queue.valid_ids()
            mask = (ids[None, :] == views["index"][:, None]) & (ids[None, :] >= 0)
        if "online_key" not in outputs:
            return dsm_infonce_loss(
                outputs["query"], outputs["key"], queue, outputs.get("negative"),
                temperature=hp.temperature, negative_weight=hp.hard_negative_weight,
                queue_mask=mask,
            )
        # negative_encoder="online": MoCo term + weighted intra-video hard-negative term.
        loss, stats = dsm_infonce_loss(
            outputs["query"], outputs["key"], queue, None, temperature=hp.temperature,
            queue_mask=mask,
        )
        intra, intra_stats = dsm_infonce_loss(
            outputs["query"], outputs["online_key"], None, outputs["negative"],
            temperature=hp.temperature,
        )
        stats.update(intra_loss=intra.detach(), neg_logit=intra_stats["neg_logit"],
                     hard_negative_accuracy=intra_stats["hard_negative_accuracy"])
        return loss + hp.hard_negative_weight * intra, stats

    def enqueue_keys(self, outputs: Mapping[str, Tensor], ids: Tensor | None = None) -> None:
        """Append this step's keys (and video ids), gathered from every rank, to the queue."""
        if self.queue is not None:
            self.queue.enqueue(
                gather_no_grad(outputs["key"]), None if ids is None else gather_no_grad(ids)
            )

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """Unpack, encode, loss, enqueue the keys, log."""
        views = self.unpack_batch(batch)
        outputs = self.forward_views(views)
        loss, stats = self.compute_loss(views, outputs)
        self.enqueue_keys(outputs, views.get("index"))
        self.log_step(loss, stats, batch_size=views["query"].shape[0])
        return loss

    _STAT_NAMES = {"hard_negative_accuracy": "hn_acc"}

    def log_step(self, loss: Tensor, stats: Mapping[str, Tensor], batch_size: int) -> None:
        """Log ``train/loss``, the loss statistics, lr and momentum (per step)."""
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch_size, sync_dist=True)
        for name, value in stats.items():
            short = self._STAT_NAMES.get(name, name)
            self.log(f"train/{short}", value, on_step=True, on_epoch=True,
                     prog_bar=short == "hn_acc", batch_size=batch_size, sync_dist=True)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"],
                     on_step=True, on_epoch=False)
        if self.momentum_encoder is not None:
            self.log("train/momentum", self.current_momentum(), on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ momentum
    def current_momentum(self) -> float:
        """EMA momentum at the current global step (constant or cosine to 1.0)."""
        base = float(self.hparams.momentum)
        if self.hparams.momentum_schedule == "constant" or self._trainer is None:
            return base
        total = float(self.trainer.estimated_stepping_batches)
        if not math.isfinite(total) or total <= 0:
            return base
        progress = min(self.global_step / total, 1.0)
        return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA update ``ema = m * ema + (1 - m) * online`` of every pair's parameters.

        Buffers (BatchNorm statistics) of the momentum modules are their own: the key
        encoder runs in train mode and tracks its own statistics, as in MoCo.
        """
        for online, ema in self.momentum_pairs():
            ema_params = list(ema.parameters())
            online_params = [p.detach() for p in online.parameters()]
            torch._foreach_mul_(ema_params, momentum)
            torch._foreach_add_(ema_params, online_params, alpha=1.0 - momentum)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Optimizer step, then the EMA update of the key encoder.

        The EMA runs here rather than in ``on_train_batch_end`` because Lightning calls the
        callbacks' ``on_train_batch_end`` (hence ``ModelCheckpoint``) *before* the module's:
        an update there would be missing from mid-epoch checkpoints and break exact resume.
        This hook runs once per real optimizer step (not per accumulated micro-batch), using
        the momentum of the step just taken.
        """
        momentum = self.current_momentum()
        super().optimizer_step(*args, **kwargs)
        if self.momentum_encoder is not None:
            self.momentum_update(momentum)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """SGD or AdamW over the query encoder and projector; warm-up + cosine per step."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.sgd_momentum, weight_decay=hp.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = float(self.trainer.estimated_stepping_batches)
        max_epochs = self.trainer.max_epochs
        if math.isfinite(total) and max_epochs and max_epochs > 0:
            warmup = int(round(hp.warmup_epochs * total / max_epochs))
        else:
            total, warmup = math.inf, 0
        cosine = hp.lr_schedule == "cosine" and math.isfinite(total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min((step - warmup) / max(total - warmup, 1.0), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    # ------------------------------------------------------------------ setup / export
    def setup(self, stage: str) -> None:
        """Convert BatchNorm to SyncBatchNorm when asked and running on several processes.

        Raises:
            ValueError: ``sync_batchnorm`` on CPU processes (torch's SyncBatchNorm is GPU-only).
        """
        if self.hparams.sync_batchnorm and self.trainer.world_size > 1:
            if self.trainer.root_device.type == "cpu":
                raise ValueError(
                    "sync_batchnorm=True needs GPU devices: torch's SyncBatchNorm does not run "
                    "on CPU processes; use sync_batchnorm=False or a backbone without "
                    "BatchNorm (e.g. backbone_kwargs={'norm': 'group'})"
                )
            self.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder)
            self.projector = nn.SyncBatchNorm.convert_sync_batchnorm(self.projector)
            if self.momentum_encoder is not None:
                self.momentum_encoder = nn.SyncBatchNorm.convert_sync_batchnorm(
                    self.momentum_encoder
                )

    def _data_metadata(self) -> dict[str, Any]:
        """Normalisation / clip size from ``trainer.datamodule`` (defaults when unknown)."""
        meta: dict[str, Any] = {"mean": DEFAULT_MEAN, "std": DEFAULT_STD,
                                "num_frames": None, "crop_size": None}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        augment = getattr(datamodule, "augment", None)
        for name in ("mean", "std", "crop_size"):
            value = getattr(augment, name, None)
            if value is not None:
                meta[name] = value
        num_frames = getattr(datamodule, "num_frames", None)
        if num_frames is None and datamodule is not None:
            num_frames = getattr(getattr(datamodule, "hparams", {}), "get", lambda _: None)(
                "num_frames"
            )
        meta["num_frames"] = num_frames
        meta["mean"] = [float(v) for v in meta["mean"]]
        meta["std"] = [float(v) for v in meta["std"]]
        return meta

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the input normalisation and clip size for ``load_encoder``."""
        meta = self._data_metadata()
        checkpoint["encoder_normalization"] = {"mean": meta["mean"], "std": meta["std"]}
        checkpoint["encoder_num_frames"] = meta["num_frames"]
        checkpoint["encoder_crop_size"] = meta["crop_size"]

    def export_path(self) -> Path | None:
        """Where ``encoder.pt`` goes (None when disabled)."""
        target = self.hparams.export_encoder
        if target is None:
            return None
        path = Path(target)
        if not path.is_absolute() and self._trainer is not None:
            root = self.trainer.log_dir or self.trainer.default_root_dir
            path = Path(root) / path
        return path

    def save_encoder(self, path: str | Path) -> Path:
        """Write the query backbone as ``encoder.pt`` (see docs/architecture.md)."""
        meta = self._data_metadata()
        return save_encoder(
            path, self.encoder, self.hparams.backbone, self.hparams.backbone_kwargs,
            mean=meta["mean"], std=meta["std"], num_frames=meta["num_frames"],
            crop_size=meta["crop_size"], method=self.hparams.method,
        )

    def on_fit_end(self) -> None:
        """Export ``encoder.pt`` on global rank 0."""
        path = self.export_path()
        if path is not None and self.trainer.is_global_zero:
            self.save_encoder(path)
