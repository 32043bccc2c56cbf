"""Rendering of the synthetic scene-biased videos: scenes, actors, distractors, camera.

A video is a background crop of a *scene image* with *actors* drawn over it: textured star
shaped sprites that all follow the video's class motion (``MOTIONS``). Optional parts, all
class-independent:

- **scene kinds** (``SCENE_KINDS``): ``"photo"`` (images that ship with scikit-image),
  ``"smooth"`` (procedural low-frequency colour fields) and ``"texture"`` (procedural
  high-frequency textures). Scene ``k`` is the same image for every video and seed;
- **distractors**: plain discs that oscillate or orbit with random amplitude, period and
  phase (never the constant-velocity translation, rotation or zoom of a class), drawn
  under the actors;
- **camera**: the whole view pans at a random direction and speed and zooms in or out at a
  random rate, the same motion for every class; the background is sampled from a larger
  canvas, the actors' positions and sizes go through the same transform.

The true foreground of a video is the set of pixels showing an actor (distractors are
background), one (H, W) mask per frame, returned by ``render_video(..., return_mask=True)``
from the same random draws as the frames. The original generator's draws and arithmetic are
kept unchanged, so its videos stay bit-identical (tests/data/test_synthetic.py).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "MOTIONS", "SCENES", "SCENE_KINDS", "load_scenes", "render_video", "scene_images",
    "scene_names",
]

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
#: Kinds of scene images: scikit-image photos, procedural smooth fields, procedural textures.
SCENE_KINDS = ("photo", "smooth", "texture")
_TINTS = ((1.0, 0.85, 0.7), (0.7, 1.0, 0.75), (0.75, 0.8, 1.0), (1.0, 1.0, 0.6))
_SCALE_RANGE = (0.55, 1.7)
_SCENE_SIDE = 160  # scenes are pre-shrunk so their short side is this many pixels
_PROCEDURAL_SEED = 7919  # procedural scene k is drawn from default_rng([_PROCEDURAL_SEED, kind, k])


# ----------------------------------------------------------------------------- scenes


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
    """The first ``num_scenes`` photo scenes, uint8 (H, W, 3), short side 160 px."""
    return [_load_scene(name, i) for i, name in enumerate(SCENES[:num_scenes])]


def _upsample(grid: np.ndarray, side: int, nearest: bool = False) -> np.ndarray:
    """(h, w, 3) float grid in [0, 1] -> (side, side, 3) float32 (bicubic or nearest)."""
    from PIL import Image

    channels = [
        np.asarray(Image.fromarray(grid[..., c].astype(np.float32), mode="F").resize(
            (side, side), Image.NEAREST if nearest else Image.BICUBIC))
        for c in range(grid.shape[-1])
    ]
    return np.stack(channels, -1)


def _palette(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Two colours (3,) in [0, 1] of scene ``index``: a bright one and a darker one whose
    hues sit apart; scene hues step by the golden ratio, so neighbouring scenes differ."""
    import colorsys

    hue = (index * 0.618034 + rng.uniform(-0.05, 0.05)) % 1.0
    first = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 0.9), rng.uniform(0.75, 1.0))
    second = colorsys.hsv_to_rgb((hue + rng.uniform(0.1, 0.25)) % 1.0, rng.uniform(0.4, 0.9),
                                 rng.uniform(0.15, 0.45))
    return np.asarray(first), np.asarray(second)


