"""The view-builder contract: what ``VideoDataModule`` calls to turn clips into pretraining views.

A view builder is an ``nn.Module`` holding settings only, called on the device in
``VideoDataModule.on_after_batch_transfer`` for every pretraining batch::

    views = builder(video, video_shift, generator=g)

- ``video``: uint8 (B, 3, T, H, W) clips (float in [0, 1] also accepted), any device.
- ``video_shift``: uint8 (B, 3, T, H, W), a second clip of the same videos whose start
  differs by at least ``min_gap`` frames (the data layer's temporal shift), or None.
- ``generator``: the CPU ``torch.Generator`` every random draw must come from; the data
  module seeds it per batch from (seed, epoch, batch, rank), which makes a resumed run
  bit-identical to an uninterrupted one.
- returns a dict with float, normalised ``anchor`` and ``positive`` (B, 3, T, S, S) and,
  optionally, ``negative`` (B, 3, T, S, S) or (B, M, 3, T, S, S) (M hard negatives per
  clip); every other key is passed on to the model unchanged.

Builders normalise with their ``transform`` (a ``ClipTransform``), which the data module
shares with fine-tuning and evaluation so that every path sees the same crop size and
normalisation. ``TripletBuilder`` (DSM, MoCo) implements the contract; other remedies
(Background Erasing, FAME, ...) subclass ``ViewBuilder`` and implement ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dsm_lightning.disturb.transform import ClipTransform

__all__ = ["ViewBuilder"]


class ViewBuilder(nn.Module):
    """Base class of the pretraining view builders (see the module docstring for the contract).

    Args:
        transform: simple augmentation and normalisation of the views; None = the owner's
            (``VideoDataModule`` shares its own) or ``ClipTransform()`` when used alone.
    """

    def __init__(self, transform: ClipTransform | None = None) -> None:
        super().__init__()
        self.transform_given = transform is not None
        self.transform = transform if transform is not None else ClipTransform()

    def share_transform(self, transform: ClipTransform) -> None:
        """Use the owner's ``ClipTransform`` (called by ``VideoDataModule``).

        Args:
            transform: the owner's transform.

        Raises:
            ValueError: this builder was given a different transform at construction.
        """
        if transform is self.transform:
            return
        if self.transform_given:
            raise ValueError(
                "the view builder and the data module were each given a ClipTransform: give it "
                "once (data `transform`, or the builder's `transform`)"
            )
        self.transform = transform

    def forward(
        self,
        video: Tensor,
        video_shift: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Build the views of a batch.

        Args:
            video: (B, 3, T, H, W) uint8 or float in [0, 1].
            video_shift: (B, 3, T, H, W) temporally shifted clips of the same videos, or None.
            generator: random source of every draw.

        Returns:
            ``{"anchor", "positive"[, "negative"], ...}`` normalised float tensors.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    # ------------------------------------------------------ the builder's own generator
    def _set_seed(self, seed: int | None) -> None:
        """Check ``seed`` and keep it with the builder's own generator (None = global RNG).

        Raises:
            ValueError: ``seed`` is neither an int nor None.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got seed={seed!r}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _generator_for(self, generator: torch.Generator | None) -> torch.Generator | None:
        """``generator``, or the builder's own (from ``_set_seed``) when it is None."""
        return generator if generator is not None else self._generator

    # ------------------------------------------------ the transform's settings, for callers
    @property
    def crop_size(self) -> int:
        """Output side S of the views (the transform's)."""
        return self.transform.crop_size

    @property
    def mean(self) -> tuple[float, ...]:
        """Normalisation mean (the transform's)."""
        return self.transform.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Normalisation std (the transform's)."""
        return self.transform.std

    @property
    def out_dtype(self) -> torch.dtype:
        """torch dtype of the views (the transform's)."""
        return self.transform.out_dtype

    def train_transform(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``transform.train(video, generator)`` (kept for backward compatibility)."""
        return self.transform.train(video, generator)

    def eval_transform(self, video: Tensor, n_crops: int = 1) -> Tensor:
        """``transform.eval(video, n_crops)`` (kept for backward compatibility)."""
        return self.transform.eval(video, n_crops)

    def denormalize(self, x: Tensor) -> Tensor:
        """``transform.denormalize(x)``: normalised (..., 3, T, H, W) -> [0, 1] float32."""
        return self.transform.denormalize(x)
