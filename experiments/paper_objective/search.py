"""Why does the paper's DSM objective not learn motion on the synthetic study, and what fixes it?

Each run pretrains one configuration of the paper's objective (``DSMLightningModule`` or a
variant of ``paper_objective_variants.py``) on the demo study's data (8 motion classes on 8
scenes, 64 px, 8 frames stride 4, tiny3d width 16, batch 16) and scores it with the study
protocol (``dsm_lightning.study.run_study``). Per run it records the final training
hard-negative accuracy and logits, the f-vs-f / f-vs-g diagnostic of
``ObjectiveDiagnostic`` and the balanced-probe contrasted accuracy, in ``results.json``
next to this file (entries of runs not re-run are kept). docs/method-fidelity.md tabulates
every run.

    python experiments/paper_objective/search.py --list
    python experiments/paper_objective/search.py --only a1_paper_shift --epochs 12
    python experiments/paper_objective/search.py --fast      # seconds: a smoke test

Run one configuration at a time on a shared machine (each is a full training).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STUDY_CONFIG = ROOT / "examples" / "configs" / "study_synthetic.yaml"
RESULTS = HERE / "results.json"

sys.path.insert(0, str(HERE))  # the variants and the diagnostic are imported by class_path

from dsm_lightning import DSMLightningModule, TripletBuilder  # noqa: E402

#: the shared synthetic-scale model settings (the study's backbone; batch size is the data's)
BACKBONE = {"backbone": "tiny3d", "backbone_kwargs": {"width": 16}}
FRAME_NEGATIVES = {"negative_kinds": ["reverse", "shuffle", "static"], "negative_mode": "sample"}


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Tuples -> lists (YAML / jsonargparse friendly)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


PAPER_MODEL = {**_plain(DSMLightningModule.paper_settings()), **BACKBONE}
PAPER_AUGMENT = _plain(TripletBuilder.paper_settings())
#: the study's shared model settings (``*common`` of study_synthetic.yaml: AdamW lr 1e-3,
#: EMA 0.99, tau 0.1, queue 1024 without the own video's keys, MLP head)
STUDY_MODEL = {"proj_hidden_dim": 128, "temperature": 0.1, "queue_size": 1024,
               "momentum": 0.99, "optimizer": "adamw", "lr": 0.001, "weight_decay": 1e-4,
               "exclude_same_video": True, "lr_schedule": "cosine", "lr_milestones": []}


def _run(description: str, model: dict[str, Any] | None = None,
         augment: dict[str, Any] | None = None, class_path: str = "DSMLightningModule",
         transform: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = {**PAPER_MODEL, **(model or {})}
    if class_path == "MoCoModule":  # the reference without the hard-negative column
        settings.pop("hard_negative_weight")
    return {"description": description, "class_path": class_path, "model": settings,
            "augment": {**PAPER_AUGMENT, **(augment or {})}, "transform": transform}


#: name -> run. Every run changes the paper's settings (a1) in the way its description says.
RUNS: dict[str, dict[str, Any]] = {
    "a1_paper_shift": _run(
        "paper settings: SGD lr 0.003 (momentum 0.9), EMA 0.999, queue 3569, tau 0.07, the "
        "paper warp (one field per batch), weight 1, temporal-shift negative"),
    "a2_paper_frames": _run(
        "a1 with frame-level negatives (one of reverse/shuffle/static per clip)",
        augment=FRAME_NEGATIVES),
    "m0_moco_reference": _run(
        "reference: MoCo (no hard-negative column) with a2's settings; the views still carry a "
        "negative, used only by the diagnostic", augment=FRAME_NEGATIVES,
        class_path="MoCoModule"),
    "b1_ema_099": _run("a2, EMA momentum 0.99", {"momentum": 0.99}, FRAME_NEGATIVES),
    "b3_ema_0": _run("a2, EMA momentum 0 (g = f after every step)", {"momentum": 0.0},
                     FRAME_NEGATIVES),
    "c1_joint_pass": _run("a2, negatives in the query's forward pass (shared BN statistics)",
                          augment=FRAME_NEGATIVES,
                          class_path="paper_objective_variants.JointPassDSM"),
    "g1_queue_144": _run(
        "a2, queue 144 = the public UCF101 queue-to-dataset ratio (3569 / 9537) at 384 "
        "training videos: the queue no longer holds ~9 stale keys of the query's own video",
        {"queue_size": 144}, FRAME_NEGATIVES),
    "g2_masked": _run("a2 with the library's queue mask (exclude_same_video=True), queue 3569",
                      {"exclude_same_video": True}, FRAME_NEGATIVES),
    "s0_study_settings": _run(
        "the paper's objective and disturbances with the study's shared settings (AdamW lr "
        "1e-3, EMA 0.99, tau 0.1, queue 1024 without the own video's keys, MLP head)",
        STUDY_MODEL, FRAME_NEGATIVES),
    "s6_ema_09": _run("s0 with EMA 0.9", {**STUDY_MODEL, "momentum": 0.9}, FRAME_NEGATIVES),
    "s1_queue_128": _run("s0 with a queue of 128 keys (16 of the query's scene instead of "
                         "128)", {**STUDY_MODEL, "queue_size": 128}, FRAME_NEGATIVES),
    "s2_field_per_clip": _run("s0 with one warp field per clip instead of per batch",
                              STUDY_MODEL, {**FRAME_NEGATIVES, "field_scope": "clip"}),
    "s3_eval_bn_negative": _run("s0, BatchNorm in eval mode for the negatives' pass",
                                STUDY_MODEL, FRAME_NEGATIVES,
                                class_path="paper_objective_variants.EvalBNNegativeDSM"),
    "s4_tau_02": _run("s0 with temperature 0.2", {**STUDY_MODEL, "temperature": 0.2},
                      FRAME_NEGATIVES),
    "s5_weight_10": _run("s0, hard-negative weight 10 (not the paper's loss)",
                         {**STUDY_MODEL, "hard_negative_weight": 10.0}, FRAME_NEGATIVES),
}


def study_settings(fast: bool) -> dict[str, Any]:
    """The demo study's trainer / data / splits, shrunk to seconds with ``fast``."""
    cfg = yaml.safe_load(STUDY_CONFIG.read_text())
    trainer = dict(cfg["trainer"], callbacks=[], enable_progress_bar=False)
    data = copy.deepcopy(cfg["data"])
    if fast:
        src = data["init_args"]["source"]["init_args"]
        src.update(num_classes=4, videos_per_class=4, eval_videos_per_class=2, num_frames=16,
                   size=32)
        data["init_args"].update(num_frames=4, stride=2, frame_size=32, crop_size=32,
                                 batch_size=4)
    return {"trainer": trainer, "data": data, "splits": cfg["splits"],
            "n_clips": 1 if fast else cfg["n_clips"], "seed": cfg["seed_everything"]}


