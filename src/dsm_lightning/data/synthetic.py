"""Synthetic scene-biased video sources: class = motion, scene = shortcut.

Each video shows textured sprites (the *actors*) over a background scene. The class is the
actors' motion only; appearance (shape, colours, stripes, size) is drawn per video
independently of the class, and positions / angles / sizes start at random phases so that
no single frame reveals the class (the size at the middle frame has the same distribution
for "zoom in" and "zoom out"). Motions, in class order (the first ``num_classes`` are used):

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

Scene ``k`` is a random crop of scene image ``k``; class ``k`` is tied to scene ``k``. The
generator has named presets (``PRESETS``, one registered source each, see
``data/sources/synthetic.py``) that differ in character:

=============  ==============================  =======================  ==================
 preset         scenes (``scene_kind``)         actors                   other motion
=============  ==============================  =======================  ==================
 ``photo``      scikit-image photos             3, base size             none
 ``camera``     smooth low-frequency fields     1, 1.6x larger           camera pan + zoom
 ``clutter``    high-frequency textures         4, 0.65x smaller         5 distractors
=============  ==============================  =======================  ==================

Rendering (scenes, actors, distractors, camera) lives in ``data/synthetic_render.py``.
Splits written (``n`` = ``videos_per_class``, ``m`` = ``eval_videos_per_class``):

- ``train`` (n per class), ``val`` (max(2, n // 6) per class), ``test`` (m per class):
  a fraction ``bias`` of each class on its own scene, the rest on random other scenes;
- ``swapped_test`` (m per class): never on its own scene;
- ``balanced_train`` (n per class), ``balanced_test`` (m per class): every class on every
  scene equally often, so motion is the only cue (docs/method.md "Measuring the effect");
- ``test_static``, ``swapped_test_static``, ``balanced_test_static``: the same videos as
  their source split with the middle frame repeated (no motion at all).

Files: ``<cache_dir>/<split>/<class>/<split>_<i>.mp4`` (H.264, CRF 10, 25 fps) and
``manifest.json``, written last; a complete cache with the same settings is reused.
Everything is deterministic given the settings (one RNG per video from ``seed``), so the
true foreground masks are re-rendered on demand (``ForegroundMasks``) rather than stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import av
import numpy as np

from dsm_lightning._checks import check_at_least, check_choice, check_fraction, check_int
from dsm_lightning.data.synthetic_render import (
    MOTIONS,
    SCENE_KINDS,
    SCENES,
    load_scenes,
    render_video,
    scene_images,
    scene_names,
)
from dsm_lightning.progress import track

__all__ = [
    "FORMAT", "MOTIONS", "PRESETS", "SCENES", "SCENE_KINDS", "SPLITS", "VERSION",
    "ForegroundMasks", "default_cache_dir", "generate_synthetic", "load_scenes",
    "read_manifest", "render_planned", "render_video", "scene_images", "scene_names",
    "settings_hash", "synthetic_settings", "write_video",
]

log = logging.getLogger(__name__)

FORMAT = "dsm-lightning-synthetic"
VERSION = 2
SPLITS = (
    "train", "val", "test", "swapped_test", "balanced_train", "balanced_test",
    "test_static", "swapped_test_static", "balanced_test_static",
)
#: The extended settings and their defaults (the original generator's behaviour); a value
#: equal to its default is left out of the settings dict, so the original dataset keeps
#: its cache key.
EXTENDED_DEFAULTS: dict[str, Any] = {
    "scene_kind": "photo", "actor_scale": 1.0, "distractors": 0, "camera_speed": 0.0,
    "camera_zoom": 0.0,
}
#: Named presets: the settings of each that differ from ``synthetic_settings``'s defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "photo": {},
    "camera": {"sprites": 1, "actor_scale": 1.6, "scene_kind": "smooth",
               "camera_speed": 0.6, "camera_zoom": 0.004},
    "clutter": {"sprites": 4, "actor_scale": 0.65, "scene_kind": "texture", "distractors": 5},
}


def synthetic_settings(
    num_classes: int = 8,
    videos_per_class: int = 48,
    eval_videos_per_class: int = 16,
    num_frames: int = 48,
    size: int = 64,
    bias: float = 0.9,
    seed: int = 0,
    sprites: int = 3,
    *,
    scene_kind: str = "photo",
    actor_scale: float = 1.0,
    distractors: int = 0,
    camera_speed: float = 0.0,
    camera_zoom: float = 0.0,
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
        sprites: Actors per video; all follow the video's class motion, each with its own
            appearance, position and phase (more of the frame moves, so motion is a visible
            share of the pixels rather than a detail).
        scene_kind: Scene images: ``"photo"`` (scikit-image), ``"smooth"`` (low-frequency
            colour fields) or ``"texture"`` (high-frequency textures).
        actor_scale: Actor size relative to the original (radius 11-17 % of the frame).
        distractors: Class-independent moving discs per video (oscillating or orbiting).
        camera_speed: Largest camera pan in px/frame at 64 px (0 = still camera).
        camera_zoom: Largest camera log-zoom per frame (0 = no zoom).

    Returns:
        A JSON-serialisable dict (extended settings only where they differ from their
        defaults, ``EXTENDED_DEFAULTS``).

    Raises:
        ValueError: A value is out of range (named).
    """
    check_int("num_classes", num_classes)
    if num_classes > len(MOTIONS):
        raise ValueError(f"num_classes must be in [1, {len(MOTIONS)}], got {num_classes}")
    check_int("videos_per_class", videos_per_class)
    check_int("eval_videos_per_class", eval_videos_per_class)
    check_int("num_frames", num_frames, minimum=3)
    check_int("size", size, minimum=16)
    check_fraction("bias", bias)
    check_int("sprites", sprites)
    check_choice("scene_kind", scene_kind, SCENE_KINDS)
    check_fraction("actor_scale", actor_scale, 0.0, 4.0, open_low=True)
    check_int("distractors", distractors, minimum=0)
    check_at_least("camera_speed", camera_speed)
    check_fraction("camera_zoom", camera_zoom, 0.0, 0.05)
    settings = {
        "num_classes": num_classes, "videos_per_class": videos_per_class,
        "eval_videos_per_class": eval_videos_per_class, "num_frames": num_frames,
        "size": size, "bias": float(bias), "seed": seed, "fps": 25, "sprites": sprites,
        "format": FORMAT, "version": VERSION,
    }
    extended = {"scene_kind": scene_kind, "actor_scale": float(actor_scale),
                "distractors": distractors, "camera_speed": float(camera_speed),
                "camera_zoom": float(camera_zoom)}
    settings.update({k: v for k, v in extended.items() if v != EXTENDED_DEFAULTS[k]})
    return settings


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


