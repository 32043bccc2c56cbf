"""FAME (Foreground-bAckground MErging): a clip's moving foreground on another clip's background.

Ding et al., "Motion-aware Contrastive Video Representation Learning via Foreground-background
Merging", CVPR 2022 (arXiv 2109.15130); public code github:Mark12Ding/FAME, class ``FAME`` in
``moco/loader.py`` (the facts below are taken from there; plain tensor code, batched, no
Python loop over samples, frames or pixels):

1. *Motion saliency*: the absolute difference of consecutive frames, summed over channels and
   averaged over time, Gaussian-blurred (kernel side ``int(0.1 S) // 2 * 2 + 1``, sigma =
   side / 3) and min-max normalised per clip.
2. *Colour refinement*: the time-averaged clip's colours are quantised to 10 x 10 x 10 bins
   (hue and saturation as a point of the chroma disc, value); the colour histograms of the
   most salient 50% of pixels (foreground samples) and of the least salient 10% (background
   samples, +1 smoothing) give each pixel ``p_fg / (p_fg + p_bg)``, blurred and min-max
   normalised again.
3. *Mask*: the top ``beta = 0.5`` fraction of pixels (``--beta`` of ``train.py``), one
   static (H, W) mask per clip.
4. *Merge*: ``mask * clip + (1 - mask) * other_clip``, the other clip drawn from the batch.

Differences from the public code, each on purpose: the background comes from a random
*derangement* of the batch (never the clip itself; the public ``torch.randperm`` leaves some
clips on their own background); the hue enters the chroma point as a fraction of the colour
circle (the public code multiplies kornia's hue by 2 pi, whose unit depends on the kornia
version).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dsm_lightning._checks import check_fraction, check_int
from dsm_lightning.disturb.simple import SimpleAugParams, augment_clips
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.views import ViewBuilder

__all__ = [
    "FAMEBuilder",
    "ForegroundMask",
    "blur_kernel_size",
    "foreground_mask",
    "merge_foreground",
    "motion_saliency",
    "sample_background_index",
]

_EPS = 1e-8


def blur_kernel_size(size: int, fraction: float = 0.1) -> int:
    """Odd Gaussian kernel side for a frame side ``size``: ``int(fraction * size) // 2 * 2 + 1``."""
    return int(fraction * size) // 2 * 2 + 1


