"""The ``dsm`` console script: LightningCLI in subclass mode for model and data.

``dsm fit --config examples/configs/demo_dsm.yaml`` pretrains, ``dsm test --config
finetune.yaml`` evaluates; any LightningModule / LightningDataModule is chosen by
``class_path`` (short names such as ``DSMLightningModule`` work for the package's own
classes). Configuration is constructor signatures: every argument of the chosen classes is
settable from YAML or as a flag, and ``--print_config`` writes a complete, re-runnable config.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import dsm_lightning  # noqa: F401  (registers the package's classes for short class_path names)

# Exceptions that mean "the configuration or the input files are wrong": printed as one line
# (plus a hint), not as a traceback. Anything else is a bug and keeps its traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, NotADirectoryError, ValueError)

DEFAULT_TRAINER: dict[str, Any] = {
    "logger": {
        "class_path": "pytorch_lightning.loggers.CSVLogger",
        "init_args": {"save_dir": "runs", "name": "dsm"},
    },
}


def _import_public_classes() -> None:
    """Import the package's modules so jsonargparse can resolve their short class names."""
    for name in ("DSMLightningModule", "FinetuneModule", "RetrievalModule", "VideoDataModule"):
        try:
            getattr(dsm_lightning, name)
        except (ImportError, AttributeError):  # pragma: no cover - partial installs
            pass


class DSMCLI(LightningCLI):
    """LightningCLI with the package's links between data and model arguments."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link values shared by data and model so they are written once.

        ``data.num_classes`` (known once the data source is read) feeds the model's
        ``num_classes`` when the chosen model has that argument.
        """
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> DSMCLI:
    """Build (and by default run) the ``dsm`` CLI.

    Args:
        args: Command-line arguments; ``None`` reads ``sys.argv``.
        run: Run the subcommand (``fit``, ``validate``, ...) after parsing.

    Returns:
        The LightningCLI instance (its ``model``, ``datamodule`` and ``trainer``).
    """
    _import_public_classes()
    return DSMCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=DEFAULT_TRAINER,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "dsm", "description": "dsm-lightning: DSM video SSL pretraining, fine-tuning and retrieval."},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsm`` console script; returns the process exit code."""
    try:
        build_cli(argv)
    except _USER_ERRORS as err:
        if os.environ.get("DSM_DEBUG"):
            raise
        print(f"dsm: error: {type(err).__name__}: {err}", file=sys.stderr)
        print("dsm: (set DSM_DEBUG=1 to see the full traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
