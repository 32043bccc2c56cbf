"""Run every paper config for a few steps on generated data; record step time and GPU memory.

``python -m benchmarks.gpu_smoke`` takes each ``examples/configs/{pretrain,finetune,
retrieval}_*.yaml``, writes a tiny fake dataset in the layout its source expects (UCF101
lists, HMDB51 split files, Kinetics CSVs, Something-Something v2 JSON, Diving48 JSON; short
generated videos), points the config at it, and runs ``fit`` (pretraining, fine-tuning) or
``test`` (retrieval) for ``--steps`` steps with the config's own backbone, clip length,
resolution and batch size. A config that needs a pretrained ``encoder.pt`` gets a randomly
initialised one of the backbone it names (or of the pretraining config its path names).

Per config it records: ok / failed (with the error), the median step time after the first
step (seconds, CUDA-synchronised) and the peak GPU memory (GiB, ``torch.cuda.
max_memory_allocated``), into ``benchmarks/results/gpu_smoke.json``.

Without CUDA (or with ``--cpu-smoke``) it checks the harness only: tiny clips (4 frames of
32 px), ``tiny3d`` backbones, batch 2, on the CPU, into ``gpu_smoke_cpu.json`` with
``"gpu_figures_recorded": false``: no GPU figure is recorded then.

Usage: ``python -m benchmarks.gpu_smoke [--cpu-smoke] [--only NAME ...] [--steps N]
[--out FILE] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "examples" / "configs"
RESULTS = Path(__file__).resolve().parent / "results"
PREFIXES = ("pretrain_", "finetune_", "retrieval_")
GIB = 2.0**30
#: CPU smoke settings: the harness on the CPU in seconds (no figure is meaningful)
CPU_DATA = {"num_frames": 4, "stride": 1, "frame_size": 32, "crop_size": 32, "batch_size": 2,
            "eval_batch_size": 2, "num_workers": 0}
CPU_BACKBONE = ("tiny3d", {"width": 4})
NO_GPU_NOTE = ("no CUDA device (or --cpu-smoke): a tiny CPU run of the harness only; "
               "GPU figures (step time, memory at the paper's resolution) were NOT recorded")


def paper_configs() -> list[Path]:
    """The configs of the paper's runs: ``examples/configs/{pretrain,finetune,retrieval}_*``."""
    return sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.stem.startswith(PREFIXES))


# ------------------------------------------------------------------------------ fake data


