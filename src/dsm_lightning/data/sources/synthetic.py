"""The synthetic scene-biased source as a registered ``VideoSource`` (see ``data.synthetic``)."""

from __future__ import annotations

import os

from dsm_lightning.data import synthetic
from dsm_lightning.data.sources.base import (
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

__all__ = ["SyntheticSource"]


@register_source("synthetic")
class SyntheticSource(VideoSource):
    """Generated motion-defined, scene-biased videos, written once into a cache directory.

    Splits: ``train``, ``val``, ``test`` (a fraction ``bias`` of each class on its own
    scene), ``swapped_test``, ``balanced_train``, ``balanced_test`` and the ``*_static``
    copies (see ``dsm_lightning.data.synthetic``). ``prepare`` writes the videos (reused
    when a complete cache with the same settings exists); ``read`` writes them too when
    ``prepare`` was not called.

    Args:
        num_classes: Motion classes (and scenes), 1-12.
        videos_per_class: Train (and balanced_train) videos per class.
        eval_videos_per_class: Videos per class in each test split.
        num_frames: Frames per video (>= 3).
        size: Frame height and width in pixels (>= 16).
        bias: Fraction of each class on its own scene in train / val / test.
        sprites: Sprites per video (all share the class motion).
        seed: Generation seed; None = the data module's ``seed`` (0 when used alone).
        cache_dir: Directory of the videos; None = ``$DSM_LIGHTNING_CACHE`` (or
            ``~/.cache/dsm_lightning``) ``/synthetic-<hash of the settings>``.

    Raises:
        ValueError: A setting is out of range (named).
    """

    def __init__(
        self,
        num_classes: int = 8,
        videos_per_class: int = 48,
        eval_videos_per_class: int = 16,
        num_frames: int = 48,
        size: int = 64,
        bias: float = 0.9,
        sprites: int = 3,
        seed: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.num_classes, self.videos_per_class = num_classes, videos_per_class
        self.eval_videos_per_class, self.num_frames, self.size = (
            eval_videos_per_class, num_frames, size)
        self.bias, self.sprites, self.seed, self.cache_dir = bias, sprites, seed, cache_dir
        self._default_seed = 0
        self.settings  # noqa: B018 - validates every setting now, naming a bad one

    def adopt_seed(self, seed: int) -> None:
        """Use the data module's ``seed`` when none was given."""
        self._default_seed = seed

    @property
    def settings(self) -> dict:
        """The generator settings (the cache key), validated."""
        seed = self.seed if self.seed is not None else self._default_seed
        return synthetic.synthetic_settings(
            self.num_classes, self.videos_per_class, self.eval_videos_per_class,
            self.num_frames, self.size, self.bias, seed, self.sprites,
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
