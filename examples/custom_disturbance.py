"""A custom Temporal Local Disturbance registered with ``register_frame_kind``: playback speed.

The new negative replays the anchor's own frames 2x or 3x faster from a random start,
looping: the same scene and the same frames as the anchor, a different motion (the idea of
speed-prediction pretexts). Like the library's own frame-level negatives it is a ``(B, T)``
frame-index tensor made with vectorised ops (no loop over samples or frames), which
``TripletBuilder`` gathers from the augmented anchor.

How it is plugged in: importing this module calls ``register_frame_kind("speed",
speed_kind)``; from then on ``"speed"`` is a valid ``negative_kinds`` entry of any
``TripletBuilder``, with ``negative_mode="sample"`` (weighted by ``negative_probs``) and with
``negative_mode="all"`` (one more negative per clip). No subclass::

    import examples.custom_disturbance  # registers "speed"
    from dsm_lightning import TripletBuilder

    augment = TripletBuilder(negative_kinds=("shift", "reverse", "speed"),
                             negative_probs=(0.25, 0.25, 0.5))

Run from the repository root::

    python examples/custom_disturbance.py              # triplet picture + DSM pretraining
    DSM_SMOKE=1 python examples/custom_disturbance.py  # the same, shrunk: seconds

Writes ``outputs/examples/custom_disturbance/`` (``triplet.png``, ``encoder.pt``,
``metrics.csv``), relative to where it runs.

From a YAML config: the kind must be registered before the ``TripletBuilder`` is built, and
the ``dsm`` console script imports no user module by itself (plain ``dsm fit`` stops with
``negative_kinds must be distinct names from (...)``). Any entry point that imports this
module and then calls ``dsm_lightning.cli.main`` works; this file is one: ``dsm`` as first
argument runs the ``dsm`` command with ``"speed"`` registered (same arguments, same YAML)::

    python examples/custom_disturbance.py dsm fit --config examples/configs/synthetic_dsm_intra.yaml \\
        --data.init_args.augment.init_args.negative_kinds='[reverse, shuffle, static, speed]'

(or write ``negative_kinds: [reverse, shuffle, static, speed]`` under
``data.init_args.augment.init_args`` of your own YAML and pass ``--config`` to it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsm_lightning.disturb.rng import rand_uniform
from dsm_lightning.disturb.temporal import frame_kinds, register_frame_kind

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["SPEEDS", "dsm", "main", "speed_indices", "speed_kind"]

#: Playback speeds of the registered ``"speed"`` kind (those below the clip length are used).
SPEEDS: tuple[int, ...] = (2, 3)


def speed_indices(
    batch: int,
    frames: int,
    speeds: Sequence[int] = SPEEDS,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, T) frame indices ``(start + speed * t) mod T``: the clip replayed faster, looping.

    Args:
        batch: number of clips B.
        frames: clip length T (> every speed, so a row is never the identity).
        speeds: playback speeds to choose from uniformly per clip (integers >= 2).
        generator: random source (draws happen on its device).
        device: where the result lives.

    Returns:
        (B, T) int64 indices in [0, T).

    Raises:
        ValueError: a speed < 2 or >= ``frames``.
    """
    speeds = tuple(int(s) for s in speeds)
    if not speeds or min(speeds) < 2 or max(speeds) >= frames:
        raise ValueError(f"speeds must be integers in [2, frames={frames}), got {speeds}")
    u = rand_uniform((2, batch, 1), generator=generator, device=device)
    choice = (u[0] * len(speeds)).long().clamp_(max=len(speeds) - 1)
    speed = torch.tensor(speeds, device=choice.device)[choice]
    start = (u[1] * frames).long().clamp_(max=frames - 1)
    t = torch.arange(frames, device=choice.device)[None]
    return (start + speed * t) % frames


def speed_kind(
    batch: int,
    frames: int,
    *,
    length: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The ``"speed"`` index builder (registry signature): :func:`speed_indices` at ``SPEEDS``.

    Args:
        batch: number of clips B.
        frames: clip length T (> 2).
        length: the registry's local segment length (unused: the whole clip is replayed).
        generator: random source.
        device: where the result lives.

    Returns:
        (B, T) int64 indices, speeds of ``SPEEDS`` below T only.

    Raises:
        ValueError: no speed of ``SPEEDS`` is below T.
    """
    speeds = tuple(s for s in SPEEDS if s < frames) or SPEEDS  # SPEEDS alone raises, naming T
    return speed_indices(batch, frames, speeds, generator=generator, device=device)


# Importing (or re-running) this file registers the kind once; a second run keeps the first.
if "speed" not in frame_kinds():
    register_frame_kind("speed", speed_kind)


def dsm(argv: Sequence[str] | None = None) -> int:
    """The ``dsm`` command (``dsm_lightning.cli.main``) with ``"speed"`` registered.

    Args:
        argv: the ``dsm`` arguments, e.g. ``["fit", "--config", "x.yaml"]``; None = sys.argv.

    Returns:
        The exit code.
    """
    from dsm_lightning.cli import main as dsm_main

    return dsm_main(argv)


# ------------------------------------------------------------------------------- script
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Show one triplet of a builder with the speed negative, then pretrain DSM with it."""
    import pytorch_lightning as pl

    from dsm_lightning import DSMLightningModule, TripletBuilder
    from dsm_lightning.disturb.visualize import save_triplet_png

    parser = common.example_parser(__doc__.splitlines()[0], "outputs/examples/custom_disturbance")
    parser.add_argument("--speed-prob", type=float, default=0.5,
                        help="probability that a clip's negative is the speed negative")
    args = parser.parse_args(argv)
    if not 0.0 <= args.speed_prob <= 1.0:
        raise ValueError(f"speed_prob must be in [0, 1], got speed_prob={args.speed_prob}")
    s = common.settings(args.fast)
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    other = (1.0 - args.speed_prob) / 2
    augment = TripletBuilder(  # simple augmentation and crop size: the data module's
        negative_kinds=("shift", "reverse", "speed"),
        negative_probs=(other, other, args.speed_prob), seed=args.seed,
    )
    data = common.synthetic_datamodule(s, "pretrain", augment, args.seed)
    data.prepare_data()
    data.setup("fit")

    # 1. One triplet, outside training: the data layer's uint8 batch through the builder.
    batch = next(iter(data.train_dataloader()))
    triplet = data.views(batch, "pretrain", generator=torch.Generator().manual_seed(args.seed))
    spec = data.clip_spec  # the normalisation the views were made with
    png = save_triplet_png(out / "triplet.png", triplet, mean=spec.mean, std=spec.std)
    print(f"triplet (rows anchor / positive / negative): {png}")

    # 2. DSM pretraining with the custom negatives: nothing else changes.
    model = DSMLightningModule(
        backbone="tiny3d", backbone_kwargs={"width": s["width"]},
        optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
        queue_size=s["queue_size"],
    )
    trainer = common.example_trainer(out, s["epochs"], args.fast, export=out / "encoder.pt")
    trainer.fit(model, datamodule=data)
    logged = common.logged_metrics(trainer)
    print(f"last epoch: loss={logged['train/loss_epoch']:.3f}, "
          f"hard-negative accuracy={logged['train/hn_acc_epoch']:.3f}")
    common.print_outputs(triplet=png, encoder=out / "encoder.pt", metrics=out / "metrics.csv")
    return {"builder": augment, "triplet": triplet, "png": png, "metrics": logged,
            "out_dir": out}


if __name__ == "__main__":
    if sys.argv[1:2] == ["dsm"]:
        sys.exit(dsm(sys.argv[2:]))
    main()
