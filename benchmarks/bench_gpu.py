"""GPU figures: triplet build, fed vs model-only steps, loader, memory per sample, DDP scaling.

On a CUDA machine (``make bench``), each row is measured on the card and carries its name;
the rows are also written to ``benchmarks/results/gpu.json`` and ``gpu.md`` (kept when a
later ``make bench`` runs without a GPU). Rows:

- ``gpu_triplet_build``: ``TripletBuilder`` clips/s on the device vs on the CPU (same batch).
- ``gpu_fed_vs_model_only``: DSM steps fed by ``VideoDataModule`` (decoding workers, pinned
  memory, device-side triplets) vs the same steps on an in-memory batch (samples/s).
- ``gpu_loader_vs_step``: the train loader alone (samples/s) vs the model-only step: above 1
  the loader keeps the card busy.
- ``gpu_memory_per_sample``: the card's memory vs the peak memory one more sample costs in a
  training step (peak allocated at two batch sizes): about how many samples fit.
- ``gpu_ddp_scaling``: samples/s of N GPUs vs N x one GPU (DDP weak scaling; N = all cards,
  NCCL; the N-process run in a fresh process).

Without CUDA the same code runs on the CPU at a tiny scale (tiny3d, a few steps, 2 gloo
processes for DDP; memory: the activations saved for backward per sample, as the CPU has no
peak-allocation counter): every row is marked ``gpu_figures: false``, its text says that no
GPU figure was recorded, and no ``gpu.*`` file is written. Run:
``python -m benchmarks.bench_gpu [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
NO_GPU = "no GPU: CPU stand-in at a tiny scale, no GPU figure recorded"


def settings(cuda: bool, quick: bool) -> dict[str, Any]:
    """Model, clip, loader and step settings (full GPU run, or tiny)."""
    if cuda and not quick:
        return dict(
            backbone="r3d_18", backbone_kwargs={}, precision="16-mixed",
            clip=dict(num_frames=16, stride=4, frame_size=128, crop_size=112),
            synthetic=dict(num_classes=8, videos_per_class=16, eval_videos_per_class=1,
                           num_frames=48, size=128),
            batch=16, workers=min(8, os.cpu_count() or 1), warmup=3, steps=10,
            memory_batches=(8, 16), builder_batch=32, builder_reps=10,
        )
    return dict(
        backbone="tiny3d", backbone_kwargs={"width": 4}, precision="32-true",
        clip=dict(num_frames=4, stride=2, frame_size=32, crop_size=28),
        synthetic=dict(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                       num_frames=16, size=32),
        batch=2, workers=0, warmup=2, steps=6, memory_batches=(2, 4), builder_batch=4,
        builder_reps=2,
    )


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _datamodule(cfg: dict[str, Any], cache: str, device: str, workers: int | None = None):
    from dsm_lightning.data.datamodule import VideoDataModule
    from dsm_lightning.data.sources import SyntheticSource

    workers = cfg["workers"] if workers is None else workers
    return VideoDataModule(
        source=SyntheticSource(**cfg["synthetic"], cache_dir=cache), task="pretrain",
        batch_size=cfg["batch"], num_workers=workers, persistent_workers=workers > 0,
        pin_memory=device == "cuda", **cfg["clip"])


def _model(cfg: dict[str, Any]):
    from dsm_lightning.modules.dsm import DSMLightningModule

    return DSMLightningModule(backbone=cfg["backbone"], backbone_kwargs=cfg["backbone_kwargs"],
                              queue_size=1024)


def _trainer(cfg: dict[str, Any], device: str, callbacks: list, devices: int = 1, **kwargs):
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=devices,
        precision=cfg["precision"], max_steps=cfg["warmup"] + cfg["steps"], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks, **kwargs)


def _step_timer(device: str):
    from benchmarks.bench_pretrain import StepTimer

    class SyncedStepTimer(StepTimer):
        """Step ends after the device finished the step's work."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            _sync(device)
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    return SyncedStepTimer()


def _one_batch(cfg: dict[str, Any], cache: str, device: str) -> dict[str, Any]:
    """(uint8 batch, device triplet batch) from the real loader and builder."""
    from benchmarks.bench_pretrain import one_triplet_batch

    dm = _datamodule(cfg, cache, device, workers=0)
    triplets = one_triplet_batch(dm)
    raw = next(iter(dm.train_dataloader()))
    return {"raw": raw, "triplets": triplets, "augment": dm.augment}


def triplet_build(cfg: dict[str, Any], raw: dict[str, Any], augment, device: str) -> dict:
    """Clips/s of the view builder on ``device`` and on the CPU (same uint8 clips)."""
    reps = cfg["builder_batch"] // len(raw["video"]) + 1
    video = raw["video"].repeat(reps, 1, 1, 1, 1)[: cfg["builder_batch"]]
    shift = raw["video_shift"].repeat(reps, 1, 1, 1, 1)[: cfg["builder_batch"]]
    rates = {}
    for where in dict.fromkeys((device, "cpu")):
        builder = augment.to(where)
        v, s = video.to(where), shift.to(where)
        g = torch.Generator().manual_seed(0)
        builder(v, s, generator=g)  # warm-up (kernels, allocations)
        _sync(where)
        start = time.perf_counter()
        for _ in range(cfg["builder_reps"]):
            builder(v, s, generator=g)
        _sync(where)
        rates[where] = len(v) * cfg["builder_reps"] / (time.perf_counter() - start)
    return {"device_per_s": rates[device], "cpu_per_s": rates["cpu"]}


