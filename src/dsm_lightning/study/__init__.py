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
    out_of_context: {backgrounds: [other_class, stripes], masks: estimated}
    seeds: [0, 1, 2]          # several seeds: mean and spread of every cell
    sources:                  # several sources (a suite): each replaces data's source
      synthetic: {class_path: SyntheticSource, init_args: {...}}
      camera: {class_path: CameraSyntheticSource, init_args: {...}}

Each method is pretrained exactly as ``dsm fit`` would run its merged configuration (which
is saved as ``<run>/<method>/config.yaml`` and re-runs with ``dsm fit --config``); its
``encoder.pt`` and ``last.ckpt`` go to ``<run>/<method>/``, and a finished run of the same
configuration is read back instead of run again (``reuse``). Then every encoder is scored
by ``dsm_lightning.evaluation.study`` on the evaluation splits of the same data (the data
section with ``task: classify``), including the out-of-context tests synthesized from the
in-distribution test split (``evaluation.synthesized``), and one table is printed and
written to ``report.md`` / ``report.json``. With no ``methods``, only ``encoders`` are
scored: the scene-bias report as a tool for any model. Any labelled data works: ``splits``
names the data's splits; without balanced or swapped splits (``null``) the table keeps the
rows it can compute, the synthesized ones included. Each encoder file is fed clips
normalised with its own statistics (``encoder.pt`` ``normalization``).

Several ``seeds`` run the whole study once per seed (``<out_dir>/seed<k>/``: the seed of
every pretraining, of the data module and of the synthesis) and report the mean and spread
of each cell, a gap being a finding only where it exceeds the spreads
(``<out_dir>/report.md``). Several ``sources`` run that for each source
(``<out_dir>/<source>/``) and add the suite's verdicts (``<out_dir>/report.md``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from dsm_lightning.evaluation.study import StudySplits, format_study_table
from dsm_lightning.evaluation.synthesized import OutOfContextTests
from dsm_lightning.study.encoders import EncoderSpec, random_encoder
from dsm_lightning.study.reports import (
    aggregate_report,
    run_report,
    suite_report,
    write_report,
)
from dsm_lightning.study.runs import eval_datamodule, fit_config, pretrain
from dsm_lightning.study.scoring import score_encoders

__all__ = ["main", "run_study", "study_parser"]

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"[study] {message}", flush=True)


def _check_splits(splits: StudySplits, available: Sequence[str]) -> None:
    """Every split the study reads must exist in the data.

    Raises:
        ValueError: naming the missing splits and the available ones.
    """
    missing = [name for name in splits.normal() if name not in available]
    if missing:
        raise ValueError(f"splits {missing} are not in the data (available: {list(available)}); "
                         "set `splits` (e.g. balanced_train: null) to the data's split names")


def _with(data: Mapping[str, Any], seed: int, source: Any | None) -> dict[str, Any]:
    """The data section of one run: its seed and, for a suite, its source."""
    out = copy.deepcopy(dict(data))
    init = out.setdefault("init_args", {})
    init["seed"] = seed
    if source is not None:
        init["source"] = copy.deepcopy(source)
    return out