def method_config(run: dict[str, Any], fast: bool) -> dict[str, Any]:
    model = copy.deepcopy(run["model"])
    if fast:
        model.update(backbone_kwargs={"width": 4}, queue_size=32)
    return {"model": {"class_path": run["class_path"], "init_args": model},
            "augment": {"class_path": "TripletBuilder", "init_args": run["augment"]}}


def run_one(name: str, epochs: int, out: Path, fast: bool) -> dict[str, Any]:
    """Pretrain and score one run; returns its figures."""
    from dsm_lightning.evaluation.study import StudySplits
    from dsm_lightning.study import run_study

    run = RUNS[name]
    settings = study_settings(fast)
    trainer = dict(settings["trainer"], max_epochs=epochs)
    diag = out / name / "diagnostic.json"
    trainer["callbacks"] = [{"class_path": "paper_objective_variants.ObjectiveDiagnostic",
                             "init_args": {"path": str(diag), "batches": 1 if fast else 4}}]
    data = copy.deepcopy(settings["data"])
    if run["transform"] is not None:
        data["init_args"]["transform"] = {"class_path": "ClipTransform",
                                          "init_args": run["transform"]}
    start = time.perf_counter()
    report = run_study(out_dir=str(out / name), trainer=trainer, data=data,
                       methods={name: method_config(run, fast)},
                       splits=StudySplits(**settings["splits"]), n_clips=settings["n_clips"],
                       random_baseline=False, seed_everything=settings["seed"],
                       progress=False)
    last = report["pretraining"][name]["last"]
    scores = report["results"][name]
    return {
        "description": run["description"], "class_path": run["class_path"],
        "epochs": epochs, "fast": fast,
        "hn_acc": last.get("train/hn_acc_epoch"),
        "pos_logit": last.get("train/pos_logit_epoch"),
        "neg_logit": last.get("train/neg_logit_epoch"),
        "queue_logit": last.get("train/queue_logit_epoch"),
        "diagnostic": json.loads(diag.read_text()) if diag.is_file() else None,
        "contrasted": scores.get("balanced_probe/contrasted"),
        "balanced_top1": scores.get("balanced_probe/test"),
        "balanced_static_top1": scores.get("balanced_probe/test_static"),
        "pretrain_seconds": report["pretraining"][name]["seconds"],
        "total_seconds": time.perf_counter() - start,
        "command": (f"python experiments/paper_objective/search.py --only {name} "
                    f"--epochs {epochs}"),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cos(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per run: setting -> hard-negative accuracy, logits, diagnostic, contrasted."""
    lines = [
        "| run | setting | hn_acc (train) | q.k+ / q.n (train) | q.g(k+) / q.f(k+) / q.f(n) "
        "| hn_acc f-vs-g / f-vs-f | contrasted | pretrain s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        d = r.get("diagnostic") or {}
        lines.append(
            f"| `{name}` | {r['description']} | {_pct(r['hn_acc'])} | "
            f"{_cos(r['pos_logit'])} / {_cos(r['neg_logit'])} | "
            f"{_cos(d.get('eval/q_g_pos'))} / {_cos(d.get('eval/q_f_pos'))} / "
            f"{_cos(d.get('eval/q_f_neg'))} | {_pct(d.get('eval/hn_acc_g'))} / "
            f"{_pct(d.get('eval/hn_acc_f'))} | **{_pct(r['contrasted'])}** | "
            f"{r['pretrain_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="run names (default: all)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fast", action="store_true",
                        help="tiny data and model, 1 epoch, first run only; results not saved "
                             "unless --results is given")
    parser.add_argument("--out", default=None, help="run outputs (default: a temp dir)")
    parser.add_argument("--results", default=None, help=f"results JSON (default: {RESULTS})")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    parser.add_argument("--table", action="store_true",
                        help="print the results file as the markdown table of the docs and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, run in RUNS.items():
            print(f"{name:24s} {run['description']}")
        return {}
    if args.table:
        results_path = Path(args.results) if args.results else RESULTS
        print(markdown_table(json.loads(results_path.read_text())))
        return {}
    names = args.only or (list(RUNS)[:1] if args.fast else list(RUNS))
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; --list shows them")
    epochs = 1 if args.fast else args.epochs
    results_path = Path(args.results) if args.results else (None if args.fast else RESULTS)
    results = json.loads(results_path.read_text()) if results_path and results_path.is_file() \
        else {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for name in names:
            figures = run_one(name, epochs, out, args.fast)
            results[name] = figures
            print(json.dumps({name: figures}, indent=2), flush=True)
            if results_path:  # after every run: a long search keeps what it measured
                results_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
