"""The synthetic scene-biased sources as registered ``VideoSource`` classes (see ``data.synthetic``).

Three presets of one generator, one registered name each, differing in character
(``data.synthetic.PRESETS``):

=======================  ===========================  ======================================
 name                     class                        character
=======================  ===========================  ======================================
 ``synthetic``            ``SyntheticSource``          photo scenes, 3 actors, still camera
 ``synthetic_camera``     ``CameraSyntheticSource``    smooth procedural scenes, 1 large
                                                       actor, camera pan + zoom per video
 ``synthetic_clutter``    ``ClutterSyntheticSource``   high-frequency textures, 4 small
                                                       actors, 5 distracting moving discs
=======================  ===========================  ======================================

All write the same split family, so the study runs on each unchanged, and give the true
actor masks of any split (``foreground_masks``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from dsm_lightning._checks import check_choice
from dsm_lightning.data import synthetic
from dsm_lightning.data.sources.base import (
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

__all__ = ["CameraSyntheticSource", "ClutterSyntheticSource", "SyntheticSource"]

#: Settings a preset may give, with the original generator's values.
_BASE_DEFAULTS: dict[str, Any] = {"sprites": 3, **synthetic.EXTENDED_DEFAULTS}


@register_source("synthetic")
class SyntheticSource(VideoSource):
    """Generated motion-defined, scene-biased videos, written once into a cache directory.

    Splits: ``train``, ``val``, ``test`` (a fraction ``bias`` of each class on its own
    scene), ``swapped_test``, ``balanced_train``, ``balanced_test`` and the ``*_static``
    copies (see ``dsm_lightning.data.synthetic``). ``prepare`` writes the videos (reused
    when a complete cache with the same settings exists); ``read`` writes them too when
    ``prepare`` was not called. The class's preset (``preset``: ``photo`` here) gives the
    values of the arguments left at None.

    Args:
        num_classes: Motion classes (and scenes), 1-12.
        videos_per_class: Train (and balanced_train) videos per class.
        eval_videos_per_class: Videos per class in each test split.
        num_frames: Frames per video (>= 3).
        size: Frame height and width in pixels (>= 16).
        bias: Fraction of each class on its own scene in train / val / test.
        sprites: Actors per video, all sharing the class motion (None = the preset's:
            synthetic 3, camera 1, clutter 4).
        seed: Generation seed; None = the data module's ``seed`` (0 when used alone).
        cache_dir: Directory of the videos; None = ``$DSM_LIGHTNING_CACHE`` (or
            ``~/.cache/dsm_lightning``) ``/synthetic-<hash of the settings>``.
        scene_kind: ``"photo"``, ``"smooth"`` or ``"texture"`` scene images (None = the
            preset's: photo, smooth, texture).
        actor_scale: Actor size relative to the original (None = the preset's: 1.0, 1.6,
            0.65).
        distractors: Class-independent moving discs per video (None = the preset's: 0, 0,
            5).
        camera_speed: Largest camera pan, px/frame at 64 px (None = the preset's: 0, 0.6, 0).
        camera_zoom: Largest camera log-zoom per frame (None = the preset's: 0, 0.004, 0).

    Raises:
        ValueError: A setting is out of range (named).
    """

    preset: ClassVar[str] = "photo"

    def __init__(
        self,
        num_classes: int = 8,
        videos_per_class: int = 48,
        eval_videos_per_class: int = 16,
        num_frames: int = 48,
        size: int = 64,
        bias: float = 0.9,
        sprites: int | None = None,
        seed: int | None = None,
        cache_dir: str | None = None,
        scene_kind: str | None = None,
        actor_scale: float | None = None,
        distractors: int | None = None,
        camera_speed: float | None = None,
        camera_zoom: float | None = None,
    ) -> None:
        check_choice("preset", self.preset, synthetic.PRESETS)
        self.num_classes, self.videos_per_class = num_classes, videos_per_class
        self.eval_videos_per_class, self.num_frames, self.size = (
            eval_videos_per_class, num_frames, size)
        self.bias, self.sprites, self.seed, self.cache_dir = bias, sprites, seed, cache_dir
        self.scene_kind, self.actor_scale, self.distractors = scene_kind, actor_scale, distractors
        self.camera_speed, self.camera_zoom = camera_speed, camera_zoom
        self._default_seed = 0
        self.settings  # noqa: B018 - validates every setting now, naming a bad one

    def adopt_seed(self, seed: int) -> None:
        """Use the data module's ``seed`` when none was given."""
        self._default_seed = seed

    @property
    def settings(self) -> dict:
        """The generator settings (the cache key), validated."""
        seed = self.seed if self.seed is not None else self._default_seed
        preset = synthetic.PRESETS[self.preset]
        extended: dict[str, Any] = {}
        for key in _BASE_DEFAULTS:
            value = getattr(self, key)
            if value is None:
                value = preset.get(key, _BASE_DEFAULTS[key])
            extended[key] = value
        sprites = extended.pop("sprites")
        return synthetic.synthetic_settings(
            self.num_classes, self.videos_per_class, self.eval_videos_per_class,
            self.num_frames, self.size, self.bias, seed, sprites, **extended,
        )

    @property
    def directory(self) -> str:
        """Where the videos are (``cache_dir`` or the default cache of these settings)."""
        return self.cache_dir or synthetic.default_cache_dir(self.settings)

    def prepare(self) -> None:
        """Write the videos unless a complete cache with these settings exists."""
        synthetic.generate_synthetic(self.directory, self.settings)

    def read(self) -> SourceSplits:
        """The manifest's splits (writes the videos first when needed)."""
        root = self.directory
        manifest = synthetic.generate_synthetic(root, self.settings)
        splits = {
            name: [VideoRecord(os.path.join(root, v["path"]), v["label"], v["path"])
                   for v in videos]
            for name, videos in manifest["splits"].items()
        }
        return SourceSplits(splits, list(manifest["class_names"]), [])

    def class_names(self) -> list[str]:
        """The motion names of the first ``num_classes`` classes (no file is written)."""
        return list(synthetic.MOTIONS[: self.num_classes])

    def foreground_masks(self, split: str) -> synthetic.ForegroundMasks:
        """The true actor masks of ``split``: ``masks[i]`` is bool (T, size, size) for the
        split's ``i``-th record, re-rendered on demand (no file is written or read).

        Raises:
            ValueError: unknown split.
        """
        return synthetic.ForegroundMasks(self.settings, split)


@register_source("synthetic_camera")
class CameraSyntheticSource(SyntheticSource):
    """``SyntheticSource`` preset ``camera``: smooth procedural scenes (low-frequency colour
    fields), one actor 1.6x larger, and a camera that pans (up to 0.6 px/frame) and zooms
    (up to 0.4 %/frame) at random per video, the same for every class. Arguments as
    ``SyntheticSource``."""

    preset: ClassVar[str] = "camera"


@register_source("synthetic_clutter")
class ClutterSyntheticSource(SyntheticSource):
    """``SyntheticSource`` preset ``clutter``: high-frequency texture scenes, four actors
    0.65x the size, and five distracting discs per video that oscillate or orbit at random
    in every class (background, not in the true masks). Arguments as ``SyntheticSource``."""

    preset: ClassVar[str] = "clutter"
