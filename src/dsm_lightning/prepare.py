"""``dsm prepare``: pack a data section's videos into LitData shards for ``source="shards"``.

Takes the ``data`` section of a ``dsm fit`` configuration (any source: a registered name or
a ``VideoSource`` class, with its location arguments and ``val_split``), reads every split
as ``VideoDataModule`` would (missing files and bad annotation lines dropped under
``on_error``, the validation hold-out applied), and writes each video's encoded bytes,
label and metadata to ``--output`` (see ``dsm_lightning.data.shards``)::

    dsm prepare --config examples/configs/pretrain_ucf101_r3d18.yaml --output /data/ucf101_shards
    dsm prepare --data VideoDataModule --data.source folder --data.root /data/videos \\
        --output /data/videos_shards

Then train with ``data.init_args.source: shards`` and ``root: /data/ucf101_shards`` (or the
folder copied to ``s3://...``), ``val_split: 0``. The other sections of a fit configuration
(trainer, model, ...) are accepted and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dsm_lightning.data.datamodule import VideoDataModule
from dsm_lightning.data.shards import write_shards
from dsm_lightning.data.sources import SourceSplits, VideoSource, create_source, drop_missing

__all__ = ["main", "prepare_parser", "prepare_shards"]

log = logging.getLogger(__name__)

#: Sections of a ``dsm fit`` configuration that ``dsm prepare`` accepts and ignores.
IGNORED_SECTIONS = ("trainer", "model", "seed_everything", "ckpt_path", "optimizer",
                    "lr_scheduler")


def _splits_of(data: VideoDataModule | VideoSource | str, **source_kwargs: Any
               ) -> tuple[SourceSplits, str, str]:
    """(splits, on_error, description) of a data module, a source or a source name."""
    if isinstance(data, VideoDataModule):
        if not data.source.records_are_files:
            raise ValueError(f"the data section already streams ({type(data.source).__name__}); "
                             "give the original source")
        data.prepare_data()
        data.setup()
        splits = {name: data.records(name) for name in data.split_names}
        return (SourceSplits(splits, data.class_names, list(data.skipped_at_setup)),
                data.hparams.on_error, f"{data.source!r}")
    source = create_source(data, **source_kwargs) if isinstance(data, str) else data
    if source_kwargs and not isinstance(data, str):
        raise ValueError("source arguments are given with a VideoSource instance: pass them to "
                         "its constructor")
    if not source.records_are_files:
        raise ValueError(f"{type(source).__name__} already streams; give the original source")
    source.prepare()
    return drop_missing(source.read()), "skip", f"{source!r}"


def prepare_shards(
    data: VideoDataModule | VideoSource | str,
    output: str,
    splits: Sequence[str] | None = None,
    chunk_bytes: str | int = "64MB",
    seed: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **source_kwargs: Any,
) -> dict[str, Any]:
    """Write the shards of every split of ``data`` (or of ``splits``) to ``output``.

    Args:
        data: A ``VideoDataModule`` (its source, location arguments, ``val_split`` and
            ``on_error`` apply), a ``VideoSource`` or a registered source name.
        output: New local folder.
        splits: Split names (None = every non-empty split).
        chunk_bytes: Target chunk size (``"64MB"``: a few dozen to hundreds of videos).
        seed: Seed of the sample order (None = the data module's seed, or 0).
        overwrite: Replace an existing ``output``.
        progress: Progress bars / lines.
        **source_kwargs: Constructor arguments of the source named by ``data``.

    Returns:
        The manifest written (class names, records per split, skipped videos) plus the
        ``seconds`` spent per split.

    Raises:
        ValueError: Invalid argument, ``output`` exists, a split is unknown, or ``data``
            already streams.
        ImportError: LitData is not installed.
    """
    source, on_error, description = _splits_of(data, **source_kwargs)
    if seed is None:
        seed = int(data.hparams.seed) if isinstance(data, VideoDataModule) else 0
    return write_shards(source, output, splits=splits, chunk_bytes=chunk_bytes, seed=seed,
                        on_error=on_error, overwrite=overwrite, progress=progress,
                        description=description)


def prepare_parser() -> Any:
    """The ``dsm prepare`` argument parser (jsonargparse; ``--config`` takes a YAML file)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from dsm_lightning.cli import import_public_classes

    import_public_classes()
    parser = ArgumentParser(
        prog="dsm prepare", exit_on_error=False,
        description="Pack the videos of a data section (any source) into LitData shards "
                    "for source=shards: encoded bytes + label + metadata per video. A dsm "
                    "fit config works as is (its other sections are ignored).")
    parser.add_argument("--config", action=ActionConfigFile, help="a dsm fit YAML file")
    parser.add_subclass_arguments(VideoDataModule, "data", required=True,
                                  help="the data section to pack")
    parser.add_argument("--output", type=str, required=True, help="new local folder")
    parser.add_argument("--splits", type=list[str] | None, default=None,
                        help="split names (default: every non-empty split)")
    parser.add_argument("--chunk_bytes", type=str, default="64MB", help="target chunk size")
    parser.add_argument("--shard_seed", type=int | None, default=None,
                        help="seed of the sample order (default: data seed)")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace --output")
    for name in IGNORED_SECTIONS:
        parser.add_argument(f"--{name}", type=Any, default=None,
                            help="ignored (a dsm fit configuration works as is)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``dsm prepare`` arguments and write the shards; prints a summary."""
    parser = prepare_parser()
    cfg = parser.parse_args(list(argv) if argv is not None else None)
    data = parser.instantiate_classes(cfg).data
    manifest = prepare_shards(data, cfg.output, splits=cfg.splits, chunk_bytes=cfg.chunk_bytes,
                              seed=cfg.shard_seed, overwrite=cfg.overwrite)
    for name, split in manifest["splits"].items():
        print(f"[prepare] {name}: {len(split['records'])} videos "
              f"({manifest['seconds'][name]:.1f}s)", flush=True)
    print(f"[prepare] {len(manifest['skipped'])} skipped; shards in {cfg.output} "
          f"(train with data.init_args.source: shards, root: {cfg.output}, val_split: 0)",
          flush=True)
    return manifest
