"""Pretrain DSM with your own backbone: any ``nn.Module`` passed as ``encoder=``.

The module maps clips (B, C, T, H, W) to a feature map (B, D, T', H', W') or a vector
(B, D). ``DSMLightningModule`` wraps it in ``BackboneWrapper`` (global average pooling,
``feature_dim`` found by a dry run when the module has no ``feature_dim`` attribute) and
builds the projection head, the momentum (EMA) copy and the key queue around it.

The exported ``encoder.pt`` records ``backbone: None`` (the registry cannot rebuild your
class), so reload it into a fresh instance::

    encoder, meta = load_encoder("encoder.pt", backbone=BackboneWrapper(SeparableNet()))

Run from the repository root::

    python examples/pretrain_custom_backbone.py          # a few minutes on a CPU
    python examples/pretrain_custom_backbone.py --fast   # seconds (used by the tests)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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


SETTINGS = {  # (full run, --fast)
    "synthetic_classes": (8, 4), "synthetic_videos": (24, 4), "synthetic_eval_videos": (8, 2),
    "synthetic_frames": (48, 16), "synthetic_size": (64, 32), "num_frames": (8, 4),
    "stride": (4, 2), "crop_size": (64, 32), "batch_size": (16, 4), "width": (16, 4),
    "epochs": (6, 1), "queue_size": (1024, 32),
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain ``SeparableNet`` with DSM on the synthetic source, then reload its encoder.pt."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from dsm_lightning import DSMLightningModule, TripletBuilder, VideoDataModule, load_encoder
    from dsm_lightning.models import BackboneWrapper

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    parser.add_argument("--out-dir", default="outputs/examples/pretrain_custom_backbone")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = {key: value[int(args.fast)] for key, value in SETTINGS.items()}
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    data = VideoDataModule(
        source="synthetic", task="pretrain", num_frames=s["num_frames"], stride=s["stride"],
        frame_size=s["synthetic_size"], batch_size=s["batch_size"], num_workers=0,
        synthetic_classes=s["synthetic_classes"], synthetic_videos=s["synthetic_videos"],
        synthetic_eval_videos=s["synthetic_eval_videos"],
        synthetic_frames=s["synthetic_frames"], synthetic_size=s["synthetic_size"],
        augment=TripletBuilder(crop_size=s["crop_size"], crop_scale=(0.5, 1.0),
                               negative_kinds=("shift", "reverse", "shuffle", "static")),
        seed=args.seed,
    )
    model = DSMLightningModule(
        encoder=SeparableNet(width=s["width"]),  # replaces backbone=<registry name>
        method="dsm", optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
        queue_size=s["queue_size"], export_encoder=str(out / "encoder.pt"),
    )
    print(f"user backbone wrapped: feature_dim={model.encoder.feature_dim}")
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=s["epochs"], log_every_n_steps=1,
        logger=CSVLogger(str(out), name="", version=""), enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=not args.fast,
        default_root_dir=str(out),
    )
    trainer.fit(model, datamodule=data)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
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
    return {"model": model, "metrics": logged, "encoder": encoder, "meta": meta,
            "features_match": same, "out_dir": out}


if __name__ == "__main__":
    main()