def steps(cfg: dict[str, Any], batch: dict[str, Any], cache: str, device: str) -> dict:
    """Samples/s of the fed and model-only steps, and of the loader alone."""
    import pytorch_lightning as pl

    from benchmarks.bench_pretrain import InMemoryTriplets

    pl.seed_everything(0, verbose=False)
    timer = _step_timer(device)
    total = cfg["warmup"] + cfg["steps"]
    _trainer(cfg, device, [timer]).fit(_model(cfg), InMemoryTriplets(batch["triplets"], total))
    model_only = timer.per_s(cfg["batch"], cfg["warmup"])

    pl.seed_everything(0, verbose=False)
    timer = _step_timer(device)
    _trainer(cfg, device, [timer]).fit(_model(cfg), _datamodule(cfg, cache, device))
    fed = timer.per_s(cfg["batch"], cfg["warmup"])

    dm = _datamodule(cfg, cache, device)
    dm.setup("fit")
    loader, count = dm.train_dataloader(), 0
    iterator = iter(loader)
    next(iterator)  # workers started
    start = time.perf_counter()
    for _, item in zip(range(total), iterator):
        count += len(item["video"])
    loader_rate = count / (time.perf_counter() - start)
    return {"model_only_per_s": model_only, "fed_per_s": fed, "loader_per_s": loader_rate}


# ------------------------------------------------------------------- fresh-process workers


def memory_mib(cfg: dict[str, Any], batch: dict[str, torch.Tensor], device: str) -> float:
    """Peak device memory of a few model-only steps on ``batch`` (MiB).

    CUDA: the allocator's peak (reset first). CPU (no peak counter): the bytes of the
    tensors autograd saves for backward in one step's forward passes, a stand-in.
    """
    model = _model(cfg)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        _trainer(cfg, device, []).fit(model, _in_memory(batch, cfg))
        return torch.cuda.max_memory_allocated() / 2**20
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        model.training_step(batch, 0)
    return sum(saved) / 2**20


def _in_memory(batch, cfg):
    from benchmarks.bench_pretrain import InMemoryTriplets

    return InMemoryTriplets(batch, cfg["warmup"] + cfg["steps"])


def _random_triplets(cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A normalised-looking triplet batch of the configured shape (DDP rows: no decoding)."""
    c, g = cfg["clip"], torch.Generator().manual_seed(0)
    shape = (cfg["batch"], 3, c["num_frames"], c["crop_size"], c["crop_size"])
    batch = {k: torch.randn(shape, generator=g) for k in ("anchor", "positive", "negative")}
    return {**batch, "label": torch.zeros(cfg["batch"], dtype=torch.int64),
            "index": torch.arange(cfg["batch"])}


def _ddp_worker(cfg: dict[str, Any], device: str, devices: int) -> dict:
    """Samples/s of all ranks on ``devices`` processes (rank 0 reports)."""
    import pytorch_lightning as pl

    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    pl.seed_everything(0, verbose=False)
    batch = _random_triplets(cfg)
    timer = _step_timer(device)
    kwargs = {"strategy": "ddp", "use_distributed_sampler": False} if devices > 1 else {}
    fit = _trainer(cfg, device, [timer], devices=devices, **kwargs)
    fit.fit(_model(cfg), _in_memory(batch, cfg))
    return {"per_s": timer.per_s(cfg["batch"], cfg["warmup"]) * devices,
            "rank": fit.global_rank}


def _fresh(kind: str, arg: int, quick: bool, cache: str, folder: Path) -> dict:
    """Run ``kind`` (ddp) in a fresh process; returns its result."""
    out = folder / f"{kind}{arg}.json"
    command = [sys.executable, "-m", "benchmarks.bench_gpu", "--worker", kind, str(arg),
               str(out), cache] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"{kind} worker ({arg}) failed:\n{result.stderr[-3000:]}")
    return json.loads(out.read_text())


def worker_main(kind: str, arg: int, out: Path, cache: str, quick: bool) -> None:
    """Entry point of the fresh processes (``--worker``)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = settings(device == "cuda", quick)
    result = _ddp_worker(cfg, device, arg)
    if result["rank"] != 0:
        return
    out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------ the rows


def _card() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"device": "cpu", "gpu_figures": False, "gpus": 0}
    props = torch.cuda.get_device_properties(0)
    return {"device": torch.cuda.get_device_name(0), "gpu_figures": True,
            "gpus": torch.cuda.device_count(), "card_mib": props.total_memory / 2**20,
            "cuda": torch.version.cuda}


def _card_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**20
    import psutil

    return psutil.virtual_memory().total / 2**20


