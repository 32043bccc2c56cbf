"""Nearest-neighbour video retrieval with ``RetrievalModule`` and ``trainer.test``.

The paper's protocol: pooled backbone features (no fine-tuning), L2-normalised and averaged
over ``n_clips`` windows per video; queries = test split, gallery = train split; a query is a
hit at k when one of its k nearest gallery videos has its class. ``VideoDataModule(task=
"retrieval")`` provides the two test loaders ``[gallery, queries]``.

Without ``--pretrained`` the script first pretrains DSM briefly on the synthetic source;
a random-init encoder of the same architecture is the floor. With ``output_dir`` the module
writes ``retrieval_recall.json``, ``retrieval_neighbours.json`` (top-k gallery videos of each
query) and ``retrieval_features.pt``.

Run from the repository root::

    python examples/retrieval.py                              # pretrain + retrieval
    python examples/retrieval.py --pretrained path/encoder.pt # your own encoder (tiny3d data)
    python examples/retrieval.py --fast                       # seconds (used by the tests)

The same with the ``dsm`` command: ``dsm test`` with ``model.class_path: RetrievalModule``
and ``data.init_args.task: retrieval``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

SETTINGS = {  # (full run, --fast)
    "synthetic_classes": (8, 4), "synthetic_videos": (24, 4), "synthetic_eval_videos": (8, 2),
    "synthetic_frames": (48, 16), "synthetic_size": (64, 32), "num_frames": (8, 4),
    "stride": (4, 2), "crop_size": (64, 32), "batch_size": (16, 4), "width": (16, 4),
    "epochs": (6, 1), "queue_size": (1024, 32), "n_clips": (4, 2),
}
KS = (1, 5, 10)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Recall@k of a pretrained encoder and of a random-init one."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from dsm_lightning import DSMLightningModule, RetrievalModule, TripletBuilder, VideoDataModule
    from dsm_lightning.evaluation.retrieval import format_recall_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    parser.add_argument("--out-dir", default="outputs/examples/retrieval")
    parser.add_argument("--pretrained", default=None,
                        help="encoder.pt or .ckpt to evaluate (default: pretrain one here)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = {key: value[int(args.fast)] for key, value in SETTINGS.items()}
    out = Path(args.out_dir)

    def datamodule(task: str, augment: TripletBuilder) -> VideoDataModule:
        return VideoDataModule(
            source="synthetic", task=task, num_frames=s["num_frames"], stride=s["stride"],
            frame_size=s["synthetic_size"], batch_size=s["batch_size"], num_workers=0,
            n_clips=s["n_clips"], synthetic_classes=s["synthetic_classes"],
            synthetic_videos=s["synthetic_videos"],
            synthetic_eval_videos=s["synthetic_eval_videos"],
            synthetic_frames=s["synthetic_frames"], synthetic_size=s["synthetic_size"],
            augment=augment, seed=args.seed,
        )

    def trainer(name: str, epochs: int = 1) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cpu", max_epochs=epochs, log_every_n_steps=1,
            logger=CSVLogger(str(out), name=name, version=""), enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=not args.fast,
            default_root_dir=str(out / name),
        )

    pl.seed_everything(args.seed, verbose=False)
    pretrained = args.pretrained
    if pretrained is None:
        model = DSMLightningModule(
            backbone="tiny3d", backbone_kwargs={"width": s["width"]}, method="dsm",
            optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
            queue_size=s["queue_size"], export_encoder=str(out / "encoder.pt"),
        )
        augment = TripletBuilder(crop_size=s["crop_size"], crop_scale=(0.5, 1.0),
                                 negative_kinds=("shift", "reverse", "shuffle", "static"))
        trainer("pretrain", s["epochs"]).fit(model, datamodule=datamodule("pretrain", augment))
        pretrained = str(out / "encoder.pt")

    # Retrieval: gallery = train split, queries = test split, n_clips windows per video.
    data = datamodule("retrieval", TripletBuilder(crop_size=s["crop_size"]))
    evaluated = {
        "pretrained": RetrievalModule(pretrained=pretrained, ks=KS,
                                      output_dir=str(out / "pretrained")),
        "random init": RetrievalModule(backbone="tiny3d",
                                       backbone_kwargs={"width": s["width"]}, ks=KS),
    }
    recalls = {}
    for name, module in evaluated.items():
        trainer(f"retrieval_{name.replace(' ', '_')}").test(module, datamodule=data,
                                                            verbose=False)
        recalls[name] = module.recalls
        print(format_recall_table(module.recalls, title=name))
    print(f"neighbour lists: {out / 'pretrained' / 'retrieval_neighbours.json'}")
    return {"recalls": recalls, "encoder": pretrained, "out_dir": out}


if __name__ == "__main__":
    main()
