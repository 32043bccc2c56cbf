"""Pretrain DSM with your own backbone: any ``nn.Module`` passed as ``encoder=``.

The module maps clips (B, C, T, H, W) to a feature map (B, D, T', H', W') or a vector
(B, D). ``DSMLightningModule`` wraps it in ``BackboneWrapper`` (global average pooling,
``feature_dim`` found by a dry run when the module has no ``feature_dim`` attribute) and
builds the projection head, the momentum (EMA) copy and the key queue around it.

The exported ``encoder.pt`` records ``backbone: None`` (the registry cannot rebuild your
class), so reload it into a fresh instance::

    encoder, meta = load_encoder("encoder.pt", backbone=BackboneWrapper(SeparableNet()))

Run from the repository root::

    python examples/pretrain_custom_backbone.py              # a few minutes on a CPU
    DSM_SMOKE=1 python examples/pretrain_custom_backbone.py  # the same, shrunk: seconds

Writes ``outputs/examples/pretrain_custom_backbone/`` (``encoder.pt``, ``metrics.csv``),
relative to where it runs (``--out-dir`` to change).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["SeparableNet", "main"]


class SeparableNet(nn.Module):
    """A small (2+1)D network: each block is a spatial 1x3x3 then a temporal 3x1x1 convolution.

    Args:
        width: channels of the first block (doubled by each of the three blocks).
        in_channels: input channels C.
    """

    def __init__(self, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(3):
            c_out = width * 2**i
            layers += [
                nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                          bias=False),
                nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
                nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0), bias=False),
                nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.blocks = nn.Sequential(*layers)

    def forward(self, video: Tensor) -> Tensor:
        """``(B, C, T, H, W) -> (B, 4 width, T, H / 8, W / 8)`` feature map."""
        return self.blocks(video)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain ``SeparableNet`` with DSM on the synthetic source, then reload its encoder.pt."""
    import pytorch_lightning as pl

    from dsm_lightning import DSMLightningModule, load_encoder
    from dsm_lightning.models import BackboneWrapper

    parser = common.example_parser(__doc__.splitlines()[0],
                                   "outputs/examples/pretrain_custom_backbone")
    args = parser.parse_args(argv)
    s = common.settings(args.fast)
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    data = common.synthetic_datamodule(s, "pretrain", common.pretrain_augment(s), args.seed)
    model = DSMLightningModule(
        backbone=SeparableNet(width=s["width"]),  # a module instead of a registry name
        optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
        queue_size=s["queue_size"],
    )
    print(f"user backbone wrapped: feature_dim={model.encoder.feature_dim}")
    trainer = common.example_trainer(out, s["epochs"], args.fast, export=out / "encoder.pt")
    trainer.fit(model, datamodule=data)
    logged = common.logged_metrics(trainer)
    print(f"last epoch: loss={logged['train/loss_epoch']:.3f}, "
          f"hard-negative accuracy={logged['train/hn_acc_epoch']:.3f}")

    # Reload the exported encoder into a fresh instance of the same class.
    encoder, meta = load_encoder(out / "encoder.pt",
                                 backbone=BackboneWrapper(SeparableNet(width=s["width"])))
    clip = torch.randn(2, 3, s["num_frames"], s["crop_size"], s["crop_size"])
    reloaded = encoder.eval()(clip)
    trained = model.extract_features(clip)
    same = torch.allclose(reloaded, trained, atol=1e-6)
    print(f"encoder.pt reloaded into SeparableNet: features identical = {same} "
          f"(feature_dim={meta['feature_dim']}, trained at {meta['crop_size']} px, "
          f"{meta['num_frames']} frames)")
    common.print_outputs(encoder=out / "encoder.pt", metrics=out / "metrics.csv")
    return {"model": model, "metrics": logged, "encoder": encoder, "meta": meta,
            "features_match": same, "out_dir": out}


if __name__ == "__main__":
    main()
