"""Variants of the paper's DSM objective tried by ``search.py``, and its diagnostic callback.

Every variant keeps the paper's loss (InfoNCE over ``[q.k+ | q.queue | q.n] / tau``, the same
columns); they change only *how* the hard negative is embedded, through the documented
extension point ``DSMLightningModule.embed_negatives`` / ``forward_views``. They live here,
not in the library, until one of them earns its place (docs/method-fidelity.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from dsm_lightning import DSMLightningModule
from dsm_lightning.modules.dsm import embed_clips, embed_together


class JointPassDSM(DSMLightningModule):
    """The hard negatives go through ``f`` in the *query's* forward pass (one set of
    BatchNorm statistics for queries and negatives) instead of a pass of their own."""

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        q, n = embed_together(self.encode_query, views["query"], views["negative"])
        return {"query": q, "key": self.encode_key(views["key"]), "negative": n}


def _set_bn_eval(module: nn.Module, eval_mode: bool) -> list[tuple[nn.Module, bool]]:
    """Put every BatchNorm of ``module`` in eval (``eval_mode``) mode; return the old modes."""
    old = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            old.append((m, m.training))
            m.train(not eval_mode)
    return old


class EvalBNNegativeDSM(DSMLightningModule):
    """The hard negatives' own pass of ``f`` uses BatchNorm running statistics (eval mode)."""

    def embed_negatives(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        old = _set_bn_eval(self.encoder, True)
        try:
            return {"negative": embed_clips(self.encode_query, views["negative"])}
        finally:
            for m, mode in old:
                m.train(mode)


class ObjectiveDiagnostic(pl.Callback):
    """At the end of training, on a copy of the module: f-vs-f against f-vs-g similarities.

    For ``batches`` training batches (views built by the data module's view builder with a
    fixed seed) it measures, with BatchNorm in train mode as the loss sees it and in eval
    mode as downstream features see it: ``q.g(k+)`` (the loss's positive, f against g),
    ``q.f(k+)`` (the same positive through f), ``q.f(n)`` (the hard negative) and the
    hard-negative accuracies ``q.g(k+) > q.n`` and ``q.f(k+) > q.n``. Written as JSON.

    Args:
        path: output JSON file.
        batches: number of training batches measured.
    """

    def __init__(self, path: str, batches: int = 4) -> None:
        self.path, self.batches = path, batches

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = copy.deepcopy(pl_module)
        dm = trainer.datamodule
        train = dm.train_dataloader()  # a fresh loader: the trained one's sampler is spent
        loader = torch.utils.data.DataLoader(train.dataset, batch_size=train.batch_size,
                                             collate_fn=train.collate_fn, shuffle=False)
        sums: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(loader):
            if i >= self.batches:
                break
            batch = {k: v.to(module.device) if isinstance(v, Tensor) else v
                     for k, v in batch.items()}
            views = dm.augment(batch["video"], batch.get("video_shift"),
                               generator=torch.Generator().manual_seed(1000 + i))
            views = module.unpack_batch({**views, "index": batch.get("index")})
            for mode in ("train", "eval"):
                module.train(mode == "train")
                q = module.encode_query(views["query"])
                k_g = module.encode_key(views["key"])
                k_f = module.encode_query(views["key"])
                n = embed_clips(module.encode_query, views["negative"])
                n = n.unsqueeze(1) if n.ndim == 2 else n
                pos_g, pos_f = (q * k_g).sum(1), (q * k_f).sum(1)
                neg = torch.einsum("bd,bmd->bm", q, n)
                stats = {
                    "q_g_pos": pos_g.mean(), "q_f_pos": pos_f.mean(), "q_f_neg": neg.mean(),
                    "hn_acc_g": (pos_g[:, None] > neg).float().mean(),
                    "hn_acc_f": (pos_f[:, None] > neg).float().mean(),
                }
                for key, value in stats.items():
                    name = f"{mode}/{key}"
                    sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
        result = {k: v / max(count, 1) for k, v in sums.items()}
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(json.dumps(result, indent=2) + "\n")
