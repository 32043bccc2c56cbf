"""Nearest-neighbour video retrieval with a frozen (pretrained) backbone, run by ``trainer.test``.

The paper's protocol (method.md, "Video retrieval"): pooled backbone features (not the
projection), L2-normalised, averaged over the clips of a video; queries = test split,
gallery = train split; recall@k for k in (1, 5, 10, 20, 50).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from dsm_lightning._checks import check_choice
from dsm_lightning.evaluation.retrieval import (
    CLIP_REDUCTIONS,
    DEFAULT_KS,
    encode_videos,
    format_recall_table,
    neighbours_table,
    recall_at_k,
)
from dsm_lightning.models.encoder_io import load_encoder
from dsm_lightning.models.registry import create_backbone

__all__ = ["RetrievalModule", "GALLERY", "QUERY"]

#: dataloader index of the gallery (train split) and of the queries (test split)
GALLERY, QUERY = 0, 1
DEFAULT_BACKBONE = "r3d_18"


class RetrievalModule(pl.LightningModule):
    """Video retrieval evaluation: recall@k of cosine nearest neighbours.

    Use with ``trainer.test(module, datamodule)`` where the datamodule's
    ``test_dataloader()`` returns ``[gallery_loader, query_loader]`` (train split, test
    split). Each batch holds ``video`` float (B, C, T, S, S) or (B, V, C, T, S, S),
    ``label`` and ``index`` (B,). Every view is encoded, L2-normalised, averaged over views
    and renormalised. Under DDP the features are gathered from every rank (duplicates that
    a ``DistributedSampler`` pads in are dropped by ``index``) and recall is computed
    identically on all ranks; rank 0 prints the table and writes the files.

    Results: ``self.recalls`` (``{k: recall}``), logged as ``test/recall@k`` (in [0, 1]).

    Args:
        pretrained: a ``DSMLightningModule`` checkpoint or an ``encoder.pt``; ``None`` uses a
            randomly initialised backbone (the baseline).
        backbone: registry name; ``None`` takes the file's (``"r3d_18"`` without file).
        backbone_kwargs: builder arguments; ``None`` takes the file's.
        ks: the k of recall@k.
        output_dir: when set, rank 0 writes ``retrieval_features.pt`` (features, labels and
            indices of both sets), ``retrieval_neighbours.json`` (top-``max(ks)`` gallery
            neighbours of every query) and ``retrieval_recall.json``.
        clip_reduction: ``"mean"`` (average all views) or ``"first"`` (first view only).
        chunk_size: queries per similarity block.

    Raises:
        ValueError: on an invalid argument value.
        EncoderLoadError: when ``pretrained`` does not match the backbone.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        backbone: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        ks: Sequence[int] = DEFAULT_KS,
        output_dir: str | None = None,
        clip_reduction: str = "mean",
        chunk_size: int = 1024,
    ) -> None:
        super().__init__()
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be non-empty positive integers, got {ks}")
        check_choice("clip_reduction", clip_reduction, CLIP_REDUCTIONS)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.save_hyperparameters()
        if pretrained is not None:
            self.encoder, self.encoder_meta = load_encoder(pretrained, backbone, backbone_kwargs)
        else:
            name = backbone or DEFAULT_BACKBONE
            self.encoder = create_backbone(name, **(backbone_kwargs or {}))
            self.encoder_meta = {"backbone": name, "backbone_kwargs": dict(backbone_kwargs or {})}
        self.encoder.requires_grad_(False)
        self.ks = ks
        self.recalls: dict[int, float] = {}
        self._outputs: dict[int, dict[str, list[Tensor]]] = {}

    def forward(self, video: Tensor) -> Tensor:
        """Unit-norm video features.

        Args:
            video: (B, C, T, H, W) or (B, V, C, T, H, W) normalised clips.

        Returns:
            (B, D) features (views combined per ``clip_reduction``).
        """
        return encode_videos(self.encoder, video, self.hparams.clip_reduction)

    def on_test_epoch_start(self) -> None:
        self._outputs = {
            GALLERY: {"features": [], "labels": [], "index": []},
            QUERY: {"features": [], "labels": [], "index": []},
        }

    def test_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx not in (GALLERY, QUERY):
            raise ValueError(
                f"RetrievalModule expects 2 test loaders (gallery, query), got index "
                f"{dataloader_idx}"
            )
        video = batch["video"]
        store = self._outputs[dataloader_idx]
        store["features"].append(self(video))
        store["labels"].append(batch["label"].long())
        if "index" in batch:
            store["index"].append(batch["index"].long())
        else:  # position within this rank's loader (single-process use only)
            start = sum(len(i) for i in store["index"])
            store["index"].append(torch.arange(start, start + len(video), device=video.device))

    def _collect(self, split: int) -> dict[str, Tensor]:
        """Concatenate this rank's outputs, gather every rank's, drop padded duplicates."""
        store = self._outputs[split]
        if not store["features"]:
            which = "gallery (loader 0)" if split == GALLERY else "query (loader 1)"
            raise RuntimeError(f"no {which} batches were seen; test_dataloader must return 2")
        local = {key: torch.cat(values) for key, values in store.items()}
        if self.trainer.world_size > 1:
            gathered = self.all_gather(local)
            local = {key: value.flatten(0, 1) for key, value in gathered.items()}
        order = torch.argsort(local["index"], stable=True)
        index = local["index"][order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        return {key: value[order][keep].cpu() for key, value in local.items()}

    def on_test_epoch_end(self) -> None:
        gallery = self._collect(GALLERY)
        query = self._collect(QUERY)
        self._outputs = {}
        self.recalls = recall_at_k(
            query["features"],
            query["labels"],
            gallery["features"],
            gallery["labels"],
            self.ks,
            self.hparams.chunk_size,
        )
        for k, value in self.recalls.items():
            self.log(f"test/recall@{k}", value, sync_dist=True)  # equal on every rank
        if self.trainer.is_global_zero:
            rank_zero_info(
                f"retrieval: {len(query['labels'])} queries, {len(gallery['labels'])} gallery"
                f"\n{format_recall_table(self.recalls)}"
            )
            if self.hparams.output_dir is not None:
                self._save(gallery, query)

    def _save(self, gallery: dict[str, Tensor], query: dict[str, Tensor]) -> None:
        out = Path(self.hparams.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"gallery": gallery, "query": query, "ks": list(self.ks)},
            out / "retrieval_features.pt",
        )
        table = neighbours_table(query, gallery, k=max(self.ks))
        (out / "retrieval_neighbours.json").write_text(json.dumps(table))
        recalls = {str(k): v for k, v in self.recalls.items()}
        (out / "retrieval_recall.json").write_text(json.dumps(recalls, indent=2))
