"""A new objective by subclassing: DSM + a temporal-order term (is this clip played backwards?).

``TemporalOrderDSM`` overrides three small extension points of ``DSMLightningModule`` and
nothing else (no copy of ``training_step``):

- ``unpack_batch``: adds the order task's clips, the key view with a random half of the batch
  reversed in time, and their labels (1 = reversed);
- ``forward_views``: the parent's embeddings plus the order head's logits on those clips;
- ``compute_loss``: the parent's loss + ``order_weight`` x cross-entropy, with the order loss
  and accuracy added to the logged statistics (``train/order_loss``, ``train/order_acc``).

The reversed clip has the same scene and the same frames, so only motion direction separates
the two classes: the term pushes the encoder further towards motion, like the DSM negative.

Python API (from the repository root)::

    python examples/temporal_order.py              # DSM + order term on the synthetic source
    DSM_SMOKE=1 python examples/temporal_order.py  # the same, shrunk: seconds

Writes ``outputs/examples/temporal_order/`` (``encoder.pt``, ``metrics.csv``), relative
to where it runs.

The ``dsm`` command (``class_path: examples.temporal_order.TemporalOrderDSM``), from the
repository root so that ``examples`` is importable::

    PYTHONPATH=. dsm fit --config examples/custom_objective.yaml
    python -m dsm_lightning.cli fit --config examples/custom_objective.yaml   # same thing
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning import DSMLightningModule

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["TemporalOrderDSM", "main"]


class TemporalOrderDSM(DSMLightningModule):
    """DSM (or MoCo) pretraining plus a temporal-order classification term.

    Loss = parent loss + ``order_weight`` x CE(order head(f(clip)), reversed?), where the
    clips are the batch's key views with a random half reversed along time.

    Args:
        order_weight: weight of the temporal-order cross-entropy (0 disables the term).
        order_hidden_dim: hidden width of the order head; None gives a linear head.
        **kwargs: every ``DSMLightningModule`` argument (backbone, method, lr, ...).

    Raises:
        ValueError: ``order_weight < 0`` or ``order_hidden_dim < 1`` (and the parent's checks).
    """

    def __init__(
        self, order_weight: float = 0.5, order_hidden_dim: int | None = None, **kwargs: Any
    ) -> None:
        if order_weight < 0:
            raise ValueError(f"order_weight must be >= 0, got {order_weight}")
        if order_hidden_dim is not None and order_hidden_dim < 1:
            raise ValueError(f"order_hidden_dim must be >= 1 or None, got {order_hidden_dim}")
        super().__init__(**kwargs)
        dim = self.encoder.feature_dim
        if order_hidden_dim is None:
            self.order_head: nn.Module = nn.Linear(dim, 2)
        else:
            self.order_head = nn.Sequential(
                nn.Linear(dim, order_hidden_dim), nn.ReLU(inplace=True),
                nn.Linear(order_hidden_dim, 2),
            )

    def unpack_batch(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The parent's views plus ``order_clips`` (B, C, T, H, W) and ``order_label`` (B,)."""
        views = super().unpack_batch(batch)
        clips = views["key"]
        label = torch.randint(0, 2, (clips.shape[0],), device=clips.device)
        reversed_ = label.bool()[:, None, None, None, None]
        views["order_clips"] = torch.where(reversed_, clips.flip(2), clips)
        views["order_label"] = label
        return views

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The parent's embeddings plus ``order_logits`` (B, 2) of the order clips."""
        outputs = super().forward_views(views)
        outputs["order_logits"] = self.order_head(self.encoder(views["order_clips"]))
        return outputs

    def compute_loss(
        self, views: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Parent loss + ``order_weight`` x order cross-entropy; logs ``order_loss/acc``."""
        loss, stats = super().compute_loss(views, outputs)
        logits, label = outputs["order_logits"], views["order_label"]
        order_loss = F.cross_entropy(logits, label)
        stats = dict(stats)
        stats["order_loss"] = order_loss.detach()
        stats["order_acc"] = (logits.argmax(1) == label).float().mean().detach()
        return loss + self.hparams.order_weight * order_loss, stats


# ------------------------------------------------------------------------------- script
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain ``TemporalOrderDSM`` on the synthetic source; return the last logged values."""
    import pytorch_lightning as pl

    parser = common.example_parser(__doc__.splitlines()[0], "outputs/examples/temporal_order")
    parser.add_argument("--order-weight", type=float, default=0.5)
    args = parser.parse_args(argv)
    s = common.settings(args.fast)
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    augment = common.pretrain_augment(s)
    data = common.synthetic_datamodule(s, "pretrain", augment, args.seed)
    model = TemporalOrderDSM(
        order_weight=args.order_weight, backbone="tiny3d",
        backbone_kwargs={"width": s["width"]}, optimizer="adamw", lr=1e-3,
        temperature=0.1, momentum=0.99, queue_size=s["queue_size"],
    )
    trainer = common.example_trainer(out, s["epochs"], args.fast, export=out / "encoder.pt")
    trainer.fit(model, datamodule=data)
    logged = common.logged_metrics(trainer)
    print("last epoch:", ", ".join(
        f"{k}={logged[k]:.3f}" for k in ("train/loss_epoch", "train/hn_acc_epoch",
                                         "train/order_loss_epoch", "train/order_acc_epoch")
        if k in logged))
    common.print_outputs(encoder=out / "encoder.pt", metrics=out / "metrics.csv")
    return {"model": model, "trainer": trainer, "metrics": logged, "out_dir": out}


if __name__ == "__main__":
    main()
