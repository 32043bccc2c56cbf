"""Data-parallel scaling on the CPU: DSM pretraining samples/s with 2 gloo processes vs 1.

Each run is a fresh ``python -m benchmarks.bench_ddp --worker DEVICES OUT`` process (the
Lightning DDP launcher re-runs that command for rank 1) training ``DSMLightningModule`` on
in-memory triplet batches (no decoding: this measures compute + gradient all-reduce + key
gathering). Per-process batch is fixed (weak scaling); the torch threads are split so both
runs use all the cores (1 process x N threads vs 2 processes x N/2 threads). On a 2-core
machine the two processes share the same cores, so the ratio is reported, not targeted
(goal None). Run: ``python -m benchmarks.bench_ddp [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _settings(quick: bool) -> dict:
    if quick:
        return dict(width=4, frames=4, size=28, batch=2, warmup=1, steps=2)
    return dict(width=16, frames=8, size=56, batch=8, warmup=2, steps=8)


def worker(devices: int, out: Path, quick: bool) -> None:
    """Train on ``devices`` gloo processes; rank 0 writes ``out`` with its samples/s."""
    import pytorch_lightning as pl
    import torch

    from benchmarks.bench_pretrain import InMemoryTriplets, StepTimer, trainer
    from dsm_lightning.modules.dsm import DSMLightningModule

    cfg = _settings(quick)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    shape = (cfg["batch"], 3, cfg["frames"], cfg["size"], cfg["size"])
    batch = {k: torch.randn(shape, generator=g) for k in ("anchor", "positive", "negative")}
    batch["label"] = torch.zeros(cfg["batch"], dtype=torch.int64)
    batch["index"] = torch.arange(cfg["batch"])
    total = cfg["warmup"] + cfg["steps"]
    model = DSMLightningModule(backbone="tiny3d", backbone_kwargs={"width": cfg["width"]},
                               queue_size=256)
    timer = StepTimer()
    kwargs = dict(strategy="ddp", devices=devices) if devices > 1 else {}
    fit = trainer(total, [timer], use_distributed_sampler=False, **kwargs)
    fit.fit(model, InMemoryTriplets(batch, total))
    if fit.global_rank == 0:
        per_s = timer.per_s(cfg["batch"], cfg["warmup"]) * devices
        out.write_text(json.dumps({"per_s": per_s, "threads": torch.get_num_threads()}))


def _launch(devices: int, quick: bool, folder: Path) -> dict:
    out = folder / f"ddp{devices}.json"
    command = [sys.executable, "-m", "benchmarks.bench_ddp", "--worker", str(devices), str(out)]
    if quick:
        command.append("--quick")
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"DDP run with {devices} process(es) failed:\n{result.stderr[-3000:]}")
    return json.loads(out.read_text())


def run(quick: bool = False) -> list[dict]:
    """Samples/s of 2 gloo processes over 1 process (reported, goal None)."""
    cfg = _settings(quick)
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as folder:
        one = _launch(1, quick, Path(folder))
        two = _launch(2, quick, Path(folder))
    return [{
        "name": "ddp_2_vs_1_process",
        "ratio": two["per_s"] / one["per_s"],
        "goal": None,
        "what": (
            f"DSM pretraining, tiny3d width {cfg['width']}, in-memory clips "
            f"3x{cfg['frames']}x{cfg['size']}x{cfg['size']}, batch {cfg['batch']} per process: "
            f"2 gloo processes x {two['threads']} threads vs 1 x {one['threads']} "
            f"(cpu, {os.cpu_count()} cores)"
        ),
        "a_per_s": two["per_s"],
        "b_per_s": one["per_s"],
        "unit": "samples/s (all processes)",
    }]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, a few steps")
    parser.add_argument("--worker", nargs=2, metavar=("DEVICES", "OUT"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(int(args.worker[0]), Path(args.worker[1]), args.quick)
    else:
        print(json.dumps(run(quick=args.quick), indent=2))
