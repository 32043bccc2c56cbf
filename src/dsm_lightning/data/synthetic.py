"""Synthetic scene-biased video source: class = motion, scene = shortcut.

Each video shows one textured sprite over a background scene. The class is the sprite's
motion only; appearance (shape, colours, stripes, size) is drawn per video independently
of the class, and positions / angles / sizes start at random phases so that no single
frame reveals the class (the size at the middle frame has the same distribution for
"zoom in" and "zoom out"). Motions, in class order (the first ``num_classes`` are used):

====  ==================  ==========================================================
 id    name                motion (64 px frames; distances scale with ``size``)
====  ==================  ==========================================================
 0     move_right          translate +x, 1.5-2.5 px/frame, wrapping around the frame
 1     move_left           translate -x
 2     move_up             translate -y
 3     move_down           translate +y
 4     rotate_cw           rotate clockwise 5-9 deg/frame about a fixed centre
 5     rotate_ccw          rotate counter-clockwise
 6     zoom_in             scale grows ~1.7 %/frame (log-uniform start size)
 7     zoom_out            scale shrinks ~1.7 %/frame
 8-11  move_{up,down}_{right,left}  diagonal translations
====  ==================  ==========================================================

Scene ``k`` is a random crop of one image that ships with scikit-image (no download);
class ``k`` is tied to scene ``k``. Splits written (``n`` = ``videos_per_class``,
``m`` = ``eval_videos_per_class``):

- ``train`` (n per class), ``val`` (max(2, n // 6) per class), ``test`` (m per class):
  a fraction ``bias`` of each class on its own scene, the rest on random other scenes;
- ``swapped_test`` (m per class): never on its own scene;
- ``balanced_train`` (n per class), ``balanced_test`` (m per class): every class on every
  scene equally often, so motion is the only cue (docs/method.md "Measuring the effect");
- ``test_static``, ``swapped_test_static``, ``balanced_test_static``: the same videos as
  their source split with the middle frame repeated (no motion at all).

Files: ``<cache_dir>/<split>/<class>/<split>_<i>.mp4`` (H.264, CRF 10, 25 fps) and
``manifest.json``, written last; a complete cache with the same settings is reused.
Everything is deterministic given the settings (one RNG per video from ``seed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import av
import numpy as np

from dsm_lightning.progress import track

log = logging.getLogger(__name__)

FORMAT = "dsm-lightning-synthetic"
VERSION = 2
MOTIONS = (
    "move_right", "move_left", "move_up", "move_down", "rotate_cw", "rotate_ccw",
    "zoom_in", "zoom_out", "move_up_right", "move_up_left", "move_down_right", "move_down_left",
)
_DIRECTIONS = {
    "move_right": (1.0, 0.0), "move_left": (-1.0, 0.0), "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0), "move_up_right": (0.7071, -0.7071),
    "move_up_left": (-0.7071, -0.7071), "move_down_right": (0.7071, 0.7071),
    "move_down_left": (-0.7071, 0.7071),
}
#: scikit-image images that load offline, in scene order (grey ones get a tint).
SCENES = (
    "astronaut", "coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry",
    "retina", "colorwheel", "brick", "grass", "gravel", "camera",
)
SPLITS = (
    "train", "val", "test", "swapped_test", "balanced_train", "balanced_test",
    "test_static", "swapped_test_static", "balanced_test_static",
)
_TINTS = ((1.0, 0.85, 0.7), (0.7, 1.0, 0.75), (0.75, 0.8, 1.0), (1.0, 1.0, 0.6))
_SCALE_RANGE = (0.55, 1.7)
_SCENE_SIDE = 160  # scenes are pre-shrunk so their short side is this many pixels


def synthetic_settings(
    num_classes: int = 8,
    videos_per_class: int = 48,
    eval_videos_per_class: int = 16,
    num_frames: int = 48,
    size: int = 64,
    bias: float = 0.9,
    seed: int = 0,
    sprites: int = 3,
) -> dict[str, Any]:
    """Validated settings of a synthetic dataset (the cache key).

    Args:
        num_classes: Number of motion classes (1-12), also the number of scenes.
        videos_per_class: Videos per class in ``train`` and ``balanced_train``.
        eval_videos_per_class: Videos per class in each test split.
        num_frames: Frames per video.
        size: Frame height and width in pixels.
        bias: Fraction of each class on its own scene in train / val / test.
        seed: Generation seed.
        sprites: Sprites per video; all follow the video's class motion, each with its own
            appearance, position and phase (more of the frame moves, so motion is a visible
            share of the pixels rather than a detail).

    Returns:
        A JSON-serialisable dict.

    Raises:
        ValueError: A value is out of range.
    """
    if not 1 <= num_classes <= len(MOTIONS):
        raise ValueError(f"num_classes must be in [1, {len(MOTIONS)}], got {num_classes}")
    if videos_per_class < 1 or eval_videos_per_class < 1:
        raise ValueError(
            f"videos per class must be >= 1, got {videos_per_class}, {eval_videos_per_class}"
        )
    if num_frames < 3:
        raise ValueError(f"num_frames must be >= 3, got {num_frames}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    if sprites < 1:
        raise ValueError(f"sprites must be >= 1, got {sprites}")
    return {
        "num_classes": num_classes, "videos_per_class": videos_per_class,
        "eval_videos_per_class": eval_videos_per_class, "num_frames": num_frames,
        "size": size, "bias": float(bias), "seed": seed, "fps": 25, "sprites": sprites,
        "format": FORMAT, "version": VERSION,
    }


def settings_hash(settings: dict[str, Any]) -> str:
    """Short stable hash of the settings (names the default cache directory)."""
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def default_cache_dir(settings: dict[str, Any]) -> str:
    """``$DSM_LIGHTNING_CACHE`` (or ``~/.cache/dsm_lightning``) ``/synthetic-<hash>``."""
    base = os.environ.get("DSM_LIGHTNING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dsm_lightning"
    )
    return os.path.join(base, f"synthetic-{settings_hash(settings)}")


# ----------------------------------------------------------------------------- plan


def _plan(settings: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    """Every video to write: ``(split, index, label, scene, render_seed_split)``."""
    n_cls = settings["num_classes"]
    n, m = settings["videos_per_class"], settings["eval_videos_per_class"]
    counts = {"train": n, "val": max(2, n // 6), "test": m, "swapped_test": m,
              "balanced_train": n, "balanced_test": m}
    plan = []
    for code, split in enumerate(counts):
        rng = np.random.default_rng([settings["seed"], 1000 + code])
        index = 0
        for label in range(n_cls):
            per_class = counts[split]
            others = [s for s in range(n_cls) if s != label] or [label]
            if split.startswith("balanced"):
                offset = int(rng.integers(n_cls))
                scenes = [(offset + i) % n_cls for i in range(per_class)]
            elif split == "swapped_test":
                scenes = [int(rng.choice(others)) for _ in range(per_class)]
            else:
                own = int(round(settings["bias"] * per_class))
                scenes = [label] * own + [int(rng.choice(others)) for _ in range(per_class - own)]
                scenes = [scenes[i] for i in rng.permutation(per_class)]
            for scene in scenes:
                plan.append((split, index, label, scene, code))
                index += 1
    static = [(f"{split}_static", i, label, scene, code)
              for split, i, label, scene, code in plan
              if split in ("test", "swapped_test", "balanced_test")]
    return plan + static


# ----------------------------------------------------------------------------- render


def _load_scene(name: str, tint_index: int) -> np.ndarray:
    import skimage.data
    from PIL import Image

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        tint = np.asarray(_TINTS[tint_index % len(_TINTS)], dtype=np.float32)
        image = (image[..., None].astype(np.float32) * tint).clip(0, 255).astype(np.uint8)
    image = image[..., :3]
    h, w = image.shape[:2]
    scale = _SCENE_SIDE / min(h, w)
    pil = Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    return np.asarray(pil)


def load_scenes(num_scenes: int) -> list[np.ndarray]:
    """The first ``num_scenes`` scene images, uint8 (H, W, 3), short side 160 px."""
    return [_load_scene(name, i) for i, name in enumerate(SCENES[:num_scenes])]


def _background(scene: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    h, w = scene.shape[:2]
    side = int(min(h, w) * rng.uniform(0.55, 0.9))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(scene[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop).astype(np.float32) * rng.uniform(0.85, 1.15)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
    return np.asarray(rgb, dtype=np.float32) * np.float32(255)


def render_video(
    label: int,
    scene_image: np.ndarray,
    settings: dict[str, Any],
    rng: np.random.Generator,
    only_frame: int | None = None,
) -> np.ndarray:
    """Frames of one synthetic video.

    Args:
        label: Motion class index (see module docstring).
        scene_image: Scene image, uint8 (H, W, 3).
        settings: Output of ``synthetic_settings``.
        rng: Per-video random generator.
        only_frame: Render just this frame (same draws as the full video).

    Returns:
        uint8 array (T, size, size, 3), or (1, size, size, 3) with ``only_frame``.
    """
    size, frames = settings["size"], settings["num_frames"]
    motion = MOTIONS[label]
    unit = size / 64.0
    background = _background(scene_image, size, rng).astype(np.float32)
    out_frames = frames if only_frame is None else 1
    video = np.repeat(background[None], out_frames, axis=0)
    for _ in range(settings.get("sprites", 1)):
        # Sprite appearance: star-shaped blob, two-colour stripes, dark rim (class-independent).
        n_vertices = int(rng.integers(5, 9))
        radii = rng.uniform(0.55, 1.0, n_vertices)
        radii[0] = 1.0  # one pronounced tip so orientation is visible
        colour_a, colour_b = _hsv_colour(rng), _hsv_colour(rng) * 0.55
        stripe_freq, stripe_angle = rng.uniform(1.2, 2.2), rng.uniform(0, math.pi)
        base_radius = np.float32(rng.uniform(0.11, 0.17) * size)
        # Motion parameters with random phases.
        t = np.arange(frames, dtype=np.float32)
        centre = np.stack([np.full(frames, rng.uniform(0, size)), np.full(frames, rng.uniform(0, size))], 1)
        angle = np.full(frames, rng.uniform(0, 2 * math.pi), dtype=np.float32)
        scale = np.full(frames, math.exp(rng.uniform(*np.log(_SCALE_RANGE))), dtype=np.float32)
        if motion in _DIRECTIONS:
            speed = rng.uniform(1.5, 2.5) * unit
            direction = np.asarray(_DIRECTIONS[motion], dtype=np.float32)
            centre = centre + t[:, None] * speed * direction[None]
        elif motion.startswith("rotate"):
            omega = math.radians(rng.uniform(5.0, 9.0)) * (1 if motion == "rotate_cw" else -1)
            angle = angle + omega * t  # image y points down: positive angle turns clockwise
        else:
            lo, hi = np.log(_SCALE_RANGE)
            travel = 0.7 * (hi - lo)
            log_start = rng.uniform(lo, hi - travel)
            log_scale = log_start + travel * t / max(frames - 1, 1)
            scale = np.exp(log_scale if motion == "zoom_in" else (hi + lo) - log_scale)
            scale = scale.astype(np.float32)
        if only_frame is not None:
            keep = slice(only_frame, only_frame + 1)
            centre, angle, scale = centre[keep], angle[keep], scale[keep]
        centre, angle, scale = (np.asarray(a, dtype=np.float32) for a in (centre, angle, scale))
        # Vectorised over (T, H, W): toroidal offset to the centre; the costly sprite maths runs
        # only on pixels inside the sprite's bounding circle.
        ys, xs = np.meshgrid(np.arange(size, dtype=np.float32) + 0.5,
                             np.arange(size, dtype=np.float32) + 0.5, indexing="ij")
        half = np.float32(size / 2)
        dx = (xs[None] - centre[:, 0, None, None] + half) % size - half
        dy = (ys[None] - centre[:, 1, None, None] + half) % size - half
        radius = base_radius * scale
        near = dx * dx + dy * dy < (radius * radius)[:, None, None]
        ti, yi, xi = np.nonzero(near)
        dx, dy = dx[ti, yi, xi], dy[ti, yi, xi]
        cos, sin, radius = np.cos(angle)[ti], np.sin(angle)[ti], radius[ti]
        u = (cos * dx + sin * dy) / radius
        v = (-sin * dx + cos * dy) / radius
        dist = np.sqrt(u * u + v * v)
        theta = (np.arctan2(v, u) % (2 * math.pi)) / (2 * math.pi) * n_vertices
        lower = np.floor(theta).astype(np.int64) % n_vertices
        frac = theta - np.floor(theta)
        edge = radii[lower] * (1 - frac) + radii[(lower + 1) % n_vertices] * frac
        inside = dist < edge
        rim = dist[inside] > edge[inside] - 0.14
        stripes = np.floor((u * math.cos(stripe_angle) + v * math.sin(stripe_angle)) * stripe_freq)
        sprite = np.where((stripes[inside] % 2 == 0)[:, None], colour_a, colour_b)
        sprite = np.where(rim[:, None], sprite * np.float32(0.25), sprite)
        video[ti[inside], yi[inside], xi[inside]] = sprite
    return video.clip(0, 255).astype(np.uint8)


def write_video(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Encode uint8 frames (T, H, W, 3) as near-lossless H.264 (CRF 10) with PyAV."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast", "threads": "1"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


_WORKER: dict[str, Any] = {}


def _init_worker(scenes: list[np.ndarray], settings: dict[str, Any], root: str) -> None:
    _WORKER.update(scenes=scenes, settings=settings, root=root)


def _relpath(split: str, index: int, label: int) -> str:
    return os.path.join(split, MOTIONS[label], f"{split}_{index:05d}.mp4")


def _make_one(task: tuple[str, int, int, int, int]) -> str:
    split, index, label, scene, code = task
    settings = _WORKER["settings"]
    rng = np.random.default_rng([settings["seed"], code, index])
    if split.endswith("_static"):
        middle = settings["num_frames"] // 2
        frame = render_video(label, _WORKER["scenes"][scene], settings, rng, only_frame=middle)
        frames = np.repeat(frame, settings["num_frames"], axis=0)
    else:
        frames = render_video(label, _WORKER["scenes"][scene], settings, rng)
    rel = _relpath(split, index, label)
    write_video(os.path.join(_WORKER["root"], rel), frames, settings["fps"])
    return rel


def read_manifest(cache_dir: str) -> dict[str, Any] | None:
    """The manifest of a complete cache, or None."""
    path = os.path.join(cache_dir, "manifest.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if manifest.get("format") == FORMAT else None


def generate_synthetic(
    cache_dir: str, settings: dict[str, Any], workers: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Write the synthetic dataset into ``cache_dir`` unless a complete copy is there.

    Args:
        cache_dir: Target directory.
        settings: Output of ``synthetic_settings``.
        workers: Encoding processes (None = number of CPUs; small sets run in-process).
        progress: Show progress (a bar on a terminal, periodic lines otherwise).

    Returns:
        The manifest: ``settings``, ``class_names``, ``scene_names`` and ``splits`` mapping
        each split to a list of ``{"path", "label", "scene"}`` (paths relative to the cache).
    """
    manifest = read_manifest(cache_dir)
    if manifest is not None and manifest["settings"] == settings:
        return manifest
    if manifest is not None:
        log.warning("%s holds a synthetic set with other settings; regenerating", cache_dir)
    for split in SPLITS:
        shutil.rmtree(os.path.join(cache_dir, split), ignore_errors=True)
    os.makedirs(cache_dir, exist_ok=True)
    n_cls = settings["num_classes"]
    scenes = load_scenes(n_cls)
    plan = _plan(settings)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(plan) < 64:
        _init_worker(scenes, settings, cache_dir)
        for task in track(plan, "synthetic videos", unit="video", enabled=progress):
            _make_one(task)
    else:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker,
            initargs=(scenes, settings, cache_dir),
        ) as pool:
            done = pool.map(_make_one, plan, chunksize=8)
            for _ in track(done, "synthetic videos", len(plan), "video", enabled=progress):
                pass
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for split, index, label, scene, _ in plan:
        splits[split].append({"path": _relpath(split, index, label), "label": label, "scene": scene})
    manifest = {
        "format": FORMAT, "version": VERSION, "settings": settings,
        "class_names": list(MOTIONS[:n_cls]), "scene_names": list(SCENES[:n_cls]),
        "splits": splits,
    }
    tmp = os.path.join(cache_dir, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, os.path.join(cache_dir, "manifest.json"))
    return manifest