def run(quick: bool = False) -> list[dict]:
    """The GPU rows (CPU stand-ins without CUDA)."""
    card = _card()
    device = "cuda" if card["gpu_figures"] else "cpu"
    cfg = settings(device == "cuda", quick)
    c = cfg["clip"]
    where = (f"{card['device']} x{card['gpus']}" if card["gpu_figures"] else NO_GPU)
    shape = (f"{cfg['backbone']}, batch {cfg['batch']}, clips 3x{c['num_frames']}x"
             f"{c['crop_size']}x{c['crop_size']}, {cfg['precision']}, {where}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        cache = os.path.join(folder, "videos")
        batch = _one_batch(cfg, cache, device)
        built = triplet_build(cfg, batch["raw"], batch["augment"], device)
        rows.append({"name": "gpu_triplet_build", "ratio": built["device_per_s"] /
                     built["cpu_per_s"], "goal": None,
                     "what": (f"TripletBuilder on {device} vs on the CPU, "
                              f"{cfg['builder_batch']} clips per call; {shape}"),
                     "a_per_s": built["device_per_s"], "b_per_s": built["cpu_per_s"],
                     "unit": "clips/s"})
        rates = steps(cfg, batch, cache, device)
        rows.append({"name": "gpu_fed_vs_model_only",
                     "ratio": rates["fed_per_s"] / rates["model_only_per_s"], "goal": 0.9,
                     "what": (f"DSM steps fed by VideoDataModule ({cfg['workers']} workers) vs "
                              f"on an in-memory batch; {shape}"),
                     "a_per_s": rates["fed_per_s"], "b_per_s": rates["model_only_per_s"],
                     "unit": "samples/s"})
        rows.append({"name": "gpu_loader_vs_step",
                     "ratio": rates["loader_per_s"] / rates["model_only_per_s"], "goal": 1.0,
                     "what": (f"train loader alone ({cfg['workers']} workers, pretrain pairs) "
                              f"vs model-only DSM steps; {shape}"),
                     "a_per_s": rates["loader_per_s"], "b_per_s": rates["model_only_per_s"],
                     "unit": "samples/s"})
        small, large = cfg["memory_batches"]
        peaks = [memory_mib(dict(cfg, batch=b), _one_batch(dict(cfg, batch=b), cache,
                                                           device)["triplets"], device)
                 for b in (small, large)]
        per_sample = max(peaks[1] - peaks[0], 1e-6) / (large - small)
        rows.append({"name": "gpu_memory_per_sample",
                     "ratio": _card_memory_mib() / per_sample, "goal": None,
                     "what": (f"card memory vs the peak memory one more sample costs (batch "
                              f"{small} -> {large}, model-only steps); {shape}"
                              if device == "cuda" else
                              f"host memory vs the activations saved for backward per sample "
                              f"(batch {small} -> {large}, one step); {shape}"),
                     "a_mib": _card_memory_mib(), "b_mib_per_sample": per_sample,
                     "unit": "MiB", "peak_mib": dict(zip((small, large), peaks))})
        n = card["gpus"] if card["gpus"] >= 2 else 2
        if device == "cuda" and card["gpus"] < 2:
            rows[-1]["note"] = "one GPU: no DDP scaling row"
        else:
            one = _ddp_worker(cfg, device, 1)
            many = _fresh("ddp", n, quick, cache, Path(folder))
            rows.append({"name": "gpu_ddp_scaling", "ratio": many["per_s"] / (n * one["per_s"]),
                         "goal": 0.9 if device == "cuda" else None,
                         "what": (f"DDP on {n} {'GPUs (NCCL)' if device == 'cuda' else 'gloo CPU processes'} "
                                  f"vs {n} x one, in-memory batches; {shape}"),
                         "a_per_s": many["per_s"], "b_per_s": n * one["per_s"],
                         "unit": "samples/s (all processes)"})
    for row in rows:
        row.update({k: v for k, v in card.items() if k in ("device", "gpu_figures", "gpus")})
    if card["gpu_figures"] and not quick:
        write_gpu_results(rows, card)
    elif not card["gpu_figures"]:
        print(f"[bench_gpu] {NO_GPU}", flush=True)
    return rows


def write_gpu_results(rows: list[dict], card: dict[str, Any], out: Path = RESULTS) -> None:
    """``gpu.json`` (rows + card) and ``gpu.md`` (a table headed by the card's name)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"card": card, "rows": rows}, indent=2) + "\n")
    lines = [f"GPU figures: {card['device']} x{card['gpus']} ({card['card_mib']:.0f} MiB, "
             f"CUDA {card['cuda']}), torch {torch.__version__}", "",
             "| benchmark | ratio | a | b | unit | what |", "|---|---|---|---|---|---|"]
    for row in rows:
        a, b = (row[k] for k in sorted(k for k in row if k.startswith(("a_", "b_"))))
        lines.append(f"| {row['name']} | {row['ratio']:.3g} | {a:.4g} | {b:.4g} | "
                     f"{row['unit']} | {row['what']} |")
    (out / "gpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and clips")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "ARG", "OUT", "CACHE"),
                        default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        kind, arg, out, cache = args.worker
        worker_main(kind, int(arg), Path(out), cache, args.quick)
    else:
        print(json.dumps(run(quick=args.quick), indent=2))
