"""What every example script shares: its settings table, synthetic data, flags and Trainer.

Not an example itself (the leading underscore keeps it out of the example list). The
scripts import it as ``examples._common``; each one makes the repository root importable
first when it is run as a file (``python examples/<name>.py``).

Smoke runs: with ``DSM_SMOKE=1`` in the environment (or ``--fast``) a script runs with the
smoke column of :data:`SETTINGS` (tiny synthetic data, one epoch: seconds) and otherwise
exactly as with its defaults: same arguments, same output folder. The smoke column is read
from the ``dsm`` command's smoke overlays (``dsm_lightning.smoke``: trainer.yaml,
synthetic.yaml, tiny3d.yaml), so the examples and the CLI shrink to the same sizes. Every
script ends by printing what it wrote (:func:`print_outputs`), as paths relative to where it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsm_lightning.smoke import load_overlay, smoke_enabled

if TYPE_CHECKING:  # imported lazily below: importing an example stays light
    import pytorch_lightning as pl

    from dsm_lightning import TripletBuilder, VideoDataModule
    from dsm_lightning.data.sources import SyntheticSource

__all__ = ["SETTINGS", "example_parser", "example_trainer", "logged_metrics", "pretrain_augment",
           "print_outputs", "settings", "synthetic_datamodule", "synthetic_source"]

_CLIP = load_overlay("synthetic")["data"]["init_args"]  # the dsm command's smoke sizes
_SOURCE = _CLIP["source"]["init_args"]
#: The examples' sizes, as ``(full run, smoke run)`` pairs (``DSM_SMOKE=1`` or ``--fast``:
#: seconds; the smoke column is the ``dsm`` CLI's smoke overlays, so they share one
#: synthetic cache).
SETTINGS: dict[str, tuple[Any, Any]] = {
    "synthetic_classes": (8, _SOURCE["num_classes"]),
    "synthetic_videos": (24, _SOURCE["videos_per_class"]),
    "synthetic_eval_videos": (8, _SOURCE["eval_videos_per_class"]),
    "synthetic_frames": (48, _SOURCE["num_frames"]), "synthetic_size": (64, _SOURCE["size"]),
    "num_frames": (8, _CLIP["num_frames"]), "stride": (4, _CLIP["stride"]),
    "crop_size": (64, _CLIP["crop_size"]), "batch_size": (16, _CLIP["batch_size"]),
    "width": (16, load_overlay("tiny3d")["model"]["init_args"]["backbone_kwargs"]["width"]),
    "epochs": (6, load_overlay("trainer")["trainer"]["max_epochs"]), "queue_size": (1024, 32),
}


def settings(fast: bool, **extra: tuple[Any, Any]) -> dict[str, Any]:
    """The values of :data:`SETTINGS` (plus ``extra``) for a full run or a smoke run.

    Args:
        fast: pick the smoke column (``args.fast``: ``--fast`` or ``DSM_SMOKE=1``).
        **extra: more ``(full run, smoke run)`` pairs, or replacements of shared ones, e.g.
            ``n_clips=(5, 2)``.

    Returns:
        One value per setting name.

    Raises:
        ValueError: an ``extra`` value is not a ``(full run, smoke run)`` pair.
    """
    for key, value in extra.items():
        if not isinstance(value, tuple) or len(value) != 2:
            raise ValueError(f"{key} must be a (full run, smoke run) pair, got {value!r}")
    return {key: value[int(fast)] for key, value in {**SETTINGS, **extra}.items()}


def synthetic_source(s: dict[str, Any]) -> SyntheticSource:
    """The synthetic source sized by the settings ``s`` (seed: the data module's).

    Args:
        s: the output of :func:`settings`.

    Returns:
        The ``SyntheticSource``.
    """
    from dsm_lightning.data.sources import SyntheticSource

    return SyntheticSource(
        num_classes=s["synthetic_classes"], videos_per_class=s["synthetic_videos"],
        eval_videos_per_class=s["synthetic_eval_videos"], num_frames=s["synthetic_frames"],
        size=s["synthetic_size"],
    )


def synthetic_datamodule(
    s: dict[str, Any], task: str, augment: TripletBuilder | None, seed: int, **overrides: Any
) -> VideoDataModule:
    """``VideoDataModule`` on the synthetic source, sized by the settings ``s``.

    Args:
        s: the output of :func:`settings`.
        task: ``"pretrain"``, ``"classify"`` or ``"retrieval"``.
        augment: the device-side view builder (None: the default ``TripletBuilder``).
        seed: data seed.
        **overrides: more ``VideoDataModule`` arguments (e.g. ``n_clips``, ``transform``).

    Returns:
        The data module (not yet prepared nor set up); its crop size (the model's input
        size) is ``s["crop_size"]``; its transform crops half the frame or more (the
        examples' usual simple augmentation), shared by the view builder and evaluation.
    """
    from dsm_lightning import VideoDataModule
    from dsm_lightning.disturb import ClipTransform

    kwargs: dict[str, Any] = dict(
        source=synthetic_source(s), task=task, num_frames=s["num_frames"],
        stride=s["stride"], frame_size=s["synthetic_size"], crop_size=s["crop_size"],
        batch_size=s["batch_size"], num_workers=0, augment=augment, seed=seed,
        transform=ClipTransform(crop_scale=(0.5, 1.0)),
    )
    kwargs.update(overrides)
    return VideoDataModule(**kwargs)


def pretrain_augment(s: dict[str, Any]) -> TripletBuilder:
    """The examples' usual DSM disturbances: four negative kinds (the simple augmentation and
    the crop size are the data module's, see :func:`synthetic_datamodule`).

    Args:
        s: the output of :func:`settings`.

    Returns:
        ``TripletBuilder`` with negatives shift/reverse/shuffle/static.
    """
    from dsm_lightning import TripletBuilder

    return TripletBuilder(negative_kinds=("shift", "reverse", "shuffle", "static"))


def example_parser(description: str, out_dir: str) -> argparse.ArgumentParser:
    """A parser with the flags every example has: ``--fast``, ``--out-dir`` and ``--seed``.

    ``--fast`` is on by default when ``DSM_SMOKE`` is set (see the module docstring).

    Args:
        description: the ``--help`` text (an example passes its docstring's first line).
        out_dir: default of ``--out-dir`` (relative: to the working directory).

    Returns:
        The parser; an example adds its own flags before ``parse_args``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", default=smoke_enabled(),
                        help="smoke settings: tiny data, one epoch, seconds (default with "
                             "DSM_SMOKE=1)")
    parser.add_argument("--out-dir", default=out_dir,
                        help=f"output folder, relative to where you run (default {out_dir})")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def example_trainer(
    out: Path, epochs: int, fast: bool, name: str = "", export: Path | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> pl.Trainer:
    """A CPU ``Trainer`` logging to ``out/name/metrics.csv``, without checkpoints.

    Args:
        out: the example's output folder.
        epochs: ``max_epochs``.
        fast: hide the progress bar (smoke runs are the tests').
        name: sub-folder of ``out`` for this run's logs ("" = ``out`` itself).
        export: where ``EncoderExport`` writes ``encoder.pt`` at the end of fit (None: no
            export).
        callbacks: more callbacks.

    Returns:
        The trainer.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from dsm_lightning import EncoderExport

    extra = [EncoderExport(str(export))] if export is not None else []
    return pl.Trainer(
        accelerator="cpu", max_epochs=epochs, log_every_n_steps=1,
        logger=CSVLogger(str(out), name=name, version=""), enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=not fast,
        default_root_dir=str(out / name), callbacks=[*extra, *callbacks],
    )


def print_outputs(**paths: Path | str) -> None:
    """Print what an example wrote, one ``label  path`` line each, under ``[example] outputs:``.

    Args:
        **paths: label -> file or folder written (as given: relative paths stay relative to
            the working directory). Labels may use ``_`` for spaces.
    """
    width = max(len(label) for label in paths)
    print("[example] outputs:\n" + "\n".join(
        f"  {label.replace('_', ' '):<{width}}  {path}" for label, path in paths.items()),
        flush=True)


def logged_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The trainer's last logged scalars (``callback_metrics``) as plain floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
