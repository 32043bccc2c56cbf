"""The view-builder contract: what ``VideoDataModule`` calls to turn clips into pretraining views.

A view builder is an ``nn.Module`` holding settings only (its disturbances), called on the
device for every pretraining batch::

    views = builder(video, video_shift, transform=t, size=s, generator=g)

- ``video``: uint8 (B, 3, T, H, W) clips (float in [0, 1] also accepted), any device.
- ``video_shift``: uint8 (B, 3, T, H, W), a second clip of the same videos whose start
  differs by at least ``min_gap`` frames (the data layer's temporal shift), or None.
- ``transform``: the ``ClipTransform`` of the run (simple augmentation, normalisation),
  passed in by the caller: the data module hands its own, so pretraining, fine-tuning and
  evaluation share one transform; None = ``ClipTransform()``.
- ``size``: the output side S in pixels (the data module's ``crop_size``); None = the
  frames' short side.
- ``generator``: the ``torch.Generator`` every random draw must come from; the data module
  seeds it per batch from (seed, epoch, batch, rank), which makes a resumed run
  bit-identical to an uninterrupted one.
- returns a dict with float, normalised ``anchor`` and ``positive`` (B, 3, T, S, S) and,
  optionally, ``negative`` (B, 3, T, S, S) or (B, M, 3, T, S, S) (M hard negatives per
  clip, in the order of ``negative_kinds``); every other key is passed on to the model
  unchanged.

``TripletBuilder`` (DSM, MoCo) implements the contract; other remedies (Background Erasing,
FAME, or a user's own) subclass ``ViewBuilder`` and implement ``build``, which ``forward``
calls with every argument resolved (the transform, the output side, the generator).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dsm_lightning.disturb.transform import ClipTransform, output_size

__all__ = ["ViewBuilder"]


class ViewBuilder(nn.Module):
    """Base class of the pretraining view builders (see the module docstring for the contract).

    Attributes:
        negative_kinds: names of the hard negatives the views carry, in the order of a
            stacked ``negative`` (empty: no negative); the media logger labels rows with them.
    """

    negative_kinds: ClassVar[tuple[str, ...]] | tuple[str, ...] = ()

    def forward(
        self,
        video: Tensor,
        video_shift: Tensor | None = None,
        *,
        transform: ClipTransform | None = None,
        size: int | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> dict[str, Tensor]:
        """Build the views of a batch: :meth:`build` with every argument resolved.

        Args:
            video: (B, 3, T, H, W) uint8 or float in [0, 1].
            video_shift: (B, 3, T, H, W) temporally shifted clips of the same videos, or None.
            transform: simple augmentation and normalisation (None = ``ClipTransform()``).
            size: output side S (None = the frames' short side).
            generator: random source of every draw (None = the builder's own generator,
                from its ``seed``, or the global RNG).
            **options: the builder's own options (e.g. ``return_field``).

        Returns:
            ``{"anchor", "positive"[, "negative"], ...}`` normalised float tensors.

        Raises:
            ValueError: a bad ``size`` (and whatever ``build`` refuses).
        """
        transform = transform if transform is not None else ClipTransform()
        generator = generator if generator is not None else getattr(self, "_generator", None)
        return self.build(video, video_shift, transform, output_size(video, size), generator,
                          **options)

    def build(
        self, video: Tensor, video_shift: Tensor | None, transform: ClipTransform, size: int,
        generator: torch.Generator | None, **options: Any,
    ) -> dict[str, Tensor]:
        """The views (see :meth:`forward`): subclasses implement this.

        Raises:
            NotImplementedError: on the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

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

