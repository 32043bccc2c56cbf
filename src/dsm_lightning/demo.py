"""``make demo``: the whole DSM-vs-MoCo study on the embedded synthetic source, one command.

Steps (method.md "Measuring the effect"):

1. generate the synthetic scene-biased dataset (class = motion, scene tied to class 90%);
2. pretrain DSM and the MoCo baseline with the same backbone, data and number of epochs;
3. for each encoder (and a random-init one as the floor), on frozen features:
   - a linear probe trained on the scene-*biased* labels, tested in distribution, on the
     swapped-scene set and on static clips;
   - a linear probe trained on the scene-*balanced* split (motion is the only cue), tested
     on balanced normal and static clips: top-1 and contrasted accuracy (the discriminating
     protocol);
   - retrieval recall@1/5/10 (balanced queries and scene-swapped queries);
   - the scene-bias probe (per-class normal vs static, JSON + PNG);
4. print one comparison table and write ``report.json`` / ``report.md`` next to the
   checkpoints, encoders and plots.

Every number printed is measured by the run. ``python -m dsm_lightning.demo --help`` lists
the settings; ``--fast`` is a seconds-long smoke run used by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

METHODS = ("dsm", "moco")


@dataclass
class DemoConfig:
    """Settings of the demo study; every field is a ``--flag`` of the demo command."""

    out_dir: str = "outputs/demo"
    cache_dir: str | None = None
    seed: int = 0
    # data
    synthetic_classes: int = 8
    synthetic_videos: int = 48
    synthetic_eval_videos: int = 16
    synthetic_frames: int = 48
    synthetic_size: int = 64
    bias: float = 0.9
    num_frames: int = 8
    stride: int = 4
    crop_size: int = 64
    batch_size: int = 16
    num_workers: int = 1
    # model and optimisation
    backbone: str = "tiny3d"
    width: int = 16
    epochs: int = 30
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    queue_size: int = 1024
    temperature: float = 0.1
    momentum: float = 0.99
    proj_hidden_dim: int | None = 128
    # DSM disturbances. The synthetic motions are constant over a video, so a temporally
    # shifted clip has the *same* motion as the anchor: "shift" is a good negative on real
    # footage (the public code's default) but not here; frame-level kinds are used instead,
    # one of each per clip, contrasted in an online intra-video term (see
    # DSMLightningModule's negative_encoder="online") weighted by hard_negative_weight.
    negative_kinds: tuple[str, ...] = ("reverse", "shuffle", "static")
    hard_negative_weight: float = 10.0
    negative_encoder: str = "online"
    negative_mode: str = "all"
    spatial_kinds: tuple[str, ...] = ("tps", "points")
    tps_jitter: float = 0.1
    crop_scale: tuple[float, float] = (0.5, 1.0)
    # The synthetic classes are direction-sensitive (left vs right, clockwise vs not), as in
    # Something-Something: a horizontal flip changes the label, so it is off for both methods.
    flip_prob: float = 0.0
    # evaluation
    eval_clips: int = 2
    methods: tuple[str, ...] = METHODS
    random_baseline: bool = True
    fast: bool = False

    def apply_fast(self) -> None:
        """Shrink everything to a smoke run of a few seconds (used by the tests)."""
        self.synthetic_classes = 4
        self.synthetic_videos = 4
        self.synthetic_eval_videos = 2
        self.synthetic_frames = 16
        self.synthetic_size = 32
        self.num_frames = 4
        self.stride = 2
        self.crop_size = 32
        self.batch_size = 4
        self.num_workers = 0
        self.width = 4
        self.epochs = 1
        self.queue_size = 32
        self.eval_clips = 1


def demo_datamodule(cfg: DemoConfig, task: str, augment: Any = None):
    """The synthetic-source ``VideoDataModule`` of the demo settings ``cfg`` for ``task``."""
    from dsm_lightning.data.datamodule import VideoDataModule

    return VideoDataModule(
        source="synthetic",
        task=task,
        num_frames=cfg.num_frames,
        stride=cfg.stride,
        frame_size=cfg.synthetic_size,
        crop_size=cfg.crop_size,
        min_gap=2,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        synthetic_classes=cfg.synthetic_classes,
        synthetic_videos=cfg.synthetic_videos,
        synthetic_eval_videos=cfg.synthetic_eval_videos,
        synthetic_frames=cfg.synthetic_frames,
        synthetic_size=cfg.synthetic_size,
        bias=cfg.bias,
        augment=augment,
    )


def demo_augment(cfg: DemoConfig, method: str):
    """The demo's ``TripletBuilder`` for ``method`` (MoCo: no disturbances)."""
    from dsm_lightning.disturb.triplet import TripletBuilder

    common = dict(crop_size=cfg.crop_size, crop_scale=cfg.crop_scale, flip_prob=cfg.flip_prob,
                  seed=None)
    if method == "moco":
        return TripletBuilder.moco(**common)
    return TripletBuilder(
        **common,
        spatial_kinds=cfg.spatial_kinds,
        tps_jitter=cfg.tps_jitter,
        negative_kinds=cfg.negative_kinds,
        negative_mode=cfg.negative_mode,
    )


