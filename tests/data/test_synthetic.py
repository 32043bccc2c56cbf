"""The synthetic sources: the original stays bit-identical, the presets differ in character,
every video has a true actor mask that matches its frames."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from dsm_lightning.data import synthetic as syn
from dsm_lightning.data.sources import (
    CameraSyntheticSource,
    ClutterSyntheticSource,
    SyntheticSource,
    create_source,
    list_sources,
)

SOURCES = {"synthetic": SyntheticSource, "synthetic_camera": CameraSyntheticSource,
           "synthetic_clutter": ClutterSyntheticSource}
FLAT = np.full((64, 64, 3), 128, np.uint8)


def preset_settings(preset: str, **overrides) -> dict:
    """Settings of a preset (small by default: 4 classes, 2 + 1 videos, 12 frames, 64 px)."""
    args = dict(num_classes=4, videos_per_class=2, eval_videos_per_class=1, num_frames=12,
                size=64, bias=0.5, seed=3, sprites=3)
    args.update(syn.PRESETS[preset])
    args.update(overrides)
    return syn.synthetic_settings(**args)


def rendered_hash(settings: dict, entries) -> str:
    """sha256 over the plan and the frames of some planned videos (see the test below)."""
    scenes = syn.scene_images(settings.get("scene_kind", "photo"), settings["num_classes"])
    plan = syn._plan(settings)
    digest = hashlib.sha256(repr(plan).encode())
    for k in entries:
        frames = syn.render_planned(plan[k], scenes, settings)
        if plan[k][0].endswith("_static"):
            frames = frames[:1]
        digest.update(frames.tobytes())
    return digest.hexdigest()


def test_original_source_is_bit_identical_to_before_the_suite():
    """Hashes computed on the generator before the presets were added (commit 2b8c7d5): the
    demo's videos and every existing cache key stay the same."""
    small = syn.synthetic_settings(4, 4, 2, 16, 32, 0.75, seed=5)
    assert rendered_hash(small, range(88)) == (
        "a588cf56ae939409f518c9b2f74d27596a75070c026ce1e8ace5e184d9933590")
    default = syn.synthetic_settings()
    assert rendered_hash(default, [0, 7, 100, 400, 500, 1599]) == (
        "64cdcc57b3d4e172823e1041adf9250b2ba430e9d67a322f358406be420249d6")
    assert syn.settings_hash(small) == "120ca33c2c7f"
    assert syn.settings_hash(default) == "c966a1c580ae"
    assert SyntheticSource(seed=0).settings == default


def test_presets_are_registered_and_differ_in_character():
    assert {"synthetic", "synthetic_camera", "synthetic_clutter"} <= set(list_sources())
    settings = {name: create_source(name).settings for name in SOURCES}
    assert settings["synthetic"].get("scene_kind", "photo") == "photo"
    camera, clutter = settings["synthetic_camera"], settings["synthetic_clutter"]
    assert camera["scene_kind"] == "smooth" and camera["camera_speed"] > 0
    assert camera["sprites"] == 1 and camera["actor_scale"] > 1
    assert clutter["scene_kind"] == "texture" and clutter["distractors"] > 0
    assert clutter["sprites"] > 3 and clutter["actor_scale"] < 1
    assert len({syn.settings_hash(s) for s in settings.values()}) == 3  # three caches
    # an argument overrides the preset; None keeps it
    assert CameraSyntheticSource(sprites=2).settings["sprites"] == 2
    assert ClutterSyntheticSource(distractors=None).settings["distractors"] == 5


@pytest.mark.parametrize("kwargs, name", [
    (dict(scene_kind="photos"), "scene_kind"), (dict(distractors=-1), "distractors"),
    (dict(camera_speed=-0.5), "camera_speed"), (dict(actor_scale=0.0), "actor_scale"),
    (dict(camera_zoom=0.5), "camera_zoom"), (dict(num_frames=2), "num_frames"),
])
def test_bad_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        syn.synthetic_settings(**kwargs)
    with pytest.raises(ValueError, match=name):
        ClutterSyntheticSource(**kwargs)


@pytest.mark.parametrize("kind", ["smooth", "texture"])
def test_procedural_scenes_are_fixed_and_distinct(kind):
    scenes = syn.scene_images(kind, 12)
    again = syn.scene_images(kind, 3)
    assert all((a == b).all() for a, b in zip(scenes, again))  # scene k never changes
    assert all(s.shape == (160, 160, 3) and s.dtype == np.uint8 for s in scenes)
    means = np.stack([s.reshape(-1, 3).mean(0) for s in scenes])
    gaps = np.abs(means[:, None] - means[None]).sum(-1) + 1e3 * np.eye(12)
    assert gaps.min() > 10  # every scene has its own colours: a cue a model can learn
    roughness = np.mean([np.abs(np.diff(s.astype(float), axis=1)).mean() for s in scenes])
    assert (roughness < 2) if kind == "smooth" else (roughness > 10)
    assert syn.scene_names(kind, 2) == [f"{kind}_0", f"{kind}_1"]


