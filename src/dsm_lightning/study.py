"""``dsm study``: pretrain several methods on the same data, then measure scene bias.

The configuration has the style of ``dsm fit`` (see examples/configs/study_synthetic.yaml)::

    seed_everything: 0
    out_dir: outputs/demo
    trainer: {...}            # a `dsm fit` trainer section, shared by every method
    data: {...}               # a `dsm fit` data section (the pretraining data)
    methods:                  # name -> the model and the view builder of one `dsm fit`
      moco: {model: {class_path: MoCoModule, ...}, augment: {class_path: TripletBuilder, ...}}
      dsm_intra: {...}
    splits: {...}             # StudySplits: biased / balanced / swapped split names
    n_clips: 2                # temporal windows averaged per evaluation video
    random_baseline: true     # a random-init encoder of the first method's backbone
    encoders:                 # encoder files scored without pretraining
      theirs: runs/x/encoder.pt            # encoder.pt or a Lightning .ckpt
      mine: {path: mine.pt, backbone: {class_path: my.Net, init_args: {...}}}  # own module

Each method is pretrained exactly as ``dsm fit`` would run its merged configuration (which
is saved as ``<out_dir>/<method>/config.yaml`` and re-runs with ``dsm fit --config``); its
``encoder.pt`` and ``last.ckpt`` go to ``<out_dir>/<method>/``. Then every encoder is
scored by ``dsm_lightning.evaluation.study`` on the evaluation splits of the same data (the
data section with ``task: classify``) and one table is printed and written to
``report.md`` / ``report.json``. With no ``methods``, only ``encoders`` are scored: the
scene-bias report as a tool for any model. Any labelled data works: ``splits`` names the
data's splits; without balanced or swapped splits (``null``) the table keeps the rows it can
compute. Each encoder file is fed clips normalised with its own statistics (``encoder.pt``
``normalization``), whatever the data section's transform uses.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsm_lightning.evaluation.study import (
    StudySplits,
    evaluate_features,
    format_study_table,
    study_features,
)

__all__ = ["run_study", "study_parser", "main"]

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"[study] {message}", flush=True)


def _fit_config(
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


def _pretrain(config: dict[str, Any], out: Path, name: str) -> dict[str, Any]:
    """Run one ``dsm fit`` configuration; return its outputs and wall time."""
    from dsm_lightning.cli import build_cli

    with warnings.catch_warnings():  # the config is given as a dict on purpose
        warnings.filterwarnings("ignore", ".*args parameter is intended to run from within")
        cli = build_cli(config, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    checkpoint = cli.trainer.checkpoint_callback
    ckpt = Path(checkpoint.last_model_path) if checkpoint and checkpoint.last_model_path else (
        out / name / "last.ckpt")
    if not ckpt.is_file():
        cli.trainer.save_checkpoint(str(ckpt))
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
    return {"method": type(cli.model).__name__, "seconds": seconds,
            "steps": cli.trainer.global_step, "checkpoint": str(ckpt),
            "encoder": str(out / name / "encoder.pt"),
            "config": str(out / name / "config.yaml"), "last": logged}


def _eval_datamodule(data: Mapping[str, Any]) -> Any:
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


#: Keys of an ``encoders`` entry given as a mapping.
ENCODER_KEYS = ("path", "backbone", "backbone_kwargs")


def _build_module(spec: Mapping[str, Any]) -> nn.Module:
    """A user's network from ``{"class_path": "pkg.mod.Class", "init_args": {...}}``."""
    import importlib

    path = spec.get("class_path")
    if not isinstance(path, str) or "." not in path or set(spec) - {"class_path", "init_args"}:
        raise ValueError("a backbone module is {class_path: package.module.Class, init_args: "
                         f"{{...}}}}, got {dict(spec)}")
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"backbone class_path {path!r} cannot be imported: {error}") from error
    module = cls(**dict(spec.get("init_args") or {}))
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {path} is a {type(module).__name__}, not an nn.Module")
    return module


class _EncoderSpec:
    """One ``encoders`` entry: a file and, for a user's network, how to build it."""

    def __init__(self, name: str, entry: str | Mapping[str, Any]) -> None:
        entry = {"path": entry} if isinstance(entry, (str, Path)) else dict(entry)
        unknown = set(entry) - set(ENCODER_KEYS)
        if unknown or not entry.get("path"):
            raise ValueError(f"encoders.{name} is a path or {{path, backbone, backbone_kwargs}}, "
                             f"got keys {sorted(entry)}")
        self.name, self.path = name, str(entry["path"])
        self.backbone = entry.get("backbone")
        self.backbone_kwargs = entry.get("backbone_kwargs")
        if self.backbone is not None and not isinstance(self.backbone, (str, Mapping, nn.Module)):
            raise ValueError(f"encoders.{name}.backbone is a registry name, {{class_path, "
                             f"init_args}} or an nn.Module, got {self.backbone!r}")

    def build(self) -> nn.Module | str | None:
        """The backbone argument of ``load_encoder``: a fresh module, a name or None."""
        if isinstance(self.backbone, Mapping):
            return _build_module(self.backbone)
        if isinstance(self.backbone, nn.Module):  # given in Python: a random-init copy of it
            module = copy.deepcopy(self.backbone)
            for layer in module.modules():
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
            return module
        return self.backbone

    def load(self) -> tuple[nn.Module, dict[str, Any]]:
        """``load_encoder`` of the file into the given (or the file's) backbone."""
        from dsm_lightning.models.encoder_io import EncoderLoadError, load_encoder

        try:
            return load_encoder(self.path, backbone=self.build(),
                                backbone_kwargs=self.backbone_kwargs)
        except EncoderLoadError as error:
            if self.backbone is not None or "user module" not in str(error):
                raise
            raise EncoderLoadError(
                f"encoders.{self.name}: {self.path} holds a network that is not in the "
                "registry: give it as {path: ..., backbone: {class_path: package.module.Net, "
                "init_args: {...}}}") from error