class FakeVideos:
    """Writes short generated videos (a blocky pattern drifting one pixel per frame).

    ``write`` only queues a video; ``flush`` encodes the queue on all CPU cores. The
    pattern is seeded by the file path, so a layout is the same on every run.
    """

    def __init__(self, frames: int, height: int, width: int) -> None:
        self.frames, self.height, self.width = frames, height, width
        self.queue: list[tuple[Path, str]] = []

    def write(self, path: Path, codec: str = "libx264") -> Path:
        self.queue.append((path, codec))
        return path

    def flush(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(lambda job: self.encode(*job), self.queue))
        self.queue = []

    def encode(self, path: Path, codec: str = "libx264") -> Path:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(zlib.crc32(str(path).encode()))
        cells = rng.integers(0, 256, (self.height // 8 + 1, (self.width + self.frames) // 8 + 1,
                                      3), np.uint8)
        base = cells.repeat(8, axis=0).repeat(8, axis=1)  # 8 px blocks: quick to encode
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            stream.options = ({"preset": "ultrafast"} if codec == "libx264"
                              else {"deadline": "realtime", "cpu-used": "8"})  # VP8: fast
            for t in range(self.frames):
                frame = np.ascontiguousarray(base[:, t : t + self.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path


def _classes(n: int) -> list[str]:
    return [f"Class{chr(65 + i)}" for i in range(n)]


def _split_counts(n_train: int, n_test: int, classes: list[str]) -> list[tuple[str, str, int]]:
    """(split, class, index) of every video, spread over the classes."""
    items = [("train", classes[i % len(classes)], i) for i in range(n_train)]
    return items + [("test", classes[i % len(classes)], i) for i in range(n_test)]


def write_layout(source: str, root: Path, videos: FakeVideos, n_train: int, n_test: int,
                 classes: int = 3) -> dict[str, str]:
    """Write a fake dataset in ``source``'s layout; returns the data location arguments.

    Raises:
        ValueError: for a source without a fake layout here.
    """
    location = _write_annotations(source, root, videos, n_train, n_test, classes)
    videos.flush()
    return location


def _write_annotations(source: str, root: Path, videos: FakeVideos, n_train: int, n_test: int,
                       classes: int) -> dict[str, str]:
    """The annotation files of ``source``'s layout; queues its videos on ``videos``."""
    names = _classes(classes)
    items = _split_counts(n_train, n_test, names)
    if source == "ucf101":
        ann = root / "ucfTrainTestlist"
        ann.mkdir(parents=True, exist_ok=True)
        (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(names)))
        lists = {"train": [], "test": []}
        for split, cls, i in items:
            rel = f"{cls}/v_{cls}_g{i + (1 if split == 'train' else 50):02d}_c01.avi"
            videos.write(root / "videos" / rel)
            label = f" {names.index(cls) + 1}" if split == "train" else ""
            lists[split].append(rel + label)
        (ann / "trainlist01.txt").write_text("\n".join(lists["train"]) + "\n")
        (ann / "testlist01.txt").write_text("\n".join(lists["test"]) + "\n")
        return {"root": str(root / "videos"), "annotations": str(ann)}
    if source == "hmdb51":
        ann = root / "testTrainMulti_7030_splits"
        ann.mkdir(parents=True, exist_ok=True)
        lines: dict[str, list[str]] = {c: [] for c in names}
        for split, cls, i in items:
            name = f"{cls}_{split}_{i}.avi"
            videos.write(root / "videos" / cls / name)
            lines[cls].append(f"{name} {1 if split == 'train' else 2}")
        for cls, rows in lines.items():
            (ann / f"{cls}_test_split1.txt").write_text("\n".join(rows) + "\n")
        return {"root": str(root / "videos"), "annotations": str(ann)}
    if source == "kinetics_csv":
        ann = root / "annotations"
        ann.mkdir(parents=True, exist_ok=True)
        rows = {"train": [], "test": []}
        for split, cls, i in items:
            ytid = f"{split}{i:08d}"
            videos.write(root / "videos" / f"{ytid}_000000_000010.mp4")
            rows[split].append(f"{cls},{ytid},0,10,{'train' if split == 'train' else 'val'}")
        header = "label,youtube_id,time_start,time_end,split\n"
        (ann / "train.csv").write_text(header + "\n".join(rows["train"]) + "\n")
        (ann / "validate.csv").write_text(header + "\n".join(rows["test"]) + "\n")
        return {"root": str(root / "videos"), "annotations": str(ann / "train.csv"),
                "test_annotations": str(ann / "validate.csv")}
    if source == "ssv2":
        ann = root / "annotations"
        ann.mkdir(parents=True, exist_ok=True)
        templates = [f"Moving [something] {c}" for c in names]
        labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}
        (ann / "something-something-v2-labels.json").write_text(json.dumps(labels))
        entries: dict[str, list[dict]] = {"train": [], "test": []}
        for split, cls, i in items:
            video_id = f"{1 if split == 'train' else 9}{i:05d}"
            videos.write(root / "videos" / f"{video_id}.webm", codec="libvpx")
            entries[split].append({"id": video_id, "template": templates[names.index(cls)],
                                   "placeholders": ["a box"]})
        (ann / "something-something-v2-train.json").write_text(json.dumps(entries["train"]))
        (ann / "something-something-v2-validation.json").write_text(json.dumps(entries["test"]))
        return {"root": str(root / "videos"), "annotations": str(ann)}
    if source == "diving48":
        ann = root / "annotations"
        ann.mkdir(parents=True, exist_ok=True)
        (ann / "Diving48_vocab.json").write_text(json.dumps([["Back", c, "NoTwis", "FREE"]
                                                              for c in names]))
        entries = {"train": [], "test": []}
        for split, cls, i in items:
            vid = f"{split}_{i:05d}_0"
            videos.write(root / "rgb" / f"{vid}.mp4")
            entries[split].append({"vid_name": vid, "label": names.index(cls),
                                   "start_frame": 0, "end_frame": videos.frames})
        (ann / "Diving48_V2_train.json").write_text(json.dumps(entries["train"]))
        (ann / "Diving48_V2_test.json").write_text(json.dumps(entries["test"]))
        return {"root": str(root / "rgb"), "annotations": str(ann)}
    raise ValueError(f"no fake layout for source {source!r}")


# ------------------------------------------------------------------------ config surgery


def _init(section: dict[str, Any]) -> dict[str, Any]:
    return section.setdefault("init_args", {})


