"""A custom Temporal Local Disturbance plugged into the ``TripletBuilder``: playback speed.

The new negative replays the anchor's own frames ``speed`` times faster (2x or 3x) from a
random start, looping: the same scene and the same frames as the anchor, a different motion
(the idea of speed-prediction pretexts). It is built the way the library builds its own
frame-level negatives: a ``(B, T)`` frame-index tensor made with vectorised ops (no loop over
samples or frames) and ``reorder_frames`` on the augmented anchor.

How it is plugged in: ``TripletBuilder`` has no registry of negative kinds (its
``negative_kinds`` must come from the fixed ``NEGATIVE_KINDS``), so ``SpeedTripletBuilder``
subclasses it and post-processes ``forward``: it calls the parent, then replaces the negative
of a random ``speed_prob`` fraction of the clips by the speed negative. (The positive has a
cleaner hook: override ``TripletBuilder.sample_field`` to supply your own warp fields.)

Run from the repository root::

    python examples/custom_disturbance.py          # triplet picture + DSM pretraining
    python examples/custom_disturbance.py --fast   # seconds (used by the tests)

With the ``dsm`` command, point ``data.init_args.augment`` at the subclass (from the
repository root, ``PYTHONPATH=.``)::

    augment:
      class_path: examples.custom_disturbance.SpeedTripletBuilder
      init_args: {speed_prob: 0.5, crop_size: 64, negative_kinds: [shift, reverse]}
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsm_lightning.disturb.simple import rand_uniform
from dsm_lightning.disturb.temporal import reorder_frames
from dsm_lightning.disturb.triplet import TripletBuilder

__all__ = ["SpeedTripletBuilder", "main", "speed_indices"]


def speed_indices(
    batch: int,
    frames: int,
    speeds: Sequence[int] = (2, 3),
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


class SpeedTripletBuilder(TripletBuilder):
    """``TripletBuilder`` whose negative is, for a ``speed_prob`` fraction of the clips, the
    augmented anchor replayed 2-3x faster (:func:`speed_indices`).

    With ``negative_kinds=()`` every clip gets the speed negative; with
    ``negative_mode="all"`` it is appended as one more negative per clip, ``(B, M + 1, ...)``.

    Args:
        speed_prob: probability that a clip's negative is the speed negative.
        speeds: playback speeds (integers >= 2, each < the clip length).
        **kwargs: every ``TripletBuilder`` argument (``seed`` also seeds the speed draws).

    Raises:
        ValueError: ``speed_prob`` outside [0, 1] or a speed < 2 (and the parent's checks).
    """

    def __init__(
        self, speed_prob: float = 0.5, speeds: tuple[int, ...] = (2, 3), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= speed_prob <= 1.0:
            raise ValueError(f"speed_prob must be in [0, 1], got speed_prob={speed_prob}")
        if not speeds or min(int(s) for s in speeds) < 2:
            raise ValueError(f"speeds must be integers >= 2, got speeds={speeds}")
        self.speed_prob = float(speed_prob)
        self.speeds = tuple(int(s) for s in speeds)
        self._speed_generator = (
            torch.Generator().manual_seed(self.seed + 1) if self.seed is not None else None
        )

    def forward(
        self,
        video: Tensor,
        video_shift: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_field: bool = False,
    ) -> dict[str, Tensor]:
        """The parent's triplet with the speed negative mixed in (see the class docstring)."""
        out = super().forward(video, video_shift, generator=generator, return_field=return_field)
        g = generator if generator is not None else self._speed_generator
        batch, frames = video.shape[0], video.shape[2]
        index = speed_indices(batch, frames, self.speeds, generator=g, device=video.device)
        negative = reorder_frames(out["anchor"], index)
        if "negative" not in out:
            out["negative"] = negative
        elif out["negative"].dim() == 6:  # negative_mode="all": one more kind, (B, M + 1, ...)
            out["negative"] = torch.cat([out["negative"], negative[:, None]], dim=1)
        else:
            pick = rand_uniform((batch,), generator=g, device=video.device) < self.speed_prob
            out["negative"] = torch.where(pick[:, None, None, None, None], negative,
                                          out["negative"])
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, speed_prob={self.speed_prob}, speeds={self.speeds}"


# ------------------------------------------------------------------------------- script
SETTINGS = {  # (full run, --fast)
    "synthetic_classes": (8, 4), "synthetic_videos": (24, 4), "synthetic_eval_videos": (8, 2),
    "synthetic_frames": (48, 16), "synthetic_size": (64, 32), "num_frames": (8, 4),
    "stride": (4, 2), "crop_size": (64, 32), "batch_size": (16, 4), "width": (16, 4),
    "epochs": (6, 1), "queue_size": (1024, 32),
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Show one triplet of the custom builder, then pretrain DSM with it."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from dsm_lightning import DSMLightningModule, VideoDataModule
    from dsm_lightning.disturb.visualize import save_triplet_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny settings, a few seconds")
    parser.add_argument("--out-dir", default="outputs/examples/custom_disturbance")
    parser.add_argument("--speed-prob", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = {key: value[int(args.fast)] for key, value in SETTINGS.items()}
    out = Path(args.out_dir)

    pl.seed_everything(args.seed, verbose=False)
    augment = SpeedTripletBuilder(
        speed_prob=args.speed_prob, crop_size=s["crop_size"], crop_scale=(0.5, 1.0),
        negative_kinds=("shift", "reverse"), seed=args.seed,
    )
    data = VideoDataModule(
        source="synthetic", task="pretrain", num_frames=s["num_frames"], stride=s["stride"],
        frame_size=s["synthetic_size"], batch_size=s["batch_size"], num_workers=0,
        synthetic_classes=s["synthetic_classes"], synthetic_videos=s["synthetic_videos"],
        synthetic_eval_videos=s["synthetic_eval_videos"],
        synthetic_frames=s["synthetic_frames"], synthetic_size=s["synthetic_size"],
        augment=augment, seed=args.seed,
    )
    data.prepare_data()
    data.setup("fit")

    # 1. One triplet, outside training: the data layer's uint8 batch through the builder.
    batch = next(iter(data.train_dataloader()))
    triplet = augment(batch["video"], batch["video_shift"])
    png = save_triplet_png(out / "triplet.png", triplet, mean=augment.mean, std=augment.std)
    print(f"triplet (rows anchor / positive / negative): {png}")

    # 2. DSM pretraining with the custom negatives: nothing else changes.
    model = DSMLightningModule(
        backbone="tiny3d", backbone_kwargs={"width": s["width"]}, method="dsm",
        optimizer="adamw", lr=1e-3, temperature=0.1, momentum=0.99,
        queue_size=s["queue_size"], export_encoder=str(out / "encoder.pt"),
    )
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
    return {"builder": augment, "triplet": triplet, "png": png, "metrics": logged,
            "out_dir": out}


if __name__ == "__main__":
    main()
