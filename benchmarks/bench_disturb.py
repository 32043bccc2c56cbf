"""Disturbance cost per clip: Background Erasing, FAME and BE-on-DSM beside DSM's triplet build.

Every builder turns the same uint8 batch (B clips, plus the shifted clips of the same videos)
into normalised pretraining views on the same device, batched, with one seeded generator per
call (what ``VideoDataModule`` does each step). Rows (ratio = the remedy's clips/s over the
DSM triplet's, higher = cheaper than DSM's build; no goal, reported):

1. ``be_vs_dsm_triplet``: ``BackgroundErasingBuilder`` on the MoCo views (the study's ``be``).
2. ``fame_vs_dsm_triplet``: ``FAMEBuilder`` (frame differences, colour histograms, merge).
3. ``be_on_dsm_vs_dsm_triplet``: BE on top of the DSM triplet (the composed configuration).

The DSM triplet is ``TripletBuilder`` with its defaults (TPS + point warps, shift negative).
Run from the repo root: ``python -m benchmarks.bench_disturb [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import torch

from dsm_lightning.disturb import (
    BackgroundErasingBuilder,
    ClipTransform,
    FAMEBuilder,
    TripletBuilder,
    ViewBuilder,
)


def _builders() -> dict[str, ViewBuilder]:
    return {
        "dsm_triplet": TripletBuilder(),
        "be": BackgroundErasingBuilder(base=TripletBuilder.moco()),
        "fame": FAMEBuilder(),
        "be_on_dsm": BackgroundErasingBuilder(base=TripletBuilder()),
    }


def _seconds_per_call(call: Callable[[int], None], repeats: int) -> float:
    call(0)  # warm-up (allocations, kernel selection)
    start = time.perf_counter()
    for i in range(repeats):
        call(i + 1)
    return (time.perf_counter() - start) / repeats


def run(quick: bool = False) -> list[dict]:
    """Measure every builder on one batch shape; one row per remedy vs the DSM triplet."""
    batch, frames, size, crop, repeats = (4, 4, 40, 32, 2) if quick else (16, 16, 128, 112, 5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (batch, 3, frames, size, size), generator=g,
                          dtype=torch.uint8).to(device)
    shift = video.roll(1, dims=2)
    per_s: dict[str, float] = {}
    with torch.no_grad():
        transform = ClipTransform()
        for name, builder in _builders().items():
            def call(seed: int, builder: ViewBuilder = builder) -> None:
                builder(video, shift, transform=transform, size=crop,
                        generator=torch.Generator().manual_seed(seed))
                if device == "cuda":
                    torch.cuda.synchronize()

            per_s[name] = batch / _seconds_per_call(call, repeats)
    shape = f"B={batch}, T={frames}, {size}->{crop} px, {device}, {torch.get_num_threads()} threads"
    texts = {
        "be": "Background Erasing on MoCo views",
        "fame": "FAME (mask + merge, two-pass augmentation)",
        "be_on_dsm": "BE on top of the DSM triplet",
    }
    rows = []
    for name, text in texts.items():
        rows.append({
            "name": f"{name}_vs_dsm_triplet",
            "ratio": per_s[name] / per_s["dsm_triplet"],
            "goal": None,
            "what": f"{text} vs DSM TripletBuilder, clips/s ({shape})",
            "unit": "clips/s",
            "a_per_s": per_s[name],
            "b_per_s": per_s["dsm_triplet"],
            "ms_per_clip": 1000.0 / per_s[name],
            "dsm_triplet_ms_per_clip": 1000.0 / per_s["dsm_triplet"],
        })
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"threads={torch.get_num_threads()} cpus={os.cpu_count()}")
    print(json.dumps(run(quick=args.quick), indent=2))