@pytest.mark.parametrize("preset", list(syn.PRESETS))
def test_mask_is_where_the_actors_are(preset):
    """On a flat scene the mask is exactly the pixels an actor changed; asking for the mask
    changes no frame; distractors are drawn under the actors and are not in the mask."""
    settings = preset_settings(preset)
    for label in range(4):
        def rng(label: int = label) -> np.random.Generator:
            return np.random.default_rng([9, label])

        frames, mask = syn.render_video(label, FLAT, settings, rng(), return_mask=True)
        assert (frames == syn.render_video(label, FLAT, settings, rng())).all()
        assert mask.shape == frames.shape[:3] and mask.dtype == bool and mask.any(axis=(1, 2)).all()
        background = np.median(frames.reshape(-1, 3), axis=0)
        changed = np.abs(frames.astype(int) - background).sum(-1) > 12
        assert (changed[mask]).mean() > 0.97  # actor pixels differ from the scene
        if settings.get("distractors", 0) == 0:
            assert (mask[changed]).mean() > 0.97  # and nothing else moved
        else:
            assert (mask[changed]).mean() < 0.9  # distractors changed pixels outside it
            plain = dict(settings)
            plain.pop("distractors")
            bare, bare_mask = syn.render_video(label, FLAT, plain, rng(), return_mask=True)
            assert (bare_mask == mask).all()  # the actors' draws come first: same actors
            assert (bare[mask] == frames[mask]).all()  # on top of every distractor


@pytest.mark.parametrize("preset", list(syn.PRESETS))
def test_class_motion_is_visible_in_the_true_mask(preset):
    """The circular centroid of the actor mask moves along the class direction (camera pan
    is slower than any actor, distractors are not in the mask)."""
    settings = preset_settings(preset, num_frames=12)
    angles = 2 * np.pi * (np.arange(64) + 0.5) / 64
    directions = {0: (1, 0), 1: (-1, 0), 2: (0, -1), 3: (0, 1)}

    def step(c):
        return np.angle(np.exp(1j * (c[4] - c[0]))) * 64 / (2 * np.pi)

    for seed in range(4):
        for label, (ex, ey) in directions.items():
            _, mask = syn.render_video(label, FLAT, settings, np.random.default_rng([seed, label]),
                                       return_mask=True)
            cx = np.angle((mask.sum(1) * np.exp(1j * angles)).sum(-1))
            cy = np.angle((mask.sum(2) * np.exp(1j * angles)).sum(-1))
            dx, dy = step(cx), step(cy)
            assert dx * ex + dy * ey > 2.5, (preset, seed, label, dx, dy)


def test_camera_moves_the_whole_view():
    """With the camera preset the background changes between frames (pan / zoom), with a
    still camera it does not; the actor stays in the mask either way."""
    scene = syn.scene_images("photo", 2)[1]
    for camera, expect_motion in ((True, True), (False, False)):
        settings = preset_settings("camera", **({} if camera else
                                                dict(camera_speed=0.0, camera_zoom=0.0)))
        frames, mask = syn.render_video(4, scene, settings, np.random.default_rng(1),
                                        return_mask=True)
        still = ~(mask[0] | mask[-1])
        change = np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum(-1)[still].mean()
        assert (change > 10) == expect_motion, change


def decode(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("name", list(SOURCES))
def test_sources_write_the_split_family_and_masks_align(name, tmp_path):
    source = create_source(name, num_classes=3, videos_per_class=2, eval_videos_per_class=1,
                           num_frames=8, size=32, seed=1, cache_dir=str(tmp_path))
    splits = source.read().splits
    assert set(splits) == set(syn.SPLITS)
    assert [r.label for r in splits["test"]] == [r.label for r in splits["test_static"]]
    for split in ("train", "balanced_test", "swapped_test_static"):
        masks = source.foreground_masks(split)
        assert len(masks) == len(splits[split])
        frames = decode(splits[split][0].path)
        rendered = syn.render_planned(
            [t for t in syn._plan(source.settings) if t[0] == split][0],
            syn.scene_images(source.settings.get("scene_kind", "photo"), 3), source.settings)
        assert masks[0].shape == frames.shape[:3] == (8, 32, 32)  # same geometry as decoded
        luma, ref = frames.mean(-1), rendered.mean(-1)
        error = np.abs(luma - ref)
        assert np.median(error) <= 3  # codec noise only (chroma is subsampled) ...
        assert error.mean() < 0.6 * np.abs(luma - np.roll(ref, 1, axis=2)).mean()  # ... aligned
    static = source.foreground_masks("test_static")[0]
    assert (static == static[4]).all()  # the middle frame's mask, repeated
    assert (static[0] == source.foreground_masks("test")[0][4]).all()
    with pytest.raises(ValueError, match="split"):
        source.foreground_masks("nope")


@pytest.mark.parametrize("preset", ["camera", "clutter"])
def test_presets_are_deterministic_per_seed(preset):
    settings = preset_settings(preset)
    scenes = syn.scene_images(settings["scene_kind"], 4)
    task = syn._plan(settings)[5]
    first, first_mask = syn.render_planned(task, scenes, settings, return_mask=True)
    again, again_mask = syn.render_planned(task, scenes, settings, return_mask=True)
    other = syn.render_planned(task, scenes, preset_settings(preset, seed=4))
    assert (first == again).all() and (first_mask == again_mask).all()
    assert not (first == other).all()


ENCODE_IN_A_NEW_PROCESS = """
import hashlib, sys
from dsm_lightning.data import synthetic as syn
settings = syn.synthetic_settings()  # the demo's videos: 8 classes, 48 frames, 64 px
scenes = syn.scene_images("photo", settings["num_classes"])
for task in syn._plan(settings)[:16]:
    syn.write_video(sys.argv[1], syn.render_planned(task, scenes, settings))
    print(hashlib.sha1(open(sys.argv[1], "rb").read()).hexdigest())
"""


def test_generated_files_are_byte_identical_from_one_process_to_the_next(tmp_path):
    """The same frames give the same file in every process (x264's macroblock-tree rate
    control did not: about a third of 64 px / 48-frame videos came out with other bytes), so
    a seed gives one dataset on every machine and run."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", ENCODE_IN_A_NEW_PROCESS,
                            str(tmp_path / f"{k}.mp4")], capture_output=True, text=True,
                           check=True).stdout.split() for k in range(3)]
    assert len(runs[0]) == 16
    assert runs[0] == runs[1] == runs[2]