def _span(data: dict[str, Any]) -> int:
    frames, stride = int(data.get("num_frames", 16)), int(data.get("stride", 4))
    return (frames - 1) * stride + 1 + int(data.get("min_gap", 2))


def pretraining_backbone(model: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backbone a fine-tuning / retrieval config expects: its own ``backbone``, else the
    one of the pretraining config its ``pretrained`` path names (``runs/<config>/...``).

    Raises:
        ValueError: when neither names one.
    """
    args = _init(model)
    if isinstance(args.get("backbone"), str):
        return args["backbone"], dict(args.get("backbone_kwargs") or {})
    parts = Path(str(args.get("pretrained") or "")).parts
    source = CONFIG_DIR / f"{parts[1]}.yaml" if len(parts) > 1 and parts[0] == "runs" else None
    if source is None or not source.is_file():
        raise ValueError(f"cannot tell the backbone of pretrained={args.get('pretrained')!r}")
    pretrain = _init(yaml.safe_load(source.read_text())["model"])
    return pretrain["backbone"], dict(pretrain.get("backbone_kwargs") or {})


def prepare_config(
    path: Path, workdir: Path, steps: int, cpu: bool, layouts: dict[str, dict[str, str]]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The config of one smoke run: fake data, few steps, logs under ``workdir``.

    Returns:
        ``(config, subcommand, facts)``: the edited config, ``"fit"`` or ``"test"`` and the
        settings measured (backbone, batch size, frames, crop).
    """
    config = yaml.safe_load(path.read_text())
    subcommand = "test" if path.stem.startswith("retrieval_") else "fit"
    data, model = _init(config["data"]), config["model"]
    source = data["source"]
    if not isinstance(source, str):
        raise ValueError(f"source {source!r}: only named sources get a fake layout")
    if cpu:
        data.update(CPU_DATA)
        data["n_clips"] = min(int(data.get("n_clips", 1)), 2)
    for key in ("root", "annotations", "test_annotations", "val_annotations", "test_root"):
        data.pop(key, None)
    data.update(layouts[source])
    data["num_workers"] = min(int(data.get("num_workers", 0)), 4)
    data["val_split"] = 0.0  # every fake training video goes into the training batches
    args = _init(model)
    backbone = args.get("backbone")
    if args.get("pretrained") is not None or subcommand == "test":
        backbone, kwargs = pretraining_backbone(model)
        name, kwargs = CPU_BACKBONE if cpu else (backbone, kwargs)
        encoder_file = workdir / "encoders" / f"{name}.pt"
        if not encoder_file.is_file():
            from dsm_lightning.models import create_backbone, save_encoder

            save_encoder(encoder_file, create_backbone(name, **kwargs), name, kwargs)
        args["pretrained"] = str(encoder_file)
        if "backbone" in args:
            args["backbone"], args["backbone_kwargs"] = name, kwargs
    elif cpu:
        args["backbone"], args["backbone_kwargs"] = CPU_BACKBONE
    if "output_dir" in args:
        args["output_dir"] = str(workdir / "retrieval" / path.stem)
    trainer = config.setdefault("trainer", {})
    trainer.update({  # one training batch per epoch on the fake data: max_steps epochs
        "accelerator": "cpu" if cpu else "gpu", "devices": 1, "max_steps": steps,
        "max_epochs": steps, "limit_val_batches": 0, "limit_test_batches": steps,
        "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_checkpointing": False,
        "enable_model_summary": False, "callbacks": None,
        "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                   "init_args": {"save_dir": str(workdir / "runs"), "name": path.stem}},
    })
    facts = {"backbone": CPU_BACKBONE[0] if cpu else backbone,
             "batch_size": data.get("batch_size"), "num_frames": data.get("num_frames"),
             "stride": data.get("stride"), "crop_size": data.get("crop_size")}
    return config, subcommand, facts


# ---------------------------------------------------------------------------------- run


class StepTimer(pl.Callback):
    """Wall time of every training / test step (CUDA-synchronised when on a GPU)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _begin(self, *_: Any) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _end(self, *_: Any) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self._start)

    on_train_batch_start = _begin
    on_train_batch_end = _end
    on_test_batch_start = _begin
    on_test_batch_end = _end


def run_config(path: Path, workdir: Path, steps: int, cpu: bool,
               layouts: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Run one config; returns its result row (never raises)."""
    from dsm_lightning.cli import format_error
    from dsm_lightning.cli_parser import build_cli

    row: dict[str, Any] = {"config": path.stem, "status": "failed", "error": None,
                           "step_time_s": None, "step_times_s": [], "peak_gpu_memory_gib": None}
    started = time.perf_counter()
    try:
        config, subcommand, facts = prepare_config(path, workdir, steps, cpu, layouts)
        row.update(command=subcommand, **facts)
        edited = workdir / "configs" / path.name
        edited.parent.mkdir(parents=True, exist_ok=True)
        edited.write_text(yaml.safe_dump(config, sort_keys=False))
        if torch.cuda.is_available() and not cpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        argv, sys.argv = sys.argv, ["dsm"]  # LightningCLI reads sys.argv as well
        try:
            cli = build_cli(["--config", str(edited)], run=False)
        finally:
            sys.argv = argv
        timer = StepTimer()
        cli.trainer.callbacks.append(timer)
        getattr(cli.trainer, subcommand)(cli.model, datamodule=cli.datamodule)
        if not timer.times:
            raise RuntimeError("no step ran")
        row["step_times_s"] = [round(t, 4) for t in timer.times]
        measured = timer.times[1:] or timer.times  # the first step includes warm-up
        row["step_time_s"] = round(statistics.median(measured), 4)
        if torch.cuda.is_available() and not cpu:
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
        row["status"] = "ok"
    except Exception as error:  # a failed config is a result, not the end of the run
        message = format_error(error) if isinstance(error, ValueError) else " ".join(
            line.strip() for line in traceback.format_exception_only(type(error), error))
        row["error"] = f"{type(error).__name__}: {message}"[:600]
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def make_layouts(paths: list[Path], root: Path, cpu: bool) -> dict[str, dict[str, str]]:
    """One fake dataset per source used, long enough for every clip span and batch."""
    needs: dict[str, dict[str, int]] = {}
    for path in paths:
        data = _init(yaml.safe_load(path.read_text())["data"])
        if not isinstance(data.get("source"), str):
            continue
        if cpu:
            data = {**data, **CPU_DATA}
        need = needs.setdefault(data["source"], {"frames": 0, "batch": 0})
        need["frames"] = max(need["frames"], _span(data) + 2)
        need["batch"] = max(need["batch"], int(data.get("batch_size", 8)))
    layouts = {}
    for source, need in needs.items():
        height, width = (32, 40) if cpu else (128, 170)  # short side resized to frame_size
        videos = FakeVideos(need["frames"], height, width)
        n_train = need["batch"] + (2 if cpu else 3)
        try:
            layouts[source] = write_layout(source, root / source, videos, n_train,
                                           n_test=4 if cpu else 6)
        except ValueError:
            continue  # run_config reports the missing layout
    return layouts


def main(argv: list[str] | None = None) -> int:
    """Run the smoke over the paper configs and write the JSON; returns 0 when all ran."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny CPU run of the harness (automatic without CUDA)")
    parser.add_argument("--only", nargs="*", default=None, help="config names (stems)")
    parser.add_argument("--steps", type=int, default=5, help="steps per config (>= 2)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="fake data and logs")
    args = parser.parse_args(argv)
    cpu = args.cpu_smoke or not torch.cuda.is_available()
    paths = paper_configs()
    if args.only:
        unknown = sorted(set(args.only) - {p.stem for p in paths})
        if unknown:
            parser.error(f"unknown config(s) {unknown}; paper configs: {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in args.only]
    out = args.out or RESULTS / ("gpu_smoke_cpu.json" if cpu else "gpu_smoke.json")
    if cpu:
        print(f"gpu_smoke: {NO_GPU_NOTE}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as tmp:
        workdir = args.workdir or Path(tmp)
        layouts = make_layouts(paths, workdir / "data", cpu)
        rows = []
        for path in paths:
            row = run_config(path, workdir, max(2, args.steps), cpu, layouts)
            rows.append(row)
            shown = "-" if row["step_time_s"] is None else f"{row['step_time_s']:.3f}s"
            memory = row["peak_gpu_memory_gib"]
            print(f"{row['config']:<36} {row['status']:<6} step {shown:>8}  peak "
                  f"{'-' if memory is None else f'{memory:.2f} GiB':>10}  {row['error'] or ''}",
                  flush=True)
    result = {
        "device": "cpu" if cpu else torch.cuda.get_device_name(0),
        "gpu_figures_recorded": not cpu,
        "note": NO_GPU_NOTE if cpu else "paper settings (resolution, clip, batch) on fake data",
        "steps": max(2, args.steps),
        "torch": torch.__version__,
        "configs": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu_smoke: {sum(r['status'] == 'ok' for r in rows)}/{len(rows)} ok -> {out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
