"""Triplet build throughput: batched ``TripletBuilder`` vs a naive per-sample/per-frame loop,
and its cost relative to one R3D-18 pretraining step.

Comparisons (same device, CPU here, torch threads = all cores):

1. ``triplet_vs_naive_loop``: clips/s of the whole triplet build (simple augmentations for
   anchor and positive, SLD warp of the positive, TLD negative: the shifted clip with the
   anchor's augmentation or a frame re-ordering) of ``TripletBuilder`` vs ``naive_triplet``
   below, a loop over samples and frames with torchvision per-frame ops (like the public DSM
   code, though that one even loops over pixels for its warp: it runs at 52 clips/s on this
   machine, quoted as context). Goal: >= 20x (the issue's >= 1000 clips/s).
2. ``r3d18_step_over_triplet``: time of one DSM pretraining step approximated as two
   forward+backward passes of torchvision ``r3d_18`` on the batch (query on anchor and on
   negative; the no-grad key pass and the optimiser are left out, so the step is
   under-estimated and the ratio conservative) over the triplet build time. Goal: >= 20
   (triplet build <= 5% of a step).

Run from the repo root: ``python -m benchmarks.bench_triplet [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF

from dsm_lightning.disturb import KINETICS_MEAN, KINETICS_STD, ClipTransform, TripletBuilder

PUBLIC_CODE_CLIPS_PER_S = 52.0


def _simple_draw(rng: random.Random, size: int) -> dict:
    area = rng.uniform(0.4, 1.0) * size * size
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(size, round(math.sqrt(area * ratio)))
    h = min(size, round(math.sqrt(area / ratio)))
    jitter = rng.random() < 0.8
    return {
        "top": rng.randint(0, size - h),
        "left": rng.randint(0, size - w),
        "h": h,
        "w": w,
        "flip": rng.random() < 0.5,
        "angle": rng.uniform(-10, 10),
        "b": rng.uniform(0.5, 1.5) if jitter else 1.0,
        "c": rng.uniform(0.5, 1.5) if jitter else 1.0,
        "s": rng.uniform(0.75, 1.25) if jitter else 1.0,
        "hue": rng.uniform(-0.5, 0.5) if jitter else 0.0,
        "gray": rng.random() < 0.2,
    }


def _frame(frame: torch.Tensor, p: dict, out: int) -> torch.Tensor:
    """Simple augmentation of one (3, H, W) uint8 frame -> float (3, out, out) in [0, 1]."""
    x = TF.resized_crop(frame, p["top"], p["left"], p["h"], p["w"], [out, out], antialias=False)
    if p["flip"]:
        x = TF.horizontal_flip(x)
    x = TF.rotate(x, p["angle"])
    x = TF.adjust_brightness(x, p["b"])
    x = TF.adjust_contrast(x, p["c"])
    x = TF.adjust_saturation(x, p["s"])
    x = TF.adjust_hue(x, p["hue"])
    if p["gray"]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    return x.float() / 255


def _point_warp_grid(rng: random.Random, size: int) -> torch.Tensor:
    """One clip's point-warp sampling grid (1, S, S, 2), centres looped over."""
    axis = (torch.arange(size) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx, yy], dim=-1)
    for _ in range(rng.randint(1, 3)):
        cx, cy = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
        length = rng.uniform(10, 20) * 2 / 112
        angle = rng.uniform(0, 2 * math.pi)
        sx, sy = length * math.cos(angle), length * math.sin(angle)
        d = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        fall = 1 / (3 * (d / length) ** 4 + 1)
        grid = grid - torch.stack([sx * fall, sy * fall], dim=-1)
    return grid[None]