def write_video(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Encode uint8 frames (T, H, W, 3) as near-lossless H.264 (CRF 10) with PyAV."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # mbtree=0: x264's macroblock-tree rate control gave other bytes for the same frames
        # from one process to the next; without it the encoding is byte-identical
        stream.options = {"crf": "10", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
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


def render_planned(
    task: tuple[str, int, int, int, int], scenes: list[np.ndarray], settings: dict[str, Any],
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames (and true actor mask) of one planned video, from its own RNG.

    Args:
        task: ``(split, index, label, scene, split_code)``, an entry of the plan.
        scenes: The scene images (``scene_images``).
        settings: Output of ``synthetic_settings``.
        return_mask: Also return the actor mask.

    Returns:
        uint8 (T, S, S, 3) frames; with ``return_mask`` a pair (frames, bool (T, S, S)
        mask). ``*_static`` videos repeat the middle frame (and its mask).
    """
    split, index, label, scene, code = task
    rng = np.random.default_rng([settings["seed"], code, index])
    frames = settings["num_frames"]
    middle = frames // 2 if split.endswith("_static") else None
    out = render_video(label, scenes[scene], settings, rng, only_frame=middle,
                       return_mask=return_mask)
    if middle is None:
        return out
    if return_mask:
        return np.repeat(out[0], frames, axis=0), np.repeat(out[1], frames, axis=0)
    return np.repeat(out, frames, axis=0)


def _make_one(task: tuple[str, int, int, int, int]) -> str:
    settings = _WORKER["settings"]
    frames = render_planned(task, _WORKER["scenes"], settings)
    rel = _relpath(task[0], task[1], task[2])
    write_video(os.path.join(_WORKER["root"], rel), frames, settings["fps"])
    return rel


class ForegroundMasks(Sequence):
    """The true actor masks of one split, re-rendered on demand from each video's RNG.

    ``masks[i]`` is the bool (T, S, S) mask of the split's ``i``-th video (manifest order),
    True where an actor (not a distractor) is drawn; it aligns with the decoded frames
    (same size, every frame). Nothing is stored: a mask costs one rendering.

    Args:
        settings: Output of ``synthetic_settings``.
        split: A split name (``SPLITS``).

    Raises:
        ValueError: unknown split.
    """

    def __init__(self, settings: dict[str, Any], split: str) -> None:
        check_choice("split", split, SPLITS)
        self.settings, self.split = settings, split
        self._tasks = [task for task in _plan(settings) if task[0] == split]
        self._scenes: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if self._scenes is None:
            self._scenes = scene_images(self.settings.get("scene_kind", "photo"),
                                        self.settings["num_classes"])
        _, mask = render_planned(self._tasks[index], self._scenes, self.settings, True)
        return mask


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
    kind = settings.get("scene_kind", "photo")
    scenes = scene_images(kind, n_cls)
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
        "class_names": list(MOTIONS[:n_cls]), "scene_names": scene_names(kind, n_cls),
        "splits": splits,
    }
    tmp = os.path.join(cache_dir, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, os.path.join(cache_dir, "manifest.json"))
    return manifest