def _blur(maps: Tensor, kernel: int) -> Tensor:
    """Separable Gaussian blur (sigma = kernel / 3, reflect borders) of (B, H, W) maps."""
    if kernel <= 1:
        return maps
    sigma = kernel / 3.0
    x = torch.arange(kernel, device=maps.device, dtype=torch.float32) - (kernel - 1) / 2
    weights = torch.exp(-(x**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(maps.dtype)
    pad = kernel // 2
    out = maps
    for _ in range(2):  # along W, then along H (transposed): windows times weights, one GEMM
        mode = "reflect" if pad < out.shape[-1] else "replicate"
        out = F.pad(out, (pad, pad), mode=mode)  # (B, H, W): pads the last dimension
        out = (out.unfold(-1, kernel, 1) @ weights).transpose(-1, -2)
    return out.contiguous()


def _min_max(maps: Tensor) -> Tensor:
    """Per-map min-max normalisation of (B, H, W) to [0, 1] (constant maps give zeros)."""
    flat = maps.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / (flat.max(dim=1, keepdim=True).values + _EPS)
    return flat.view_as(maps)


def motion_saliency(clips: Tensor, blur_fraction: float = 0.1) -> Tensor:
    """Where the clip moves: blurred, min-max normalised mean absolute frame difference.

    Args:
        clips: (B, C, T, H, W) float clips in [0, 1], T >= 2.
        blur_fraction: Gaussian kernel side as a fraction of the frame side.

    Returns:
        (B, H, W) float32 saliency in [0, 1].

    Raises:
        ValueError: not a 5-D float tensor with T >= 2.
    """
    if clips.dim() != 5 or clips.shape[2] < 2 or not clips.is_floating_point():
        raise ValueError(f"clips must be float (B, C, T>=2, H, W), got {clips.dtype} "
                         f"{tuple(clips.shape)}")
    x = clips.float()
    # sum over channels of the mean over time, as one mean over (C, T-1) times C
    diff = torch.diff(x, dim=2).abs_().flatten(1, 2).mean(dim=1) * x.shape[1]  # (B, H, W)
    return _min_max(_blur(diff, blur_kernel_size(min(x.shape[-2:]), blur_fraction)))


def _colour_bins(image: Tensor, bins: int) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H*W) int64 bin of (chroma x, chroma y, value)."""
    r, g, b = image.unbind(1)
    value, arg = image.max(dim=1)
    delta = value - image.min(dim=1).values
    safe = delta.clamp_min(_EPS)
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4])
    hue = torch.where(delta > 0, hue.gather(0, arg[None])[0] / 6, torch.zeros_like(value))
    sat = delta / (value + _EPS)
    angle = 2 * math.pi * hue
    chroma_x, chroma_y = (sat * torch.cos(angle) + 1) / 2, (sat * torch.sin(angle) + 1) / 2

    def level(v: Tensor) -> Tensor:
        return torch.round(v.clamp(0, 1) * (bins - 1)).long()

    index = level(chroma_x) + bins * level(chroma_y) + bins * bins * level(value)
    return index.flatten(1)


@dataclass(frozen=True)
class ForegroundMask:
    """FAME's static foreground mask (frame difference + colour statistics): its settings,
    validated at construction, and ``__call__(clips) -> masks``.

    Attributes:
        foreground_ratio: fraction of pixels in the mask (``beta``; public code 0.5), (0, 1].
        fg_sample_ratio: most salient fraction whose colours model the foreground (0.5).
        bg_sample_ratio: least salient fraction whose colours model the background (0.1).
        color_bins: quantisation levels per colour axis (10), >= 2.
        blur_fraction: Gaussian kernel side as a fraction of the frame side (0.1), [0, 1].
    """

    foreground_ratio: float = 0.5
    fg_sample_ratio: float = 0.5
    bg_sample_ratio: float = 0.1
    color_bins: int = 10
    blur_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("foreground_ratio", "fg_sample_ratio", "bg_sample_ratio"):
            object.__setattr__(self, name, check_fraction(name, getattr(self, name),
                                                          open_low=True))
        check_int("color_bins", self.color_bins, 2)
        object.__setattr__(self, "blur_fraction",
                           check_fraction("blur_fraction", self.blur_fraction))

    def __call__(self, clips: Tensor) -> Tensor:
        """The mask of each clip.

        Args:
            clips: (B, C=3, T, H, W) float RGB clips in [0, 1], T >= 2.

        Returns:
            (B, H, W) float32 mask of 0/1 with exactly
            ``max(1, int(foreground_ratio * H * W))`` ones per clip.

        Raises:
            ValueError: bad shapes.
        """
        if clips.dim() != 5 or clips.shape[1] != 3:
            raise ValueError(f"clips must be RGB (B, 3, T, H, W), got {tuple(clips.shape)}")
        batch, _, _, height, width = clips.shape
        pixels = height * width
        saliency = motion_saliency(clips, self.blur_fraction).flatten(1)  # (B, HW)
        colour = _colour_bins(clips.float().mean(dim=2), self.color_bins)  # (B, HW)
        n_colours = self.color_bins**3

        def histogram(fraction: float, largest: bool, prior: float) -> Tensor:
            count = max(1, int(fraction * pixels))
            picked = saliency.topk(count, dim=1, largest=largest).indices
            hist = torch.full((batch, n_colours), prior, device=clips.device)
            hist.scatter_add_(1, colour.gather(1, picked), torch.ones_like(picked, dtype=hist.dtype))
            return hist / (hist.sum(dim=1, keepdim=True) + _EPS)

        p_fg = histogram(self.fg_sample_ratio, True, 0.0).gather(1, colour)
        p_bg = histogram(self.bg_sample_ratio, False, 1.0).gather(1, colour)
        refined = (p_fg / (p_fg + p_bg)).view(batch, height, width)
        refined = _min_max(_blur(refined, blur_kernel_size(min(height, width), self.blur_fraction)))
        keep = refined.flatten(1).topk(max(1, int(self.foreground_ratio * pixels)), dim=1).indices
        mask = torch.zeros(batch, pixels, device=clips.device).scatter_(1, keep, 1.0)
        return mask.view(batch, height, width)


def foreground_mask(
    clips: Tensor,
    foreground_ratio: float = ForegroundMask.foreground_ratio,
    fg_sample_ratio: float = ForegroundMask.fg_sample_ratio,
    bg_sample_ratio: float = ForegroundMask.bg_sample_ratio,
    color_bins: int = ForegroundMask.color_bins,
    blur_fraction: float = ForegroundMask.blur_fraction,
) -> Tensor:
    """FAME's static foreground mask of each clip: ``ForegroundMask(...)(clips)``.

    Returns:
        (B, H, W) float32 0/1 mask (see ``ForegroundMask``).

    Raises:
        ValueError: bad shapes or settings.
    """
    return ForegroundMask(foreground_ratio, fg_sample_ratio, bg_sample_ratio, color_bins,
                          blur_fraction)(clips)


def sample_background_index(
    batch: int, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """For each clip, another clip of the batch to take the background from (never itself).

    A random cyclic order of the batch; each clip takes the background of the next one in it
    (a derangement).

    Args:
        batch: number of clips B >= 2.
        generator: random source (draws on its device).
        device: where the result lives.

    Returns:
        (B,) int64 indices with ``index[i] != i``.

    Raises:
        ValueError: ``batch < 2`` (no other clip to take a background from).
    """
    if batch < 2:
        raise ValueError(f"FAME needs at least 2 clips per batch (a background from another "
                         f"clip), got batch={batch}")
    draw_device = generator.device if generator is not None else device
    order = torch.randperm(batch, generator=generator, device=draw_device)
    index = torch.empty_like(order)
    index[order] = order.roll(-1)
    return index.to(device)


def merge_foreground(clips: Tensor, mask: Tensor, background_index: Tensor) -> Tensor:
    """Paste each clip's masked foreground onto the clip ``background_index[i]``.

    Args:
        clips: (B, C, T, H, W) float clips.
        mask: (B, H, W) foreground weights in [0, 1] (static in time).
        background_index: (B,) int64 clip whose frames fill the rest.

    Returns:
        (B, C, T, H, W) ``mask * clips + (1 - mask) * clips[background_index]``.
    """
    weight = mask.to(clips.dtype)[:, None, None]
    background = clips[background_index.to(clips.device)]
    return torch.lerp(background, clips, weight)


class FAMEBuilder(ViewBuilder):
    """View builder of FAME's pretraining pair (public code ``train.py`` + ``moco/loader.py``).

    - ``positive``: a clip cropped with its own random resized crop (the transform's
      geometry), its moving foreground (``ForegroundMask``) pasted onto the cropped clip of
      another video of the batch (``sample_background_index``), then colour-augmented and
      normalised. It is the query of ``MoCoModule`` / ``FAMEModule`` (``query_view="positive"``).
    - ``anchor``: a second clip of the same video (``video_shift`` when given, as the public
      code samples two clips per video; else the same frames) with an independent simple
      augmentation: the key.

    The merge happens between the crop and the colour augmentation, as in the public code
    (crop on the CPU, FAME and colour ops on the GPU); frames are interpolated once for the
    crop (the colour pass re-samples on the identity grid, exact to float rounding).

    Args:
        foreground_ratio: fraction of each frame kept as foreground (public ``--beta`` 0.5).
        fg_sample_ratio: most salient pixel fraction modelling foreground colours (0.5).
        bg_sample_ratio: least salient pixel fraction modelling background colours (0.1).
        color_bins: quantisation levels per colour axis (10).
        blur_fraction: Gaussian kernel side as a fraction of the crop side (0.1).
        key_from_shift: use ``video_shift`` (another clip of the video) as the key; seed:
            the builder's own generator's, used without a ``generator`` argument.

    Raises:
        ValueError: an invalid argument (named).
    """

    def __init__(
        self,
        foreground_ratio: float = ForegroundMask.foreground_ratio,
        fg_sample_ratio: float = ForegroundMask.fg_sample_ratio,
        bg_sample_ratio: float = ForegroundMask.bg_sample_ratio,
        color_bins: int = ForegroundMask.color_bins,
        blur_fraction: float = ForegroundMask.blur_fraction,
        key_from_shift: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.mask = ForegroundMask(foreground_ratio, fg_sample_ratio, bg_sample_ratio,
                                   color_bins, blur_fraction)
        self.key_from_shift = bool(key_from_shift)
        self._set_seed(seed)

    def build(
        self, video: Tensor, video_shift: Tensor | None, transform: ClipTransform, size: int,
        generator: torch.Generator | None, return_details: bool = False,
    ) -> dict[str, Tensor]:
        """``{"anchor", "positive"}`` (see the class docstring); B >= 2, T >= 2.

        Args:
            return_details: also return ``fame_mask`` (B, S, S) and ``fame_background`` (B,).

        Raises:
            ValueError: bad shapes, or fewer than two clips.
        """
        if video.dim() != 5 or video.shape[1] != 3 or video.shape[2] < 2:
            raise ValueError(f"video must be (B, 3, T>=2, H, W), got {tuple(video.shape)}")
        g, batch, device = generator, video.shape[0], video.device
        background = sample_background_index(batch, g, device)
        second = video
        if self.key_from_shift and video_shift is not None:
            if video_shift.shape != video.shape:
                raise ValueError(f"video_shift shape {tuple(video_shift.shape)} != video shape "
                                 f"{tuple(video.shape)}")
            second = video_shift.to(device)
        query = transform.sample(batch, g, device)
        anchor = transform.apply(second[:, None], transform.sample(batch, g, device), size)[:, 0]
        eye = torch.eye(3, device=device).expand(batch, 3, 3)
        crop_only = SimpleAugParams(query.theta, eye, torch.zeros(batch, device=device))
        cropped = augment_clips(video[:, None], crop_only, size, mean=(0.0, 0.0, 0.0),
                                std=(1.0, 1.0, 1.0))[:, 0]  # (B, 3, T, S, S) in [0, 1]
        mask = self.mask(cropped)
        merged = merge_foreground(cropped, mask, background)
        identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device)
        colour_only = SimpleAugParams(identity.expand(batch, 2, 3), query.color_matrix,
                                      query.color_shift)
        positive = transform.apply(merged[:, None], colour_only, size)[:, 0]
        out = {"anchor": anchor, "positive": positive}
        if return_details:
            out.update(fame_mask=mask, fame_background=background)
        return out

    def extra_repr(self) -> str:
        return f"mask={self.mask}, key_from_shift={self.key_from_shift}, seed={self.seed}"
