"""Nearest-neighbour video retrieval with ``RetrievalModule`` and ``trainer.test``.

The paper's protocol: pooled backbone features (no fine-tuning), L2-normalised and averaged
over ``n_clips`` windows per video; queries = test split, gallery = train split; a query is a
hit at k when one of its k nearest gallery videos has its class. ``VideoDataModule(task=
"retrieval")`` provides the two test loaders ``[gallery, queries]``.

Without ``--pretrained`` the script first pretrains DSM briefly on the synthetic source;
a random-init encoder of the same architecture is the floor. With ``output_dir`` the module
writes ``recall.json``, ``neighbours.json`` (top-k gallery videos of each query) and
``features.pt`` into a new ``output_dir/version_N`` per run.

Run from the repository root::

    python examples/retrieval.py                              # pretrain + retrieval
    python examples/retrieval.py --pretrained path/encoder.pt # your own encoder (tiny3d data)
    DSM_SMOKE=1 python examples/retrieval.py                  # the same, shrunk: seconds

Writes ``outputs/examples/retrieval/`` (``encoder.pt`` when it pretrains, and
``pretrained/version_N/`` with the result files), relative to where it runs.

The same with the ``dsm`` command: ``dsm test`` with ``model.class_path: RetrievalModule``
and ``data.init_args.task: retrieval``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["main"]

KS = (1, 5, 10)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Recall@k of a pretrained encoder and of a random-init one."""
    import pytorch_lightning as pl

    from dsm_lightning import DSMLightningModule, RetrievalModule, TripletBuilder, VideoDataModule
    from dsm_lightning.evaluation.retrieval import format_recall_table

    parser = common.example_parser(__doc__.splitlines()[0], "outputs/examples/retrieval")
    parser.add_argument("--pretrained", default=None,
                        help="encoder.pt or .ckpt to evaluate (default: pretrain one here)")
    args = parser.parse_args(argv)
    s = common.settings(args.fast, n_clips=(4, 2))
    out = Path(args.out_dir)

    def datamodule(task: str, augment: TripletBuilder | None = None) -> VideoDataModule:
        return common.synthetic_datamodule(s, task, augment, args.seed, n_clips=s["n_clips"])

    def trainer(name: str, epochs: int = 1, export: Path | None = None) -> pl.Trainer:
        return common.example_trainer(out, epochs, args.fast, name=name, export=export)

    pl.seed_everything(args.seed, verbose=False)
    pretrained = args.pretrained
    if pretrained is None:
        model = DSMLightningModule(
            backbone="tiny3d", backbone_kwargs={"width": s["width"]},
            optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
            queue_size=s["queue_size"],
        )
        pretrain_data = datamodule("pretrain", common.pretrain_augment(s))
        trainer("pretrain", s["epochs"], export=out / "encoder.pt").fit(
            model, datamodule=pretrain_data)
        pretrained = str(out / "encoder.pt")

    # Retrieval: gallery = train split, queries = test split, n_clips windows per video.
    data = datamodule("retrieval")  # evaluation crops of the default ClipTransform
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
    results = evaluated["pretrained"].results_dir
    written = {"encoder": pretrained} if args.pretrained is None else {}
    common.print_outputs(**written, recall=results / "recall.json",
                         neighbours=results / "neighbours.json",
                         features=results / "features.pt")
    return {"recalls": recalls, "encoder": pretrained, "out_dir": out, "results_dir": results}


if __name__ == "__main__":
    main()
