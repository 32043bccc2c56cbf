"""Background Erasing (BE): add a static frame of the clip to every frame (plain tensor code).

Wang et al., "Removing the Background by Adding the Background: Towards Background Robust
Self-supervised Video Representation Learning", CVPR 2021 (arXiv 2009.05769); public code
github:FingerRec/BE. A *distracting* clip is the clip with one of its own frames, drawn at
random, mixed into every frame::

    x_be[t] = (1 - lam) * x[t] + lam * x[k]        for every t, one k per clip

The added component ``lam * x[k]`` is the same for every frame (static in time), so it carries
scene and no motion; pulling the distracting clip's feature to the original clip's teaches the
encoder to ignore what is static. Defaults from the public code
(``src/Contrastive/augment/gen_positive.py``, ``basic_augmentation/mixup_methods.py``,
``SpatialMixup`` version 2): ``lam ~ U(0, 0.3)``, one draw per batch, ``k`` uniform over the
clip's frames, one per clip.

The mix is a convex combination with weights summing to one, so applying it after the
(per-channel affine) normalisation equals applying it before: ``BackgroundErasingBuilder``
erases the normalised views of any other view builder, which is what makes BE composable
(e.g. BE on top of the DSM triplet).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice, check_int, check_pair
from dsm_lightning.disturb.rng import rand_uniform
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.triplet import TripletBuilder
from dsm_lightning.disturb.views import ViewBuilder

__all__ = [
    "BE_MIX_PER",
    "BE_VIEWS",
    "BackgroundErasingBuilder",
    "BackgroundErasingParams",
    "background_erasing",
    "sample_background_erasing",
]

#: How the mixing weight is drawn: one per batch (the public code) or one per clip.
BE_MIX_PER = ("batch", "clip")
#: Views a ``BackgroundErasingBuilder`` may erase.
BE_VIEWS = ("anchor", "positive", "negative")


class BackgroundErasingParams(NamedTuple):
    """One Background Erasing draw per clip.

    Attributes:
        weight: (B,) float32 mixing weights ``lam`` of the static frame.
        frame: (B,) int64 index ``k`` of the frame added to every frame of the clip.
    """

    weight: Tensor
    frame: Tensor


def sample_background_erasing(
    batch: int,
    num_frames: int,
    mix_range: tuple[float, float] = (0.0, 0.3),
    mix_per: str = "batch",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> BackgroundErasingParams:
    """Draw the mixing weights and the static frames of ``batch`` clips.

    Args:
        batch: number of clips B.
        num_frames: frames per clip T.
        mix_range: ``(low, high)`` of the uniform mixing weight (public code: (0, 0.3)).
        mix_per: ``"batch"``: one weight for the whole batch (public code); ``"clip"``: one
            per clip.
        generator: random source (draws on its device); None = global RNG of ``device``.
        device: where the parameters live.

    Returns:
        ``BackgroundErasingParams`` with weights in ``[low, high]`` and frames in ``[0, T)``.

    Raises:
        ValueError: a bad ``batch``, ``num_frames``, ``mix_range`` or ``mix_per``.
    """
    check_int("batch", batch)
    check_int("num_frames", num_frames)
    low, high = check_pair("mix_range", mix_range, 0.0, 1.0)
    check_choice("mix_per", mix_per, BE_MIX_PER)
    u = rand_uniform((2, batch), generator=generator, device=device)
    draw = u[0] if mix_per == "clip" else u[0, :1].expand(batch)
    weight = (low + (high - low) * draw).clamp(low, high)
    frame = (u[1] * num_frames).long().clamp_(max=num_frames - 1)
    return BackgroundErasingParams(weight.contiguous(), frame)


def background_erasing(clips: Tensor, params: BackgroundErasingParams) -> Tensor:
    """Mix each clip's static frame ``k`` into all its frames: ``(1 - lam) x[t] + lam x[k]``.

    Args:
        clips: (B, C, T, H, W) float clips (normalised or in [0, 1]).
        params: one draw per clip (``sample_background_erasing``).

    Returns:
        (B, C, T, H, W) distracting clips, same dtype and device.

    Raises:
        ValueError: ``clips`` is not a 5-D float tensor, or ``params`` does not match B / T.
    """
    if clips.dim() != 5 or not clips.is_floating_point():
        raise ValueError(f"clips must be float (B, C, T, H, W), got {clips.dtype} "
                         f"{tuple(clips.shape)}")
    batch, frames = clips.shape[0], clips.shape[2]
    weight, frame = params.weight.to(clips.device), params.frame.to(clips.device)
    if weight.shape != (batch,) or frame.shape != (batch,) or int(frame.max()) >= frames:
        raise ValueError(f"params must hold B={batch} weights and frames < T={frames}, got "
                         f"{tuple(weight.shape)}, {tuple(frame.shape)}")
    static = clips[torch.arange(batch, device=clips.device), :, frame]  # (B, C, H, W)
    mix = weight.to(clips.dtype).view(batch, 1, 1, 1, 1)
    return torch.lerp(clips, static[:, :, None].expand_as(clips), mix)


class BackgroundErasingBuilder(ViewBuilder):
    """View builder: the views of ``base``, with Background Erasing applied to some of them.

    BE on MoCo (the paper's "MoCo + BE"; public code ``src/Contrastive/pt.py`` ``train_be``):
    the distracting clip is the *query*, ``f(BE(clip))``, and the key is another simple
    augmentation of the same frames through the momentum encoder; the InfoNCE loss pulls the
    distracting clip's feature to the original's. In this library the query is the
    ``positive`` view (``query_view="positive"``), hence ``views=("positive",)``.

    Composable: ``base`` is any view builder. ``TripletBuilder.moco()`` (the default) gives
    MoCo + BE; a DSM ``TripletBuilder`` gives BE on top of DSM in one configuration (the
    warped positive is also erased; the hard negative is left alone). The public BE script
    itself pairs BE with a temporally shifted hard negative of the same video
    (``src/Contrastive/data/dataset.py`` ``get_be_items``): ``TripletBuilder(spatial_prob=0,
    negative_kinds=("shift",))`` as ``base``.

    Randomness: the base draws first, then one ``sample_background_erasing`` draw per erased
    view, all from the same generator (``VideoDataModule`` passes one seeded per batch).

    Args:
        base: the view builder whose views are erased; None = ``TripletBuilder.moco()``.
        mix_range: ``(low, high)`` of the uniform mixing weight ``lam`` (public code
            ``SpatialMixup(0.3)``: U(0, 0.3)).
        mix_per: ``"batch"`` (public code: one ``lam`` per batch) or ``"clip"``.
        views: which views to erase, from ``("anchor", "positive", "negative")``.
        seed: seed of the builder's own generator (used without a ``generator`` argument).

    Raises:
        ValueError: naming the first invalid argument.
    """

    def __init__(
        self,
        base: ViewBuilder | None = None,
        mix_range: tuple[float, float] = (0.0, 0.3),
        mix_per: str = "batch",
        views: tuple[str, ...] = ("positive",),
        seed: int | None = None,
    ) -> None:
        super().__init__()
        base = base if base is not None else TripletBuilder.moco()
        if not isinstance(base, ViewBuilder):
            raise ValueError(f"base must be a ViewBuilder, got {type(base).__name__}")
        self.base = base
        self.mix_range = check_pair("mix_range", mix_range, 0.0, 1.0)
        check_choice("mix_per", mix_per, BE_MIX_PER)
        self.mix_per = mix_per
        names = (views,) if isinstance(views, str) else tuple(views)
        if not names or len(set(names)) != len(names) or not set(names) <= set(BE_VIEWS):
            raise ValueError(f"views must be distinct names from {BE_VIEWS}, got views={views}")
        self.views = names
        self._set_seed(seed)

    @property
    def negative_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        """The base builder's hard-negative kinds."""
        return tuple(self.base.negative_kinds)

    def build(
        self, video: Tensor, video_shift: Tensor | None, transform: ClipTransform, size: int,
        generator: torch.Generator | None, return_params: bool = False, **options: object,
    ) -> dict[str, Tensor]:
        """The base's views (the same transform, size and generator), then ``views`` erased.

        Args:
            return_params: also return each erased view's draw under ``"be_<view>"``.
            **options: passed to the base builder (e.g. ``return_field``).

        Returns:
            The base's views with ``views`` replaced by their distracting clips; a stacked
            ``negative`` (B, M, 3, T, S, S) gets one draw per (clip, negative).

        Raises:
            ValueError: a view in ``views`` that the base did not build.
        """
        g = generator
        out = dict(self.base(video, video_shift, transform=transform, size=size, generator=g,
                             **options))
        for name in self.views:
            if out.get(name) is None:
                raise ValueError(f"BackgroundErasingBuilder: the base builder made no {name!r} "
                                 f"view (views={self.views}, got {sorted(out)})")
            clips = out[name]
            flat = clips.flatten(0, 1) if clips.dim() == 6 else clips
            params = sample_background_erasing(
                flat.shape[0], flat.shape[2], self.mix_range, self.mix_per, generator=g,
                device=flat.device)
            out[name] = background_erasing(flat, params).view_as(clips)
            if return_params:
                out[f"be_{name}"] = params
        return out

    def extra_repr(self) -> str:
        return f"mix_range={self.mix_range}, mix_per={self.mix_per}, views={self.views}"
