"""Online weighted-kNN monitor of the pretrained features (``val/knn_top1``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_positive
from dsm_lightning.distributed import gather_variable_no_grad, rank, world_size

__all__ = ["KNNMonitor", "weighted_knn_predict"]

log = logging.getLogger(__name__)


@torch.no_grad()
def weighted_knn_predict(
    query: Tensor,
    memory: Tensor,
    memory_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> Tensor:
    """Weighted kNN vote (Wu et al. 2018): class score = sum of ``exp(cos / T)`` of its
    neighbours among the ``k`` most similar memory features.

    Args:
        query: ``(N, D)`` features (normalised inside).
        memory: ``(M, D)`` labelled features (normalised inside).
        memory_labels: ``(M,)`` int64 in ``[0, num_classes)``.
        num_classes: number of classes ``C``.
        k: neighbours (clipped to ``M``).
        temperature: ``T`` of the vote weights.
        chunk_size: queries per similarity chunk (bounds memory to ``chunk_size x M``).

    Returns:
        ``(N,)`` predicted labels.
    """
    query, memory = F.normalize(query.float(), dim=1), F.normalize(memory.float(), dim=1)
    k = min(k, memory.shape[0])
    predictions = []
    for chunk in query.split(chunk_size):
        similarity, index = (chunk @ memory.t()).topk(k, dim=1)
        weights = (similarity / temperature).exp()
        scores = torch.zeros(chunk.shape[0], num_classes, device=chunk.device)
        scores.scatter_add_(1, memory_labels[index], weights)
        predictions.append(scores.argmax(dim=1))
    return torch.cat(predictions) if predictions else query.new_zeros(0, dtype=torch.long)


class KNNMonitor(pl.Callback):
    """Log the weighted-kNN top-1 accuracy of the backbone features every few epochs.

    At the end of a training epoch, features of labelled ``train_split`` clips (the memory)
    and ``val_split`` clips come from ``trainer.datamodule.clip_dataloader(split)``; each
    rank embeds every ``world_size``-th batch and the features are gathered, so every rank
    computes the same accuracy. uint8 clips are turned into normalised float clips with
    ``trainer.datamodule.views(batch, "eval")`` (the datamodule's
    ``on_after_batch_transfer`` would build triplets, since the trainer is training).
    Features come from ``pl_module.extract_features`` (eval mode) when it exists.

    When the datamodule has no ``clip_dataloader`` or the splits are missing / empty /
    unlabelled, the monitor logs an info message once and does nothing.

    Args:
        k: neighbours.
        temperature: vote temperature.
        every_n_epochs: run every this many epochs.
        max_train_batches: cap on memory batches (None = the whole train split).
        train_split: memory split name.
        val_split: evaluated split name.
        batch_size: loader batch size (None = the datamodule's evaluation batch size).

    Raises:
        ValueError: ``k``, ``every_n_epochs`` or ``temperature`` out of range.
    """

    def __init__(
        self,
        k: int = 20,
        temperature: float = 0.07,
        every_n_epochs: int = 1,
        max_train_batches: int | None = None,
        train_split: str = "train",
        val_split: str = "val",
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        check_positive("temperature", temperature)
        self.k, self.temperature, self.every_n_epochs = k, temperature, every_n_epochs
        self.max_train_batches = max_train_batches
        self.train_split, self.val_split, self.batch_size = train_split, val_split, batch_size
        self._skipped = False

    def _skip(self, reason: str) -> None:
        if not self._skipped:
            log.info("KNNMonitor skipped: %s", reason)
        self._skipped = True

    def _loader(self, datamodule: Any, split: str) -> Iterable | None:
        try:
            loader = datamodule.clip_dataloader(split, batch_size=self.batch_size)
        except (ValueError, KeyError, FileNotFoundError, IndexError) as error:
            self._skip(f"no {split!r} split ({error})")
            return None
        try:
            empty = len(loader) == 0
        except TypeError:
            empty = False
        if empty:
            self._skip(f"the {split!r} split is empty")
            return None
        return loader

    @torch.no_grad()
    def _embed(
        self, pl_module: pl.LightningModule, datamodule: Any, loader: Iterable,
        max_batches: int | None,
    ) -> tuple[Tensor, Tensor]:
        extract = getattr(pl_module, "extract_features", None)
        features, labels = [], []
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if i % world_size() != rank():
                continue
            video = batch["video"].to(pl_module.device)
            if not video.is_floating_point():
                video = datamodule.views({"video": video}, "eval")["video"]
            features.append(extract(video) if extract is not None else pl_module(video))
            labels.append(batch["label"].to(pl_module.device))
        dim = getattr(getattr(pl_module, "encoder", None), "feature_dim", 1)
        feats = torch.cat(features) if features else torch.zeros(0, dim, device=pl_module.device)
        labs = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long,
                                                            device=pl_module.device)
        return gather_variable_no_grad(feats.float()), gather_variable_no_grad(labs)

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        """kNN top-1 on the val split (None when skipped)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "clip_dataloader"):
            self._skip("the datamodule has no clip_dataloader(split)")
            return None
        train_loader = self._loader(datamodule, self.train_split)
        val_loader = self._loader(datamodule, self.val_split) if train_loader else None
        if val_loader is None:
            return None
        memory, memory_labels = self._embed(pl_module, datamodule, train_loader,
                                            self.max_train_batches)
        query, query_labels = self._embed(pl_module, datamodule, val_loader, None)
        keep_memory, keep_query = memory_labels >= 0, query_labels >= 0
        if not keep_memory.any() or not keep_query.any():
            self._skip("the splits are unlabelled")
            return None
        memory, memory_labels = memory[keep_memory], memory_labels[keep_memory]
        query, query_labels = query[keep_query], query_labels[keep_query]
        num_classes = int(max(memory_labels.max(), query_labels.max())) + 1
        predicted = weighted_knn_predict(query, memory, memory_labels, num_classes, self.k,
                                         self.temperature)
        return float((predicted == query_labels).float().mean())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Compute and log ``val/knn_top1`` every ``every_n_epochs`` epochs."""
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0 or trainer.sanity_checking:
            return
        top1 = self.compute(trainer, pl_module)
        if top1 is not None:
            # identical on every rank (gathered features): no sync needed
            pl_module.log("val/knn_top1", top1, prog_bar=True, on_epoch=True)