def _random_encoder(
    meta: Mapping[str, Any], spec: _EncoderSpec | None, seed: int
) -> nn.Module | None:
    """A random-init copy of the first encoder's backbone (None when it cannot be rebuilt)."""
    from dsm_lightning.models.backbones import as_backbone
    from dsm_lightning.models.registry import create_backbone

    torch.manual_seed(seed)
    if spec is not None and isinstance(spec.backbone, (Mapping, nn.Module)):
        return as_backbone(spec.build())
    name = spec.backbone if spec is not None and isinstance(spec.backbone, str) else (
        meta.get("backbone"))
    if name is None:
        return None  # a user module given without its class: nothing to rebuild
    kwargs = spec.backbone_kwargs if spec is not None and spec.backbone_kwargs is not None else (
        meta.get("backbone_kwargs"))
    return create_backbone(name, **dict(kwargs or {}))


def _renormalize(
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    data_stats: tuple[Sequence[float], Sequence[float]],
    meta: Mapping[str, Any],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``transform``, re-normalised to the encoder's own mean / std when they differ."""
    norm = meta.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    if mean is None or std is None or (
        [float(v) for v in mean] == [float(v) for v in data_stats[0]]
        and [float(v) for v in std] == [float(v) for v in data_stats[1]]):
        return transform

    def apply(batch: dict[str, Any]) -> dict[str, Any]:
        batch = transform(batch)
        video = batch["video"]  # (..., 3, T, H, W)

        def channels(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor([float(v) for v in values], device=video.device).view(3, 1, 1, 1)

        raw = video.float() * channels(data_stats[1]) + channels(data_stats[0])
        return dict(batch, video=((raw - channels(mean)) / channels(std)).to(video.dtype))

    return apply


def _check_splits(splits: StudySplits, available: Sequence[str]) -> None:
    """Every split the study reads must exist in the data.

    Raises:
        ValueError: naming the missing splits and the available ones.
    """
    missing = [name for name in splits.normal() if name not in available]
    if missing:
        raise ValueError(f"splits {missing} are not in the data (available: {list(available)}); "
                         "set `splits` (e.g. balanced_train: null) to the data's split names")


def run_study(
    out_dir: str = "outputs/study",
    trainer: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    methods: dict[str, dict[str, Any]] | None = None,
    splits: StudySplits | None = None,
    n_clips: int = 2,
    random_baseline: bool = True,
    encoders: dict[str, str | dict[str, Any]] | None = None,
    only: list[str] | None = None,
    seed_everything: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain ``methods`` on ``data``, score them (and ``encoders``), write the report.

    Args:
        out_dir: where every method's run, the plots and ``report.{json,md}`` go (relative to
            the working directory).
        trainer: ``dsm fit`` trainer section shared by every method.
        data: ``dsm fit`` data section (class_path + init_args); evaluation uses it with
            ``task="classify"``.
        methods: name -> ``{"model": <model section>, "augment": <view builder section>}``.
        splits: evaluation split names (defaults: the synthetic source's).
        n_clips: temporal windows averaged per evaluation video.
        random_baseline: add a random-init encoder of the first encoder's backbone.
        encoders: name -> an ``encoder.pt`` / ``.ckpt`` path, or ``{"path": ..., "backbone":
            <registry name, {"class_path": "pkg.Net", "init_args": {...}} or an nn.Module>,
            "backbone_kwargs": {...}}`` for a file whose network is not in the registry (a
            user's module); scored without pretraining.
        only: run just these methods (names from ``methods``).
        seed_everything: seed of every pretraining and of the random baseline.
        progress: progress lines / bars for feature extraction.

    Returns:
        The report: ``results`` per encoder, ``pretraining`` runs, ``seconds``, ``table``.

    Raises:
        ValueError: nothing to score, an unknown name in ``only``, a bad method or encoder
            entry, or a split name the data does not have.
    """
    from dsm_lightning.models.encoder_io import load_encoder

    if data is None:
        raise ValueError("the study needs a data section (a `dsm fit` data config)")
    methods = dict(methods or {})
    if only:
        unknown = sorted(set(only) - set(methods))
        if unknown:
            raise ValueError(f"only={unknown} not in methods {sorted(methods)}")
        methods = {name: methods[name] for name in only}
    if not methods and not encoders:
        raise ValueError("nothing to score: give methods to pretrain and/or encoders files")
    specs = {name: _EncoderSpec(name, entry) for name, entry in (encoders or {}).items()}
    splits = splits or StudySplits()
    import pytorch_lightning  # noqa: F401 - sets its logger's level on import; then ours wins

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # the study reports
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    _say("1/4 data")
    eval_dm = _eval_datamodule(data)
    eval_dm.prepare_data()
    eval_dm.setup("test")
    class_names = list(eval_dm.class_names)
    _check_splits(splits, eval_dm.split_names)
    t_data = time.perf_counter() - t0

    runs: dict[str, dict[str, Any]] = {}
    for i, (name, method) in enumerate(methods.items()):
        _say(f"2/4 pretraining {name} ({i + 1}/{len(methods)})")
        config = _fit_config(seed_everything, trainer or {}, data, method, out, name)
        runs[name] = _pretrain(config, out, name)

    _say("3/4 features, probes, retrieval, scene bias")
    loaded: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
    for name, run in runs.items():
        loaded[name] = load_encoder(run["encoder"])
    for name, spec in specs.items():
        loaded[name] = spec.load()
    scored: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
    if random_baseline and loaded:
        first = next(iter(loaded))
        random = _random_encoder(loaded[first][1], specs.get(first), seed_everything)
        if random is not None:
            scored["random"] = (random, loaded[first][1])
    scored.update(loaded)

    def batches_of(split: str) -> Any:
        return eval_dm.clip_dataloader(split, n_clips=n_clips)

    def transform(batch: dict[str, Any]) -> dict[str, Any]:
        return eval_dm.views(batch, "eval")

    data_stats = (eval_dm.clip_spec.mean, eval_dm.clip_spec.std)
    results = {}
    for name, (encoder, meta) in scored.items():
        feats = study_features(encoder, batches_of, splits,
                               _renormalize(transform, data_stats, meta), progress=progress)
        results[name] = evaluate_features(name, feats, splits, class_names, out_dir=out)

    total = time.perf_counter() - t0
    table = format_study_table(results, chance=1.0 / len(class_names))
    labels = {name: run["method"] for name, run in runs.items()}
    labels.update({name: f"{spec.path} ({loaded[name][1].get('method') or 'method unknown'})"
                   for name, spec in specs.items()})
    legend = ", ".join(f"{name} = {cls}" for name, cls in labels.items())
    report = {
        "results": results, "pretraining": runs, "methods": labels,
        "encoders": {name: spec.path for name, spec in specs.items()},
        "seconds": {"data": t_data, "total": total,
                    **{f"pretrain_{m}": r["seconds"] for m, r in runs.items()}},
        "table": table,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    timing = ", ".join(f"{m} {r['seconds']:.0f} s" for m, r in runs.items())
    (out / "report.md").write_text(
        f"# dsm-lightning scene-bias study\n\n```\n{table}\n```\n\n{legend}\n"
        + (f"\npretraining wall time: {timing}\n" if timing else ""))
    _say("4/4 results\n")
    print(table)
    if legend:
        print(f"\ncolumns: {legend}" + (", random = random init" if "random" in scored else ""))
    print(f"\n[study] total {total / 60:.1f} min (data {t_data:.0f}s"
          + "".join(f", pretrain {m} {r['seconds']:.0f}s" for m, r in runs.items()) + ")")
    print(f"[study] report: {out / 'report.md'}, {out / 'report.json'}")
    print(f"[study] per-class plots: {out}/scene_bias_*.png")
    for name, run in runs.items():
        print(f"[study] {name}: {run['encoder']}, {run['checkpoint']}, {run['config']}")
    return report


def study_parser() -> Any:
    """The ``dsm study`` argument parser (jsonargparse; ``--config`` takes a YAML file)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="dsm study", exit_on_error=False,
        description="Pretrain several methods on the same data and measure their scene bias "
                    "(balanced / biased linear probes on normal and static clips, retrieval, "
                    "per-class report). See examples/configs/study_synthetic.yaml.")
    parser.add_argument("--config", action=ActionConfigFile, help="a study YAML file")
    parser.add_function_arguments(run_study, skip={"progress"})
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``dsm study`` arguments and run the study."""
    parser = study_parser()
    cfg = parser.parse_args(list(argv) if argv is not None else None)
    init = cfg  # not instantiated: an encoder's {class_path, init_args} is built once per use
    kwargs = {k: v for k, v in init.as_dict().items() if k != "config"}
    if isinstance(kwargs.get("splits"), Mapping):
        kwargs["splits"] = StudySplits(**kwargs["splits"])
    from dsm_lightning.smoke import smoke_from_env

    smoke_from_env(kwargs)  # DSM_SMOKE=1: the smoke overlays (dsm_lightning.smoke), same paths
    return run_study(**kwargs)
