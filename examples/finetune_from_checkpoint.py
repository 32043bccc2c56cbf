"""Fine-tune for action recognition from a pretraining checkpoint (.ckpt) or an encoder.pt.

1. Pretrain DSM briefly on the synthetic source; keep the Lightning checkpoint
   (``pretrain.ckpt``) and the exported ``encoder.pt``.
2. ``FinetuneModule(pretrained=...)`` from each file (both load the same weights: the
   checkpoint's ``encoder.*`` keys, exact prefix, ``strict=True``), plus a random-init
   baseline with the same backbone.
3. Train the classifier (dropout + linear, whole network fine-tuned), then ``trainer.test``:
   video-level top-1 = softmax averaged over ``n_clips`` windows x ``n_crops`` crops per test
   video, next to the clip-level top-1.

Run from the repository root::

    python examples/finetune_from_checkpoint.py          # several minutes on a CPU
    python examples/finetune_from_checkpoint.py --fast   # seconds (used by the tests)

The same with the ``dsm`` command: ``model.class_path: FinetuneModule`` with
``model.init_args.pretrained: path/to/encoder.pt`` (or the ``.ckpt``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["main"]

SETTINGS = {  # (full run, --fast)
    "synthetic_classes": (8, 4), "synthetic_videos": (24, 4), "synthetic_eval_videos": (8, 2),
    "synthetic_frames": (48, 16), "synthetic_size": (64, 32), "num_frames": (8, 4),
    "stride": (4, 2), "crop_size": (56, 32), "batch_size": (16, 4), "width": (16, 4),
    "pretrain_epochs": (6, 1), "finetune_epochs": (6, 1), "queue_size": (1024, 32),
    "n_clips": (5, 2), "n_crops": (3, 1),
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain, then fine-tune from the .ckpt, from encoder.pt and from random init."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from dsm_lightning import DSMLightningModule, FinetuneModule, TripletBuilder, VideoDataModule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    parser.add_argument("--out-dir", default="outputs/examples/finetune_from_checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = {key: value[int(args.fast)] for key, value in SETTINGS.items()}
    out = Path(args.out_dir)
    backbone = {"backbone": "tiny3d", "backbone_kwargs": {"width": s["width"]}}

    def datamodule(task: str, augment: TripletBuilder) -> VideoDataModule:
        return VideoDataModule(
            source="synthetic", task=task, num_frames=s["num_frames"], stride=s["stride"],
            frame_size=s["synthetic_size"], batch_size=s["batch_size"], num_workers=0,
            n_clips=s["n_clips"], n_crops=s["n_crops"],
            synthetic_classes=s["synthetic_classes"], synthetic_videos=s["synthetic_videos"],
            synthetic_eval_videos=s["synthetic_eval_videos"],
            synthetic_frames=s["synthetic_frames"], synthetic_size=s["synthetic_size"],
            augment=augment, seed=args.seed,
        )

    def trainer(name: str, epochs: int) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cpu", max_epochs=epochs, log_every_n_steps=1,
            logger=CSVLogger(str(out), name=name, version=""), enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=not args.fast,
            default_root_dir=str(out / name),
        )

    # 1. Pretraining: a .ckpt (whole module state) and encoder.pt (backbone only).
    pl.seed_everything(args.seed, verbose=False)
    pretrain_data = datamodule("pretrain", TripletBuilder(
        crop_size=s["crop_size"], crop_scale=(0.5, 1.0),
        negative_kinds=("shift", "reverse", "shuffle", "static")))
    dsm = DSMLightningModule(**backbone, method="dsm", optimizer="adamw", lr=1e-3,
                             temperature=0.1, momentum=0.99, queue_size=s["queue_size"],
                             export_encoder=str(out / "encoder.pt"))
    pretrainer = trainer("pretrain", s["pretrain_epochs"])
    pretrainer.fit(dsm, datamodule=pretrain_data)
    ckpt = out / "pretrain.ckpt"
    pretrainer.save_checkpoint(str(ckpt))
    sources = {"from .ckpt": str(ckpt), "from encoder.pt": str(out / "encoder.pt"),
               "random init": None}

    # 2. Both files hold the same backbone weights.
    classify_data = datamodule("classify", TripletBuilder(crop_size=s["crop_size"],
                                                          crop_scale=(0.5, 1.0)))
    classify_data.prepare_data()
    classify_data.setup("fit")
    names = classify_data.class_names
    finetune_args = dict(num_classes=len(names), class_names=names, n_clips=s["n_clips"],
                         n_crops=s["n_crops"], optimizer="adamw", lr=1e-3)
    from_ckpt = FinetuneModule(pretrained=sources["from .ckpt"], **finetune_args)
    from_pt = FinetuneModule(pretrained=sources["from encoder.pt"], **finetune_args)
    same = all(torch.equal(a, b) for a, b in zip(from_ckpt.encoder.state_dict().values(),
                                                 from_pt.encoder.state_dict().values()))
    print(f"encoder from .ckpt == encoder from encoder.pt: {same}")

    # 3. Fine-tune each and test at video level.
    results: dict[str, dict[str, float]] = {}
    for i, (name, path) in enumerate(sources.items()):
        pl.seed_everything(args.seed, verbose=False)
        extra = {} if path is not None else backbone  # random init needs the architecture
        model = FinetuneModule(pretrained=path, **extra, **finetune_args)
        fit = trainer(f"finetune_{i}", s["finetune_epochs"])
        fit.fit(model, datamodule=classify_data)
        (metrics,) = fit.test(model, datamodule=classify_data, verbose=False)
        results[name] = metrics
    width = max(len(n) for n in results) + 2
    print(f"\n{'':<{width}}{'video top-1':>12}{'clip top-1':>12}   "
          f"({s['n_clips']} clips x {s['n_crops']} crops per test video)")
    for name, metrics in results.items():
        print(f"{name:<{width}}{100 * metrics['test/acc_top1']:>11.1f}%"
              f"{100 * metrics['test/clip_acc_top1']:>11.1f}%")
    return {"results": results, "encoders_match": same, "checkpoint": ckpt,
            "encoder": out / "encoder.pt", "out_dir": out}


if __name__ == "__main__":
    main()
