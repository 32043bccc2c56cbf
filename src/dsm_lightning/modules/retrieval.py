"""Nearest-neighbour video retrieval with a frozen (pretrained) backbone, run by ``trainer.test``.

The paper's protocol (docs/method.md, "Video retrieval"): pooled backbone features (not the
projection), L2-normalised; queries = test split, gallery = train split; recall@k for k in
(1, 5, 10, 20, 50). ``protocol`` says how a video becomes clips (docs/reproduce.md):

- ``"centre"``: one clip per video, the centre window with the centre crop, as in the public
  DSM code; the data module gives it with ``n_clips: 1`` and ``n_crops: 1`` (its single
  evaluation window is the centre one), and the module checks that it does.
- ``"average"`` (default): the mean of the features of the data module's ``n_clips`` x
  ``n_crops`` views, an optimistic variant (averaging smooths the features).

Output files (rank 0, only when ``output_dir`` is set), in a new ``<output_dir>/version_N``
folder per run so that a rerun never overwrites an earlier one (the folder is printed):

- ``recall.json``: ``{"k": recall}`` in [0, 1]; ``null`` for a k >= the gallery size.
- ``neighbours.json``: per query, its ``index``, ``label`` and its ``max(ks)`` nearest
  gallery videos (``neighbours`` = gallery indices, ``neighbour_labels``, ``scores``).
- ``features.pt``: ``{"gallery": {...}, "query": {...}, "ks": [...]}`` with the unit-norm
  ``features`` (N, D), ``labels`` and ``index`` (N,) of both sets (``weights_only`` loadable).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from dsm_lightning._checks import check_choice
from dsm_lightning.data.datamodule import clip_spec_of
from dsm_lightning.evaluation.retrieval import (
    CLIP_REDUCTIONS,
    DEFAULT_KS,
    RETRIEVAL_PROTOCOLS,
    encode_videos,
    format_recall_table,
    neighbours_table,
    recall_at_k,
)
from dsm_lightning.models.encoder_io import downstream_encoder

__all__ = ["RetrievalModule", "GALLERY", "QUERY", "RESULT_FILES", "next_version_dir"]

#: dataloader index of the gallery (train split) and of the queries (test split)
GALLERY, QUERY = 0, 1
DEFAULT_BACKBONE = "r3d_18"
#: the files written into ``<output_dir>/version_N``
RESULT_FILES = ("recall.json", "neighbours.json", "features.pt")


def next_version_dir(root: str | Path) -> Path:
    """``root/version_N`` with N one more than the largest existing one (0 when none).

    Args:
        root: the parent folder (need not exist).

    Returns:
        The new folder's path (not created).
    """
    root = Path(root)
    taken = [
        int(child.name.removeprefix("version_"))
        for child in (root.iterdir() if root.is_dir() else ())
        if child.name.startswith("version_") and child.name.removeprefix("version_").isdigit()
    ]
    return root / f"version_{max(taken, default=-1) + 1}"


class RetrievalModule(pl.LightningModule):
    """Video retrieval evaluation: recall@k of cosine nearest neighbours.

    Use with ``trainer.test(module, datamodule)`` where the datamodule's
    ``test_dataloader()`` returns ``[gallery_loader, query_loader]`` (train split, test
    split). Each batch holds ``video`` float (B, C, T, S, S) or (B, V, C, T, S, S),
    ``label`` and ``index`` (B,). Every view is encoded, L2-normalised, averaged over views
    and renormalised (``protocol="average"``), or the one view of each video is encoded
    (``protocol="centre"``). Under DDP the features are gathered from every rank (duplicates that
    a ``DistributedSampler`` pads in are dropped by ``index``) and recall is computed
    identically on all ranks; rank 0 prints the table and writes the files (see the module
    docstring for their names and contents).

    Results: ``self.recalls`` (``{k: recall}``), logged as ``test/recall@k`` (in [0, 1]).
    A k >= the number of gallery videos retrieves the whole gallery, so its recall says
    nothing about the features: it is reported as NaN (``n/a`` in the table, ``null`` in
    ``recall.json``) with one warning.

    Args:
        pretrained: a ``DSMLightningModule`` checkpoint or an ``encoder.pt``; ``None`` uses a
            randomly initialised backbone (the baseline).
        backbone: registry name, or a user's ``nn.Module`` (wrapped in ``BackboneWrapper``
            as in pretraining, so the ``encoder.pt`` of a pretraining run with that module
            loads into it); ``None`` takes the file's (``"r3d_18"`` without file).
        backbone_kwargs: builder arguments; ``None`` takes the file's.
        ks: the k of recall@k.
        output_dir: when set, rank 0 writes ``recall.json``, ``neighbours.json`` and
            ``features.pt`` into a new ``<output_dir>/version_N`` folder per run; None
            writes no file.
        clip_reduction: how several views are combined under ``protocol="average"``:
            ``"mean"`` (average all views) or ``"first"`` (first view only).
        chunk_size: queries per similarity block.
        protocol: ``"centre"``: one centre clip per video (the public DSM code; needs a data
            module with ``n_clips: 1`` and ``n_crops: 1``, checked when testing starts);
            ``"average"``: the mean over all views the loader gives (optimistic).

    Raises:
        ValueError: on an invalid argument value.
        EncoderLoadError: when ``pretrained`` does not match the backbone.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        backbone: str | nn.Module | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        ks: Sequence[int] = DEFAULT_KS,
        output_dir: str | None = None,
        clip_reduction: str = "mean",
        chunk_size: int = 1024,
        protocol: str = "average",
    ) -> None:
        super().__init__()
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be non-empty positive integers, got {ks}")
        check_choice("protocol", protocol, RETRIEVAL_PROTOCOLS)
        check_choice("clip_reduction", clip_reduction, CLIP_REDUCTIONS)
        if protocol == "centre" and clip_reduction != "mean":
            raise ValueError(
                f"clip_reduction={clip_reduction!r} combines several views; "
                "protocol='centre' has one view per video (leave clip_reduction at 'mean')"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.encoder, self.encoder_meta = downstream_encoder(pretrained, backbone,
                                                             backbone_kwargs, DEFAULT_BACKBONE)
        self.encoder.requires_grad_(False)
        self.ks = ks
        self.recalls: dict[int, float] = {}
        #: the folder the last run wrote its files to (None: no files)
        self.results_dir: Path | None = None
        self._outputs: dict[int, dict[str, list[Tensor]]] = {}
        self._warned_ks = False

    def forward(self, video: Tensor) -> Tensor:
        """Unit-norm video features.

        Args:
            video: (B, C, T, H, W) or (B, V, C, T, H, W) normalised clips.

        Returns:
            (B, D) features (views combined per ``protocol`` and ``clip_reduction``).

        Raises:
            ValueError: more than one view per video under ``protocol="centre"``.
        """
        return encode_videos(self.encoder, video, self.hparams.clip_reduction,
                             self.hparams.protocol)

    def on_test_start(self) -> None:
        """Refuse a data module that gives several views per video to ``protocol="centre"``."""
        if self.hparams.protocol != "centre":
            return
        spec = clip_spec_of(self.trainer.datamodule)
        views = {"n_clips": spec.n_clips, "n_crops": spec.n_crops}
        if views != {"n_clips": 1, "n_crops": 1}:
            raise ValueError(
                f"protocol='centre' takes one clip per video (the centre window, centre crop) "
                f"but the data module gives n_clips={views['n_clips']}, "
                f"n_crops={views['n_crops']}: set both to 1, or use protocol='average'"
            )

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
        self.recalls = self._meaningful(
            recall_at_k(
                query["features"],
                query["labels"],
                gallery["features"],
                gallery["labels"],
                self.ks,
                self.hparams.chunk_size,
            ),
            gallery_size=len(gallery["labels"]),
        )
        for k, value in self.recalls.items():
            self.log(f"test/recall@{k}", value, sync_dist=True)  # equal on every rank
        if self.trainer.is_global_zero:
            rank_zero_info(
                f"retrieval ({self.hparams.protocol} protocol): {len(query['labels'])} queries, "
                f"{len(gallery['labels'])} gallery"
                f"\n{format_recall_table(self.recalls)}"
            )
            if self.hparams.output_dir is not None:
                self._save(gallery, query)

    def _meaningful(self, recalls: dict[int, float], gallery_size: int) -> dict[int, float]:
        """NaN for every k >= the gallery size (one warning per module)."""
        trivial = [k for k in recalls if k >= gallery_size]
        if trivial and not self._warned_ks:
            rank_zero_warn(
                f"retrieval: recall@k for k = {', '.join(map(str, trivial))} is reported as NaN: "
                f"k >= the gallery size ({gallery_size} videos) retrieves the whole gallery, "
                "so those recalls say nothing about the features"
            )
            self._warned_ks = True
        return {k: math.nan if k in trivial else value for k, value in recalls.items()}

    def _save(self, gallery: dict[str, Tensor], query: dict[str, Tensor]) -> None:
        out = next_version_dir(self.hparams.output_dir)
        out.mkdir(parents=True)
        recall, neighbours, features = (out / name for name in RESULT_FILES)
        recalls = {str(k): None if math.isnan(v) else v for k, v in self.recalls.items()}
        recall.write_text(json.dumps(recalls, indent=2))
        table = neighbours_table(query, gallery, k=max(self.ks))
        neighbours.write_text(json.dumps(table))
        torch.save({"gallery": gallery, "query": query, "ks": list(self.ks)}, features)
        self.results_dir = out
        rank_zero_info(f"retrieval results written to {out}: {', '.join(RESULT_FILES)}")