def _procedural_scene(kind: str, index: int) -> np.ndarray:
    """Scene ``index`` of a procedural kind, uint8 (160, 160, 3); the same for every seed.

    ``smooth``: two scene colours blended by a low-frequency field (8x8 grid, bicubic,
    stretched to full contrast) under a linear brightness gradient. ``texture``: two scene colours blended by blocky
    high-frequency noise (2-4 px cells) times fine oriented stripes, plus pixel noise.
    """
    rng = np.random.default_rng([_PROCEDURAL_SEED, SCENE_KINDS.index(kind), index])
    side = _SCENE_SIDE
    first, second = _palette(rng, index)
    ys, xs = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    if kind == "smooth":
        field = _upsample(rng.random((8, 8, 1)), side)[..., 0]
        field = (field - field.min()) / (field.max() - field.min())  # full contrast
        angle = rng.uniform(0, 2 * math.pi)
        ramp = 0.8 + 0.4 * (math.cos(angle) * xs + math.sin(angle) * ys - 0.5)
        image = (first * (1 - field[..., None]) + second * field[..., None]) * ramp[..., None]
    else:
        cell = int(rng.integers(2, 5))
        blocks = _upsample(rng.random((side // cell + 1, side // cell + 1, 1)),
                           (side // cell + 1) * cell, nearest=True)[:side, :side, 0]
        angle, period = rng.uniform(0, math.pi), rng.uniform(3.0, 6.0)
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * side
                                     * (math.cos(angle) * xs + math.sin(angle) * ys) / period)
        field = (0.6 * blocks + 0.4 * stripes)[..., None]
        image = first * (1 - field) + second * field + rng.normal(0, 0.05, (side, side, 3))
    return (image.clip(0, 1) * 255).astype(np.uint8)


def scene_images(kind: str, num_scenes: int) -> list[np.ndarray]:
    """The first ``num_scenes`` scene images of a kind (``SCENE_KINDS``), uint8 (H, W, 3).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "photo":
        return load_scenes(num_scenes)
    if kind not in SCENE_KINDS:
        raise ValueError(f"scene_kind must be one of {SCENE_KINDS}, got scene_kind={kind!r}")
    return [_procedural_scene(kind, k) for k in range(num_scenes)]


def scene_names(kind: str, num_scenes: int) -> list[str]:
    """Names of the first ``num_scenes`` scenes (``astronaut``, ... or ``smooth_0``, ...)."""
    if kind == "photo":
        return list(SCENES[:num_scenes])
    return [f"{kind}_{k}" for k in range(num_scenes)]


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


# ----------------------------------------------------------------------------- sprites


class _Sprite(NamedTuple):
    """Appearance of a sprite: star outline, two-colour stripes, optional dark rim."""

    radii: np.ndarray  # (V,) outline radius at V evenly spaced angles (1 = base radius)
    colour_a: np.ndarray  # (3,) float32 0-255
    colour_b: np.ndarray
    stripe_freq: float
    stripe_angle: float
    base_radius: np.float32  # pixels
    rim: bool


class _Track(NamedTuple):
    """Per-frame pose of a sprite, float arrays over all T frames."""

    centre: np.ndarray  # (T, 2) x, y in pixels
    angle: np.ndarray  # (T,) radians
    scale: np.ndarray  # (T,)


def _hsv_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.6, 1.0),
                value: tuple[float, float] = (0.75, 1.0)) -> np.ndarray:
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return np.asarray(rgb, dtype=np.float32) * np.float32(255)


def _actor(motion: str, settings: dict[str, Any], rng: np.random.Generator) -> tuple[_Sprite, _Track]:
    """Draw one actor: class-independent appearance, the class motion at a random phase."""
    size, frames = settings["size"], settings["num_frames"]
    unit = size / 64.0
    # Sprite appearance: star-shaped blob, two-colour stripes, dark rim (class-independent).
    n_vertices = int(rng.integers(5, 9))
    radii = rng.uniform(0.55, 1.0, n_vertices)
    radii[0] = 1.0  # one pronounced tip so orientation is visible
    colour_a, colour_b = _hsv_colour(rng), _hsv_colour(rng) * 0.55
    stripe_freq, stripe_angle = rng.uniform(1.2, 2.2), rng.uniform(0, math.pi)
    base_radius = np.float32(rng.uniform(0.11, 0.17) * size * settings.get("actor_scale", 1.0))
    sprite = _Sprite(radii, colour_a, colour_b, stripe_freq, stripe_angle, base_radius, True)
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
    return sprite, _Track(centre, angle, scale)


def _distractor(settings: dict[str, Any], rng: np.random.Generator) -> tuple[_Sprite, _Track]:
    """Draw one distractor: a plain muted disc that oscillates along a line or orbits."""
    size, frames = settings["size"], settings["num_frames"]
    unit = size / 64.0
    colour = _hsv_colour(rng, (0.1, 0.5), (0.35, 0.9))
    sprite = _Sprite(rng.uniform(0.85, 1.0, 12), colour, colour, 1.0, 0.0,
                     np.float32(rng.uniform(0.06, 0.1) * size), False)
    t = np.arange(frames, dtype=np.float64)
    start = rng.uniform(0, size, 2)
    amplitude = rng.uniform(3.0, 9.0) * unit
    phase = 2 * math.pi * (t / rng.uniform(10.0, 30.0) + rng.random())
    if rng.random() < 0.5:  # back and forth along a random axis
        axis = rng.uniform(0, math.pi)
        offset = np.sin(phase)[:, None] * np.asarray([math.cos(axis), math.sin(axis)])
    else:  # circular orbit, either sense
        offset = np.stack([np.cos(phase), np.sin(phase) * rng.choice((-1.0, 1.0))], 1)
    track = _Track(start[None] + amplitude * offset, np.zeros(frames), np.ones(frames))
    return sprite, track


def _draw(video: np.ndarray, sprite: _Sprite, track: _Track, mask: np.ndarray | None) -> None:
    """Paint a sprite into ``video`` (T, S, S, 3) float32 in place (and into ``mask``)."""
    size = video.shape[1]
    centre, angle, scale = (np.asarray(a, dtype=np.float32) for a in track)
    n_vertices, radii = len(sprite.radii), sprite.radii
    # Vectorised over (T, H, W): toroidal offset to the centre (per column and per row);
    # the costly sprite maths runs only on pixels inside the sprite's bounding circle.
    pixels = np.arange(size, dtype=np.float32) + 0.5
    half = np.float32(size / 2)
    dx = (pixels[None] - centre[:, 0, None] + half) % size - half  # (T, W)
    dy = (pixels[None] - centre[:, 1, None] + half) % size - half  # (T, H)
    radius = sprite.base_radius * scale
    near = (dx * dx)[:, None, :] + (dy * dy)[:, :, None] < (radius * radius)[:, None, None]
    ti, yi, xi = np.nonzero(near)
    dx, dy = dx[ti, xi], dy[ti, yi]
    cos, sin, radius = np.cos(angle)[ti], np.sin(angle)[ti], radius[ti]
    u = (cos * dx + sin * dy) / radius
    v = (-sin * dx + cos * dy) / radius
    dist = np.sqrt(u * u + v * v)
    theta = (np.arctan2(v, u) % (2 * math.pi)) / (2 * math.pi) * n_vertices
    lower = np.floor(theta).astype(np.int64) % n_vertices
    frac = theta - np.floor(theta)
    edge = radii[lower] * (1 - frac) + radii[(lower + 1) % n_vertices] * frac
    inside = dist < edge
    stripes = np.floor((u * math.cos(sprite.stripe_angle) + v * math.sin(sprite.stripe_angle))
                       * sprite.stripe_freq)
    colours = np.where((stripes[inside] % 2 == 0)[:, None], sprite.colour_a, sprite.colour_b)
    if sprite.rim:
        rim = dist[inside] > edge[inside] - 0.14
        colours = np.where(rim[:, None], colours * np.float32(0.25), colours)
    video[ti[inside], yi[inside], xi[inside]] = colours
    if mask is not None:
        mask[ti[inside], yi[inside], xi[inside]] = True


# ----------------------------------------------------------------------------- camera


class _Camera(NamedTuple):
    """Per-frame view: pan (T, 2) pixels from the canvas centre, zoom (T,) >= 1."""

    pan: np.ndarray
    zoom: np.ndarray


def _camera_canvas(settings: dict[str, Any]) -> int:
    """Side of the background canvas that holds every camera window of the video."""
    size = settings["size"]
    travel = settings.get("camera_speed", 0.0) * size / 64.0 * (settings["num_frames"] - 1)
    return size + math.ceil(travel) + 4


def _camera(settings: dict[str, Any], rng: np.random.Generator) -> _Camera:
    """Draw a camera motion: pan at 50-100 % of ``camera_speed`` px/frame in a random
    direction, centred on the middle frame; log-zoom rate uniform in +-``camera_zoom``,
    zoom 1 at the first (zoom in) or last (zoom out) frame."""
    frames = settings["num_frames"]
    t = np.arange(frames, dtype=np.float64)
    speed = settings.get("camera_speed", 0.0) * settings["size"] / 64.0 * rng.uniform(0.5, 1.0)
    heading = rng.uniform(0, 2 * math.pi)
    pan = (t - (frames - 1) / 2)[:, None] * speed * np.asarray([math.cos(heading), math.sin(heading)])
    rate = settings.get("camera_zoom", 0.0) * rng.uniform(-1.0, 1.0)
    zoom = np.exp(abs(rate) * (t if rate > 0 else (frames - 1) - t))
    return _Camera(pan, zoom)


def _camera_frames(canvas: np.ndarray, camera: _Camera, size: int) -> np.ndarray:
    """Bilinear windows of ``canvas`` (L, L, 3) seen by the camera: (T, size, size, 3)."""
    side = canvas.shape[0]
    grid = np.arange(size, dtype=np.float64) + 0.5 - size / 2
    scale = 1.0 / camera.zoom[:, None]
    x = (side / 2 + camera.pan[:, 0, None] + grid[None] * scale - 0.5).clip(0, side - 1.001)
    y = (side / 2 + camera.pan[:, 1, None] + grid[None] * scale - 0.5).clip(0, side - 1.001)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    wx = (x - x0).astype(np.float32)[:, None, :, None]  # (T, 1, W, 1)
    wy = (y - y0).astype(np.float32)[:, :, None, None]  # (T, H, 1, 1)
    flat = canvas.reshape(-1, 3)
    corner = y0[:, :, None] * side + x0[:, None, :]  # (T, H, W) flat index of the top left
    top = flat[corner] * (1 - wx) + flat[corner + 1] * wx
    bottom = flat[corner + side] * (1 - wx) + flat[corner + side + 1] * wx
    return top * (1 - wy) + bottom * wy


def _through_camera(track: _Track, camera: _Camera, size: int) -> _Track:
    """A sprite's pose seen by the camera (positions about the frame centre, size zoomed)."""
    centre = (track.centre - camera.pan - size / 2) * camera.zoom[:, None] + size / 2
    return _Track(centre, track.angle, track.scale * camera.zoom)


# ----------------------------------------------------------------------------- video


def render_video(
    label: int,
    scene_image: np.ndarray,
    settings: dict[str, Any],
    rng: np.random.Generator,
    only_frame: int | None = None,
    return_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames of one synthetic video (and its true foreground mask).

    Random draws, in order: the background crop, each actor (appearance then motion), each
    distractor, the camera; parts switched off by ``settings`` draw nothing.

    Args:
        label: Motion class index (``MOTIONS``).
        scene_image: Scene image, uint8 (H, W, 3).
        settings: Output of ``synthetic_settings`` (``data.synthetic``).
        rng: Per-video random generator.
        only_frame: Render just this frame (same draws as the full video).
        return_mask: Also return where the actors are.

    Returns:
        uint8 array (T, size, size, 3), or (1, size, size, 3) with ``only_frame``; with
        ``return_mask`` a pair (frames, mask), mask bool (T or 1, size, size): True where
        an actor (not a distractor) is drawn.
    """
    size, frames = settings["size"], settings["num_frames"]
    motion = MOTIONS[label]
    moving_camera = settings.get("camera_speed", 0.0) > 0 or settings.get("camera_zoom", 0.0) > 0
    canvas_side = _camera_canvas(settings) if moving_camera else size
    background = _background(scene_image, canvas_side, rng).astype(np.float32)
    actors = [_actor(motion, settings, rng) for _ in range(settings.get("sprites", 1))]
    distractors = [_distractor(settings, rng) for _ in range(settings.get("distractors", 0))]
    keep = slice(None) if only_frame is None else slice(only_frame, only_frame + 1)
    if moving_camera:
        camera = _camera(settings, rng)
        actors = [(s, _through_camera(t, camera, size)) for s, t in actors]
        distractors = [(s, _through_camera(t, camera, size)) for s, t in distractors]
        video = _camera_frames(background, _Camera(*(a[keep] for a in camera)), size)
    else:
        video = np.repeat(background[None], frames if only_frame is None else 1, axis=0)
    mask = np.zeros(video.shape[:3], dtype=bool) if return_mask else None
    layers = [(s, t, None) for s, t in distractors] + [(s, t, mask) for s, t in actors]
    for sprite, track, target in layers:  # distractors first: actors stay on top
        _draw(video, sprite, _Track(*(a[keep] for a in track)), target)
    out = video.clip(0, 255).astype(np.uint8)
    return (out, mask) if return_mask else out
