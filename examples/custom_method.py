"""A new pretraining method in a few dozen lines: a BYOL-style objective on the shared base.

``BYOLVideo`` subclasses ``ContrastiveModule`` (the base every built-in method uses) and
writes only what differs: a predictor head, the momentum target it declares through
``momentum_pairs`` (the base runs the EMA after each optimizer step, with the cosine
momentum schedule of ``dsm_lightning.schedules``), the views' embeddings and the loss
(negative cosine similarity, symmetrised). Optimiser, schedules, logging, checkpoints,
``encoder.pt`` export and the CLI come from the base.

Python API (from the repository root)::

    python examples/custom_method.py              # BYOL-style pretraining on the synthetic source
    DSM_SMOKE=1 python examples/custom_method.py  # the same, shrunk: seconds

Writes ``outputs/examples/custom_method/`` (``encoder.pt``, ``metrics.csv``), relative to
where it runs.

With the ``dsm`` command: ``class_path: examples.custom_method.BYOLVideo`` in a config
(``PYTHONPATH=.`` from the repository root).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsm_lightning import ContrastiveModule, ProjectionHead
from dsm_lightning.schedules import momentum_at

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["BYOLVideo", "main"]


class BYOLVideo(ContrastiveModule):
    """BYOL (Grill et al. 2020) on clips: predict the momentum target's embedding, no negatives.

    Args:
        momentum: base EMA momentum of the target, raised to 1 by a cosine over the run.
        predictor_hidden_dim: hidden width of the predictor MLP.
        **kwargs: ``ContrastiveModule`` arguments (backbone, optimiser, ...).
    """

    method_name: ClassVar[str] = "byol"

    def __init__(self, momentum: float = 0.99, predictor_hidden_dim: int = 256, **kwargs: Any):
        super().__init__(**kwargs)
        dim = self.hparams.proj_dim
        self.predictor = ProjectionHead(dim, predictor_hidden_dim, dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The target network follows the online one by EMA (run by the base)."""
        return [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]

    def current_momentum(self) -> float:
        """Cosine from ``momentum`` to 1 over the run."""
        total = float(self.trainer.estimated_stepping_batches) if self._trainer else 0.0
        return momentum_at(self.hparams.momentum, self.global_step, total, "cosine")

    def forward_views(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Online predictions of both views and the target's embeddings of both."""
        both = torch.cat([views["query"], views["key"]])
        with torch.no_grad():
            target = self.target_projector(self.target_encoder(both))
        return {"prediction": self.predictor(self.encode_query(both)), "target": target}

    def compute_loss(self, views, outputs) -> tuple[Tensor, dict[str, Tensor]]:
        """``2 - 2 cos(p, z')`` with each view predicting the other's target."""
        p1, p2 = outputs["prediction"].chunk(2)
        z1, z2 = outputs["target"].chunk(2)
        loss = (2 - 2 * F.cosine_similarity(p1, z2).mean()) + (
            2 - 2 * F.cosine_similarity(p2, z1).mean())
        return loss, {"target_std": outputs["target"].std(0).mean().detach()}


# ------------------------------------------------------------------------------- script
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain ``BYOLVideo`` on the synthetic source; return the model, trainer and metrics."""
    import pytorch_lightning as pl

    from dsm_lightning import TripletBuilder

    parser = common.example_parser(__doc__.splitlines()[0], "outputs/examples/custom_method")
    args = parser.parse_args(argv)
    s = common.settings(args.fast)
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    augment = TripletBuilder.moco()  # two views, no disturbance
    data = common.synthetic_datamodule(s, "pretrain", augment, args.seed)
    model = BYOLVideo(backbone="tiny3d", backbone_kwargs={"width": s["width"]},
                      optimizer="adamw", lr=1e-3)
    trainer = common.example_trainer(out, s["epochs"], args.fast, export=out / "encoder.pt")
    trainer.fit(model, datamodule=data)
    common.print_outputs(encoder=out / "encoder.pt", metrics=out / "metrics.csv")
    return {"model": model, "trainer": trainer, "metrics": common.logged_metrics(trainer),
            "out_dir": out}


if __name__ == "__main__":
    main()