def _run_one(out: Path, trainer: Mapping[str, Any], data: Mapping[str, Any],
             methods: Mapping[str, Mapping[str, Any]], specs: Mapping[str, EncoderSpec],
             splits: StudySplits, n_clips: int, random_baseline: bool, seed: int,
             tests: OutOfContextTests | None, reuse: bool, progress: bool) -> dict[str, Any]:
    """One study (one data section, one seed): pretrain, score, write the report."""
    from dsm_lightning.models.encoder_io import load_encoder

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _say(f"1/4 data ({out})")
    eval_dm = eval_datamodule(data)
    eval_dm.prepare_data()
    eval_dm.setup("test")
    class_names = list(eval_dm.class_names)
    _check_splits(splits, eval_dm.split_names)
    t_data = time.perf_counter() - t0

    runs: dict[str, dict[str, Any]] = {}
    for i, (name, method) in enumerate(methods.items()):
        _say(f"2/4 pretraining {name} ({i + 1}/{len(methods)})")
        runs[name] = pretrain(fit_config(seed, trainer, data, method, out, name), out, name,
                              reuse=reuse)
        if runs[name]["reused"]:
            _say(f"    {name}: a finished run of the same configuration, read back")

    _say("3/4 features, probes, synthesized tests, retrieval, scene bias")
    loaded: dict[str, tuple[nn.Module, dict[str, Any]]] = {
        name: load_encoder(run["encoder"]) for name, run in runs.items()}
    loaded.update({name: spec.load() for name, spec in specs.items()})
    scored: dict[str, tuple[nn.Module, dict[str, Any]]] = {}
    if random_baseline and loaded:
        first = next(iter(loaded))
        random = random_encoder(loaded[first][1], specs.get(first), seed)
        if random is not None:
            scored["random"] = (random, loaded[first][1])
    scored.update(loaded)
    results, notes = score_encoders(eval_dm, scored, splits, n_clips, out, tests, seed,
                                    progress)

    labels = {name: run["method"] for name, run in runs.items()}
    labels.update({name: f"{spec.path} ({loaded[name][1].get('method') or 'method unknown'})"
                   for name, spec in specs.items()})
    legend = ", ".join(f"{name} = {cls}" for name, cls in labels.items())
    seconds = {name: run["seconds"] for name, run in runs.items()}
    chance = 1.0 / len(class_names)
    report = {"results": results, "pretraining": runs, "methods": labels, "notes": notes,
              "encoders": {name: spec.path for name, spec in specs.items()}, "seed": seed,
              "seconds": {"data": t_data, "total": time.perf_counter() - t0,
                          **{f"pretrain_{m}": s for m, s in seconds.items()}},
              "table": format_study_table(results, chance=chance)}
    write_report(out, run_report(results, chance, legend, notes, seconds), report)
    _say("4/4 results\n")
    print(report["table"])
    if legend:
        print(f"\ncolumns: {legend}" + (", random = random init" if "random" in scored else ""))
    print(f"\n[study] {out}: {report['seconds']['total'] / 60:.1f} min; report "
          f"{out / 'report.md'}; per-class plots {out}/scene_bias_*.png")
    return report


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
    seeds: list[int] | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
    out_of_context: OutOfContextTests | None = None,
    reuse: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain ``methods`` on ``data``, score them (and ``encoders``), write the reports.

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
        seed_everything: the seed of a single-seed study (``seeds`` not given).
        seeds: several seeds: the study runs once per seed (pretraining, data module and
            synthesis seeds) and reports the mean and spread of each cell.
        sources: name -> a source section (``{class_path, init_args}``) replacing the data
            section's ``source``: the study runs on each (a suite) and adds the verdicts.
        out_of_context: the synthesized tests; None = the defaults (``OutOfContextTests``),
            ``{backgrounds: []}`` = none.
        reuse: read back a finished pretraining run of the same configuration.
        progress: progress lines / bars for feature extraction.

    Returns:
        The report: one run's (``results``, ``pretraining``, ``seconds``, ``table``), or with
        several seeds / sources ``{"runs": {...}, "aggregate": ...}``.

    Raises:
        ValueError: nothing to score, an unknown name in ``only``, a bad method or encoder
            entry, or a split name the data does not have.
    """
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
    for name, method in methods.items():  # every method checked before any pretraining
        fit_config(0, trainer or {}, data, method, Path(out_dir), name)
    specs = {name: EncoderSpec(name, entry) for name, entry in (encoders or {}).items()}
    splits = splits or StudySplits()
    tests = out_of_context if out_of_context is not None else OutOfContextTests()
    seed_list = list(seeds) if seeds else [seed_everything]
    import pytorch_lightning  # noqa: F401 - sets its logger's level on import; then ours wins

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # the study reports
    out = Path(out_dir).resolve()
    suite = {"": None} if not sources else dict(sources)
    per_source_runs: dict[str, dict[int, dict[str, Any]]] = {}
    for source_name, source in suite.items():
        base = out / source_name if source_name else out
        per_source_runs[source_name] = {}
        for seed in seed_list:
            run_dir = base / f"seed{seed}" if len(seed_list) > 1 else base
            per_source_runs[source_name][seed] = _run_one(
                run_dir, trainer or {}, _with(data, seed, source), methods, specs, splits,
                n_clips, random_baseline, seed, tests, reuse, progress)
    if len(seed_list) == 1 and not sources:
        return per_source_runs[""][seed_list[0]]
    aggregates = {}
    for source_name, runs in per_source_runs.items():
        title = f"dsm-lightning scene-bias study{': ' + source_name if source_name else ''}"
        markdown, cells = aggregate_report([r["results"] for r in runs.values()], seed_list,
                                           title)
        aggregates[source_name] = cells
        write_report(out / source_name if source_name else out, markdown,
                     {"seeds": seed_list, "cells": cells,
                      "runs": {s: str(r.get("table")) for s, r in runs.items()}})
        print("\n" + markdown)
    if sources:
        markdown = suite_report(aggregates, seed_list)
        write_report(out, markdown, {"seeds": seed_list, "sources": list(sources),
                                     "cells": aggregates})
        print("\n" + markdown)
    print(f"[study] reports: {out / 'report.md'}")
    return {"runs": per_source_runs, "aggregate": aggregates,
            "out_of_context": asdict(tests)}


def study_parser() -> Any:
    """The ``dsm study`` argument parser (jsonargparse; ``--config`` takes a YAML file)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="dsm study", exit_on_error=False,
        description="Pretrain several methods on the same data and measure their scene bias "
                    "(balanced / biased linear probes on normal and static clips, out-of-"
                    "context tests synthesized from the test split, retrieval, per-class "
                    "report), over seeds and sources. See examples/configs/study_synthetic.yaml.")
    parser.add_argument("--config", action=ActionConfigFile, help="a study YAML file")
    parser.add_function_arguments(run_study, skip={"progress"})
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``dsm study`` arguments and run the study."""
    parser = study_parser()
    cfg = parser.parse_args(list(argv) if argv is not None else None)
    # not instantiated: an encoder's {class_path, init_args} is built once per use
    kwargs = {k: v for k, v in cfg.as_dict().items() if k != "config"}
    if isinstance(kwargs.get("splits"), Mapping):
        kwargs["splits"] = StudySplits(**kwargs["splits"])
    if isinstance(kwargs.get("out_of_context"), Mapping):
        kwargs["out_of_context"] = OutOfContextTests(**kwargs["out_of_context"])
    from dsm_lightning.smoke import smoke_from_env

    smoke_from_env(kwargs)  # DSM_SMOKE=1: the smoke overlays (dsm_lightning.smoke), same paths
    return run_study(**kwargs)