def _backbone_kwargs(cfg: DemoConfig) -> dict[str, Any]:
    return {"width": cfg.width} if cfg.backbone == "tiny3d" else {}


def demo_model(cfg: DemoConfig, method: str, export_encoder: str | None = None):
    """The demo's ``DSMLightningModule`` for ``method`` (same backbone and optimiser for all)."""
    from dsm_lightning.modules.pretrain import DSMLightningModule

    return DSMLightningModule(
        backbone=cfg.backbone,
        backbone_kwargs=_backbone_kwargs(cfg),
        method=method,
        proj_hidden_dim=cfg.proj_hidden_dim,
        temperature=cfg.temperature,
        queue_size=cfg.queue_size,
        momentum=cfg.momentum,
        hard_negative_weight=cfg.hard_negative_weight,
        negative_encoder=cfg.negative_encoder,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        export_encoder=export_encoder,
    )


def pretrain(cfg: DemoConfig, method: str, out: Path) -> dict[str, Any]:
    """Pretrain one method; return its paths, wall time and last logged training metrics."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = demo_datamodule(cfg, "pretrain", demo_augment(cfg, method))
    model = demo_model(cfg, method, export_encoder=str(out / method / "encoder.pt"))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=cfg.epochs,
        logger=CSVLogger(str(out), name=method, version=""),
        default_root_dir=str(out / method),
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        enable_progress_bar=not cfg.fast,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    ckpt = out / method / "last.ckpt"
    trainer.save_checkpoint(str(ckpt), weights_only=False)  # full state: resumable
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return {
        "method": method,
        "seconds": seconds,
        "steps": trainer.global_step,
        "checkpoint": str(ckpt),
        "encoder": str(out / method / "encoder.pt"),
        "metrics_csv": str(out / method / "metrics.csv"),
        "last": logged,
    }


SPLITS = (
    "train", "test", "swapped_test", "test_static",
    "balanced_train", "balanced_test", "balanced_test_static",
)


def features_of(encoder: torch.nn.Module, dm: Any, cfg: DemoConfig) -> dict[str, dict]:
    """Frozen, L2-normalised features of every evaluation split (view-averaged)."""
    from dsm_lightning.evaluation.retrieval import extract_features

    out = {}
    for split in SPLITS:
        loader = dm.clip_dataloader(split, n_clips=cfg.eval_clips)
        out[split] = extract_features(
            encoder, loader, batch_transform=lambda b: dm.on_after_batch_transfer(b, 0),
            progress=None if cfg.fast else f"features {split}",
        )
    return out


def evaluate(name: str, feats: dict[str, dict], class_names: list[str], out: Path) -> dict:
    """Probes, retrieval and the scene-bias probe on one encoder's features."""
    from dsm_lightning.evaluation.probe import fit_linear_probe
    from dsm_lightning.evaluation.retrieval import recall_at_k
    from dsm_lightning.evaluation.scene_bias import (
        plot_per_class,
        save_report_json,
        scene_bias_report,
    )
    from dsm_lightning.evaluation.video_level import contrasted_accuracy

    k = len(class_names)

    def xy(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return feats[split]["features"], feats[split]["labels"]

    res: dict[str, Any] = {}
    biased = fit_linear_probe(*xy("train"), num_classes=k)
    res["biased_probe/test"] = biased.accuracy(*xy("test"))
    res["biased_probe/swapped_test"] = biased.accuracy(*xy("swapped_test"))
    res["biased_probe/test_static"] = biased.accuracy(*xy("test_static"))

    balanced = fit_linear_probe(*xy("balanced_train"), num_classes=k)
    x_n, y_n = xy("balanced_test")
    x_s, y_s = xy("balanced_test_static")
    if not torch.equal(feats["balanced_test"]["index"], feats["balanced_test_static"]["index"]):
        raise RuntimeError("balanced_test and its static version are not aligned by index")
    pred_n, pred_s = balanced.predict(x_n), balanced.predict(x_s)
    res["balanced_probe/test"] = balanced.accuracy(x_n, y_n)
    res["balanced_probe/test_static"] = balanced.accuracy(x_s, y_s)
    res["balanced_probe/contrasted"] = contrasted_accuracy(pred_n, pred_s, y_n)

    for query, gallery in (("balanced_test", "balanced_train"), ("swapped_test", "train")):
        recalls = recall_at_k(*xy(query), *xy(gallery), ks=(1, 5, 10))
        for kk, value in recalls.items():
            res[f"retrieval/{query}/R@{kk}"] = value

    report = scene_bias_report(
        pred_n, pred_s, y_n, num_classes=k, class_names=class_names,
        pred_swapped=biased.predict(xy("swapped_test")[0]),
        labels_swapped=xy("swapped_test")[1],
    )
    res["scene_bias/gain"] = report.gain
    save_report_json(report, out / f"scene_bias_{name}.json")
    plot_per_class(report, out / f"scene_bias_{name}.png", title=f"{name}: balanced probe")
    return res


ROWS = (
    ("balanced_probe/contrasted", "balanced probe: contrasted acc (main)"),
    ("balanced_probe/test", "balanced probe: top-1 normal clips"),
    ("balanced_probe/test_static", "balanced probe: top-1 static clips"),
    ("biased_probe/test", "biased probe: top-1 in-distribution"),
    ("biased_probe/swapped_test", "biased probe: top-1 swapped scenes"),
    ("biased_probe/test_static", "biased probe: top-1 static clips"),
    ("retrieval/balanced_test/R@1", "retrieval balanced R@1"),
    ("retrieval/balanced_test/R@5", "retrieval balanced R@5"),
    ("retrieval/balanced_test/R@10", "retrieval balanced R@10"),
    ("retrieval/swapped_test/R@1", "retrieval swapped-scene R@1"),
    ("retrieval/swapped_test/R@5", "retrieval swapped-scene R@5"),
    ("retrieval/swapped_test/R@10", "retrieval swapped-scene R@10"),
    ("scene_bias/gain", "scene-bias gain (normal - static)"),
)


def format_comparison(results: dict[str, dict], chance: float) -> str:
    """One table, one column per encoder, percentages; chance level in the header."""
    names = list(results)
    width = max(len(label) for _, label in ROWS) + 2
    head = f"{'metric (%)':<{width}}" + "".join(f"{n:>10}" for n in names)
    lines = [head, "-" * len(head)]
    for key, label in ROWS:
        cells = "".join(f"{100 * results[n][key]:>10.1f}" for n in names)
        lines.append(f"{label:<{width}}{cells}")
    lines.append(f"(chance level {100 * chance:.1f}%; contrasted = right on normal AND wrong "
                 "on static)")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the whole study; return the report dictionary (also written to disk)."""
    from dsm_lightning.models.encoder_io import load_encoder
    from dsm_lightning.models.registry import create_backbone

    if cfg.fast:
        cfg.apply_fast()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir).resolve()  # absolute: relative exports resolve under log_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    print("[demo] 1/4 synthetic dataset", flush=True)
    eval_dm = demo_datamodule(cfg, "classify", demo_augment(cfg, "moco"))
    eval_dm.prepare_data()
    eval_dm.setup("test")
    class_names = list(eval_dm.class_names)
    t_data = time.perf_counter() - t0

    runs: dict[str, dict] = {}
    for i, method in enumerate(cfg.methods):
        print(f"[demo] 2/4 pretraining {method} ({i + 1}/{len(cfg.methods)})", flush=True)
        runs[method] = pretrain(cfg, method, out)

    print("[demo] 3/4 features, probes, retrieval, scene bias", flush=True)
    encoders: dict[str, torch.nn.Module] = {}
    if cfg.random_baseline:
        torch.manual_seed(cfg.seed)
        encoders["random"] = create_backbone(cfg.backbone, **_backbone_kwargs(cfg))
    for method, run in runs.items():
        encoders[method], _ = load_encoder(run["encoder"])
    results = {}
    for name, encoder in encoders.items():
        results[name] = evaluate(name, features_of(encoder, eval_dm, cfg), class_names, out)

    total = time.perf_counter() - t0
    table = format_comparison(results, chance=1.0 / len(class_names))
    report = {
        "config": asdict(cfg),
        "results": results,
        "pretraining": runs,
        "seconds": {"data": t_data, "total": total,
                    **{f"pretrain_{m}": r["seconds"] for m, r in runs.items()}},
        "table": table,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(f"# dsm-lightning demo\n\n```\n{table}\n```\n")
    print("[demo] 4/4 results\n")
    print(table)
    print(f"\n[demo] total {total / 60:.1f} min (data {t_data:.0f}s, "
          + ", ".join(f"pretrain {m} {r['seconds']:.0f}s" for m, r in runs.items()) + ")")
    print(f"[demo] report: {out / 'report.json'}, {out / 'report.md'}")
    print(f"[demo] scene-bias plots: {out}/scene_bias_*.png")
    print("[demo] checkpoints and encoders: "
          + ", ".join(f"{r['checkpoint']}, {r['encoder']}" for r in runs.values()))
    return report


def parse_args(argv: Sequence[str] | None = None) -> DemoConfig:
    """Build a :class:`DemoConfig` from command-line flags (one per field)."""
    parser = argparse.ArgumentParser(prog="python -m dsm_lightning.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = DemoConfig()
    for name, value in asdict(defaults).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            kind = type(value[0]) if value else str
            parser.add_argument(flag, nargs="+", type=kind, default=value)
        elif value is None:
            parser.add_argument(flag, default=None,
                                type=int if name.endswith("dim") else str)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    ns = vars(parser.parse_args(argv))
    return DemoConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ns.items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dsm_lightning.demo``."""
    cfg = parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    run_demo(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