def naive_triplet(
    video: torch.Tensor, video_shift: torch.Tensor, size: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Reference: the same triplet with loops over samples and frames (torchvision per frame).

    Args:
        video: (B, 3, T, H, W) uint8.
        video_shift: (B, 3, T, H, W) uint8.
        size: crop size.
        seed: Python RNG seed.

    Returns:
        anchor / positive / negative (B, 3, T, S, S) normalised float32.
    """
    rng = random.Random(seed)
    mean = torch.tensor(KINETICS_MEAN).view(3, 1, 1)
    std = torch.tensor(KINETICS_STD).view(3, 1, 1)
    anchors, positives, negatives = [], [], []
    for b in range(video.shape[0]):
        pa, pp = _simple_draw(rng, video.shape[-1]), _simple_draw(rng, video.shape[-1])
        grid = _point_warp_grid(rng, size)
        a, p, n = [], [], []
        for t in range(video.shape[2]):
            a.append((_frame(video[b, :, t], pa, size) - mean) / std)
            n.append((_frame(video_shift[b, :, t], pa, size) - mean) / std)
            warped = F.grid_sample(
                _frame(video[b, :, t], pp, size)[None], grid, align_corners=False
            )[0]
            p.append((warped - mean) / std)
        anchors.append(torch.stack(a, 1))
        positives.append(torch.stack(p, 1))
        negatives.append(torch.stack(n, 1))
    return {
        "anchor": torch.stack(anchors),
        "positive": torch.stack(positives),
        "negative": torch.stack(negatives),
    }


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _grid_sample_roofline(batch: int, frames: int, size: int, repeats: int) -> dict:
    """Clips/s of the least work a triplet needs: one bilinear ``grid_sample`` producing the
    three float32 output clips (anchor, positive, negative) from float input already in the
    fastest (channels-last) layout, with no conversion, colour map or normalisation."""
    x = torch.rand(batch, 3 * 3 * frames, size, size).contiguous(
        memory_format=torch.channels_last
    )
    theta = torch.tensor([[0.8, 0.1, 0.05], [-0.1, 0.8, 0.0]]).expand(batch, 2, 3)
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)
    seconds = _time(lambda: F.grid_sample(x, grid, align_corners=False), repeats)
    out_bytes = 3 * 3 * frames * size * size * 4
    return {
        "what": (
            "bare F.grid_sample (bilinear, channels-last float32 input) writing the 3 output "
            "clips of each sample"
        ),
        "clips_per_s": batch / seconds,
        "output_bytes_per_clip": out_bytes,
        "output_gb_per_s": batch * out_bytes / seconds / 1e9,
    }


def run(quick: bool = False) -> list[dict]:
    """Run both comparisons; ``quick`` uses tiny shapes (a few seconds)."""
    torch.set_num_threads(os.cpu_count() or 1)
    batch, frames, size = (2, 4, 32) if quick else (8, 16, 112)
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (batch, 3, frames, size, size), dtype=torch.uint8, generator=g)
    shifted = torch.randint(0, 256, video.shape, dtype=torch.uint8, generator=g)
    builder = TripletBuilder(
        negative_kinds=("shift", "swap", "insert", "shuffle", "reverse", "static"), seed=0)
    transform = ClipTransform()
    with torch.no_grad():
        ours_s = _time(lambda: builder(video, shifted, transform=transform, size=size),
                       2 if quick else 10)
        naive_s = _time(lambda: naive_triplet(video, shifted, size), 1 if quick else 2)
    ours_per_s, naive_per_s = batch / ours_s, batch / naive_s
    shape = f"{batch}x3x{frames}x{size}x{size} uint8"
    device = f"cpu, {torch.get_num_threads()} threads"

    roofline = _grid_sample_roofline(batch, frames, size, 2 if quick else 10)
    model = torchvision.models.video.r3d_18()
    step_batch = 1 if quick else batch
    clips = torch.randn(step_batch, 3, frames, size, size)

    def encoder_pass() -> None:
        model.zero_grad(set_to_none=True)
        model(clips).sum().backward()

    pass_s = _time(encoder_pass, 1)
    step_s = 2 * pass_s * batch / step_batch
    return [
        {
            "name": "triplet_vs_naive_loop",
            "ratio": ours_per_s / naive_per_s,
            "goal": 20.0,
            "what": (
                f"TripletBuilder (simple augs + SLD tps/points + TLD shift/frame kinds) vs a "
                f"per-sample, per-frame torchvision loop; {shape} -> {size}px; {device}"
            ),
            "a_per_s": ours_per_s,
            "b_per_s": naive_per_s,
            "unit": "clips/s",
            "public_code_per_s": PUBLIC_CODE_CLIPS_PER_S,
            "ratio_vs_public_code": ours_per_s / PUBLIC_CODE_CLIPS_PER_S,
            "goal_a_per_s": 1000.0,
            "roofline": {
                **roofline,
                "builder_fraction_of_roofline": ours_per_s / roofline["clips_per_s"],
                "builder_output_gb_per_s": ours_per_s * roofline["output_bytes_per_clip"] / 1e9,
            },
        },
        {
            "name": "r3d18_step_over_triplet",
            "ratio": step_s / ours_s,
            "goal": 20.0,
            "what": (
                "one DSM step approximated as 2 x (forward + backward) of torchvision r3d_18 "
                f"(measured at batch {step_batch}, scaled to {batch}) vs the triplet build; "
                f"{shape}; {device}"
            ),
            "a_s": step_s,
            "b_s": ours_s,
            "unit": "s per batch",
            "triplet_percent_of_step": 100.0 * ours_s / step_s,
        },
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, a few seconds")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
