"""The pretraining runs of a study: one ``dsm fit`` configuration per method, run (or reused),
and the evaluation data module."""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RUN_RECORD", "eval_datamodule", "fit_config", "pretrain"]


def fit_config(
    seed: int, trainer: Mapping[str, Any], data: Mapping[str, Any], method: Mapping[str, Any],
    out: Path, name: str,
) -> dict[str, Any]:
    """The ``dsm fit`` configuration of one method (its own logger, encoder path, checkpoint)."""
    unknown = set(method) - {"model", "augment"}
    if unknown or "model" not in method:
        raise ValueError(f"methods.{name} takes 'model' (required) and 'augment', got "
                         f"{sorted(method)}")
    data_cfg = copy.deepcopy(dict(data))
    if method.get("augment") is not None:
        data_cfg.setdefault("init_args", {})["augment"] = copy.deepcopy(method["augment"])
    trainer_cfg = copy.deepcopy(dict(trainer))
    trainer_cfg["logger"] = {"class_path": "pytorch_lightning.loggers.CSVLogger",
                             "init_args": {"save_dir": str(out), "name": name, "version": ""}}
    trainer_cfg["default_root_dir"] = str(out / name)
    callbacks = list(trainer_cfg.get("callbacks") or [])
    callbacks.append({"class_path": "dsm_lightning.callbacks.export.EncoderExport",
                      "init_args": {"path": str(out / name / "encoder.pt"), "report": False}})
    trainer_cfg["callbacks"] = callbacks
    return {"seed_everything": seed, "trainer": trainer_cfg,
            "model": copy.deepcopy(dict(method["model"])), "data": data_cfg}


#: file next to a method's run recording the ``dsm fit`` configuration it was run with
RUN_RECORD = "study_run.json"


def _canonical(config: Mapping[str, Any]) -> Any:
    """``config`` as plain JSON values (what a run record stores and compares)."""
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def pretrain(config: dict[str, Any], out: Path, name: str, reuse: bool = True) -> dict[str, Any]:
    """Run one ``dsm fit`` configuration; return its outputs and wall time.

    With ``reuse``, a finished run of exactly this configuration in ``out / name`` (its
    record ``study_run.json`` and its ``encoder.pt`` present) is read back instead of run
    again: an interrupted study resumes at the first method not done, and a study whose
    scoring changed re-scores the same encoders.

    Returns:
        ``{"method", "seconds", "steps", "checkpoint", "encoder", "config", "last",
        "reused"}``.
    """
    record, written = out / name / RUN_RECORD, _canonical(config)
    if reuse and record.is_file() and (out / name / "encoder.pt").is_file():
        stored = json.loads(record.read_text())
        if stored.get("config") == written:
            return {**stored["run"], "reused": True}
    from dsm_lightning.cli import build_cli

    with warnings.catch_warnings():  # the config is given as a dict on purpose
        warnings.filterwarnings("ignore", ".*args parameter is intended to run from within")
        cli = build_cli(copy.deepcopy(config), run=False)  # the parser edits what it is given
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    checkpoint = cli.trainer.checkpoint_callback
    ckpt = Path(checkpoint.last_model_path) if checkpoint and checkpoint.last_model_path else (
        out / name / "last.ckpt")
    if not ckpt.is_file():
        cli.trainer.save_checkpoint(str(ckpt))
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
    run = {"method": type(cli.model).__name__, "seconds": seconds,
           "steps": cli.trainer.global_step, "checkpoint": str(ckpt),
           "encoder": str(out / name / "encoder.pt"),
           "config": str(out / name / "config.yaml"), "last": logged}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"config": written, "run": run}, indent=1) + "\n")
    return {**run, "reused": False}


def eval_datamodule(data: Mapping[str, Any]) -> Any:
    """The data section as a classification DataModule (no view builder)."""
    import pytorch_lightning as pl
    from jsonargparse import ArgumentParser

    from dsm_lightning.cli import import_public_classes

    import_public_classes()
    cfg = copy.deepcopy(dict(data))
    init = cfg.setdefault("init_args", {})
    init["task"] = "classify"
    init.pop("augment", None)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": cfg})).data
