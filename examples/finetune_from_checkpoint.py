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

    python examples/finetune_from_checkpoint.py              # several minutes on a CPU
    DSM_SMOKE=1 python examples/finetune_from_checkpoint.py  # the same, shrunk: seconds

Writes ``outputs/examples/finetune_from_checkpoint/`` (``pretrain.ckpt``, ``encoder.pt``,
``pretrain/`` and ``finetune_<i>/`` logs with ``metrics.csv`` and the test's
``confusion_matrix.png``), relative to where it runs.

The same with the ``dsm`` command: ``model.class_path: FinetuneModule`` with
``model.init_args.pretrained: path/to/encoder.pt`` (or the ``.ckpt``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Pretrain, then fine-tune from the .ckpt, from encoder.pt and from random init."""
    import pytorch_lightning as pl

    from dsm_lightning import DSMLightningModule, FinetuneModule, TripletBuilder, VideoDataModule
    from dsm_lightning.disturb import ClipTransform

    parser = common.example_parser(__doc__.splitlines()[0],
                                   "outputs/examples/finetune_from_checkpoint")
    args = parser.parse_args(argv)
    s = common.settings(args.fast, crop_size=(56, 32), pretrain_epochs=(6, 1),
                        finetune_epochs=(6, 1), n_clips=(5, 2), n_crops=(3, 1))
    out = Path(args.out_dir)
    backbone = {"backbone": "tiny3d", "backbone_kwargs": {"width": s["width"]}}

    def datamodule(task: str, augment: TripletBuilder | None = None, **kw) -> VideoDataModule:
        return common.synthetic_datamodule(s, task, augment, args.seed, n_clips=s["n_clips"],
                                           n_crops=s["n_crops"], **kw)

    def trainer(name: str, epochs: int, export: Path | None = None) -> pl.Trainer:
        return common.example_trainer(out, epochs, args.fast, name=name, export=export)

    # 1. Pretraining: a .ckpt (whole module state) and encoder.pt (backbone only).
    pl.seed_everything(args.seed, verbose=False)
    pretrain_data = datamodule("pretrain", common.pretrain_augment(s))
    dsm = DSMLightningModule(**backbone, optimizer="adamw", lr=1e-3,
                             temperature=0.1, momentum=0.99, queue_size=s["queue_size"])
    pretrainer = trainer("pretrain", s["pretrain_epochs"], export=out / "encoder.pt")
    pretrainer.fit(dsm, datamodule=pretrain_data)
    ckpt = out / "pretrain.ckpt"
    pretrainer.save_checkpoint(str(ckpt))
    sources = {"from .ckpt": str(ckpt), "from encoder.pt": str(out / "encoder.pt"),
               "random init": None}

    # 2. Both files hold the same backbone weights.
    classify_data = datamodule("classify", transform=ClipTransform(crop_scale=(0.5, 1.0)))
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
    common.print_outputs(checkpoint=ckpt, encoder=out / "encoder.pt",
                         pretraining_log=out / "pretrain" / "metrics.csv",
                         **{f"finetune_log_{i}": out / f"finetune_{i}" / "metrics.csv"
                            for i in range(len(sources))})
    return {"results": results, "encoders_match": same, "checkpoint": ckpt,
            "encoder": out / "encoder.pt", "out_dir": out}


if __name__ == "__main__":
    main()
