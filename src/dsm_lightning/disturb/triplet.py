"""``TripletBuilder``: the device-side DSM triplet (anchor, positive, negative) from uint8 clips."""

from __future__ import annotations

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice
from dsm_lightning.disturb.spatial import SPATIAL_KINDS, PointWarp, SpatialDisturbance, TPSWarp
from dsm_lightning.disturb.temporal import CLIP_KINDS, TemporalDisturbance
from dsm_lightning.disturb.transform import ClipTransform
from dsm_lightning.disturb.views import ViewBuilder

__all__ = ["FIELD_SCOPES", "SHIFT_AUGMENTS", "TripletBuilder"]

#: ``field_scope`` values: one warp field per clip, or one per batch (the public code).
FIELD_SCOPES = ("clip", "batch")
#: ``shift_augment`` values: the shifted clip shares the anchor's augmentation, or not.
SHIFT_AUGMENTS = ("shared", "independent")
_POINTS, _TPS = PointWarp(), TPSWarp()  # the settings' defaults, declared in spatial.py


def _check_video(video: Tensor, name: str) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, T, H, W), got shape={tuple(video.shape)}")


class TripletBuilder(ViewBuilder):
    """Build DSM triplets on the device from uint8 clips, batched (no loop over samples/frames).

    Implements the view-builder contract of ``disturb.views``; the simple augmentation and
    normalisation come from the ``transform`` passed to each call:

    - ``anchor``: the transform's simple augmentation of the clip (one draw per clip shared
      by its frames), normalised.
    - ``positive``: the same frames with an independent simple-augmentation draw, then a
      Spatial Local Disturbance field (``spatial``: one per clip, or one per batch with
      ``field_scope="batch"``; identical for every frame) composed with the crop so the clip
      is interpolated once.
    - ``negative`` (``temporal``): per clip, one of ``negative_kinds``: ``"shift"``, the
      data layer's temporally shifted clip of the same video with exactly the anchor's
      augmentation (``shift_augment="shared"``) or a draw of its own (``"independent"``, the
      public code); ``"other_video"``, that clip (or the augmented anchor) of *another*
      video of the batch, the batch rolled by one (the public code's Something-Something
      negative); a frame-level kind (``swap``, ``insert``, ``shuffle``, ``reverse``,
      ``static`` or a registered one), a re-ordering of the augmented anchor's frames.
      Absent when ``negative_kinds`` is empty (MoCo); ``negative_mode="all"`` stacks one of
      each kind, ``(B, M, 3, T, S, S)``.

    Presets: :meth:`paper` (the public DSM code's disturbances, docs/method-fidelity.md) and
    :meth:`moco` (no disturbance); the defaults are the library's stronger choices (TPS +
    any-direction point warps, one field per clip, the shift sharing the anchor's draw).
    Randomness: the ``generator`` of each call (``VideoDataModule`` passes one seeded per
    batch), else the builder's own seeded from ``seed``, else the global RNG.

    Args:
        spatial_kinds: SLD kinds to choose from per clip (``spatial.spatial_kinds()``).
        spatial_probs: selection probabilities for ``spatial_kinds`` (None = uniform).
        spatial_prob: probability that a clip's positive is warped at all (0 = MoCo positive).
        tps_grid: TPS control points per side.
        tps_jitter: TPS control point jitter, normalised units (1 = half the frame).
        point_count: (min, max) number of point-warp centres.
        point_shift: (min, max) point-warp shift in pixels of a 112-px frame (scales with the
            output size): its length (``"any"``) or each of its components (``"down_right"``).
        point_region: (min, max) normalised coordinate range of the point-warp centres.
        point_direction: ``"any"`` or ``"down_right"`` (the public code; see ``PointWarp``).
        point_strength: peak point-warp displacement as a fraction of the shift (0.5 in the
            public code).
        point_integer: truncate the point-warp offsets to whole pixels (the public code).
        field_scope: ``"clip"`` or ``"batch"`` (one field for the batch: the public code).
        negative_kinds: TLD kinds per clip, from ``temporal.negative_kinds()``; empty = none.
        negative_probs: selection probabilities for ``negative_kinds`` (None = uniform).
        local_fraction: fraction of T moved by ``swap`` / ``insert`` (at least one frame).
        negative_mode: ``"sample"`` (one hard negative per clip) or ``"all"`` (one per kind).
        shift_augment: ``"shared"`` or ``"independent"`` (see above).
        seed: seed of the builder's own generator, used only when a call gets no generator.

    Raises:
        ValueError: naming the first invalid argument.
    """

    def __init__(
        self,
        spatial_kinds: tuple[str, ...] = SPATIAL_KINDS,
        spatial_probs: tuple[float, ...] | None = None,
        spatial_prob: float = 1.0,
        tps_grid: int = _TPS.grid,
        tps_jitter: float = _TPS.jitter,
        point_count: tuple[int, int] = _POINTS.count,
        point_shift: tuple[float, float] = _POINTS.shift,
        point_region: tuple[float, float] = _POINTS.region,
        point_direction: str = _POINTS.direction,
        point_strength: float = _POINTS.strength,
        point_integer: bool = _POINTS.integer,
        field_scope: str = "clip",
        negative_kinds: tuple[str, ...] = ("shift",),
        negative_probs: tuple[float, ...] | None = None,
        local_fraction: float = 0.1,
        negative_mode: str = "sample",
        shift_augment: str = "shared",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("field_scope", field_scope, FIELD_SCOPES)
        check_choice("shift_augment", shift_augment, SHIFT_AUGMENTS)
        self.spatial = SpatialDisturbance(
            kinds=spatial_kinds, probs=spatial_probs, prob=spatial_prob,
            tps=TPSWarp(tps_grid, tps_jitter),
            points=PointWarp(point_count, point_shift, point_region, point_direction,
                             point_strength, point_integer),
            shared=field_scope == "batch")
        self.temporal = TemporalDisturbance(negative_kinds, negative_probs, local_fraction,
                                            negative_mode)
        self.field_scope, self.shift_augment = field_scope, shift_augment
        self._set_seed(seed)

    @property
    def negative_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        """The hard-negative kinds, in the order of a stacked ``negative``."""
        return self.temporal.kinds

    def settings(self) -> dict[str, object]:
        """The constructor values this builder holds (validated, normalised)."""
        spatial, temporal, points = self.spatial, self.temporal, self.spatial.points
        return {
            "spatial_kinds": spatial.kinds, "spatial_probs": spatial.probs,
            "spatial_prob": spatial.prob, "tps_grid": spatial.tps.grid,
            "tps_jitter": spatial.tps.jitter, "point_count": points.count,
            "point_shift": points.shift, "point_region": points.region,
            "point_direction": points.direction, "point_strength": points.strength,
            "point_integer": points.integer, "field_scope": self.field_scope,
            "negative_kinds": temporal.kinds, "negative_probs": temporal.probs,
            "local_fraction": temporal.local_fraction, "negative_mode": temporal.mode,
            "shift_augment": self.shift_augment, "seed": self.seed,
        }

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def paper_settings(cls) -> dict[str, object]:
        """The public DSM code's disturbances as constructor values (see :meth:`paper`)."""
        return {
            "spatial_kinds": ("points",),
            "spatial_prob": 1.0,
            "point_count": (1, 3),
            "point_shift": (5.0, 9.5),  # 10-19 px of a 224 crop
            "point_region": (60 / 112 - 1, 140 / 112 - 1),  # pixels 60-139 of a 224 crop
            "point_direction": "down_right",
            "point_strength": 0.5,
            "point_integer": True,
            "field_scope": "batch",
            "negative_kinds": ("shift",),
            "negative_mode": "sample",
            "shift_augment": "independent",
        }

    @classmethod
    def paper(cls, **kwargs: object) -> TripletBuilder:
        """The public DSM code's disturbances (docs/method-fidelity.md has the file lines).

        Positive: local point warps only (TPS off), 1-3 points at pixels 60-139 of a 224-px
        crop, shift components of 10-19 px both positive, fall-off
        ``0.5 / (3 (d/|s|)^4 + 1)`` centred on the point plus its shift, integer offsets,
        one field per batch (all scaled with the crop: 3.5-6.7 px peak at 112 px). Negative:
        the temporal shift only, augmented independently of the anchor; its minimum gap is
        the data module's ``min_gap`` (2 for UCF101/HMDB51, 4 for Kinetics in the public
        code). Pair it with ``ClipTransform.paper()`` for the simple augmentation.

        Args:
            **kwargs: any constructor argument (e.g. ``seed``, or
                ``negative_kinds=("other_video",)`` for Something-Something).

        Returns:
            A ``TripletBuilder``.

        Raises:
            ValueError: an invalid argument.
        """
        return cls(**{**cls.paper_settings(), **kwargs})

    @classmethod
    def moco(cls, **kwargs: object) -> TripletBuilder:
        """MoCo baseline preset: positive = independent simple augmentation, no negative.

        Raises:
            ValueError: if ``spatial_prob`` or ``negative_kinds`` is given (the preset fixes
                them).
        """
        fixed = {"spatial_prob", "negative_kinds"} & kwargs.keys()
        if fixed:
            raise ValueError(f"the moco preset fixes {sorted(fixed)}; do not pass them")
        return cls(spatial_prob=0.0, negative_kinds=(), **kwargs)

    # ----------------------------------------------------------------------------- API
    def build(
        self, video: Tensor, video_shift: Tensor | None, transform: ClipTransform, size: int,
        generator: torch.Generator | None, return_field: bool = False,
    ) -> dict[str, Tensor]:
        """The triplet (the class docstring); called by ``forward`` (the view-builder contract).

        If ``"shift"`` is among ``negative_kinds`` but ``video_shift`` is None, the clips that
        would have drawn it use the remaining kinds (renormalised probabilities); if
        ``"shift"`` is the only kind this raises. T >= 2 for frame-level negatives, B >= 2
        for ``"other_video"``.

        Args:
            return_field: also return the positive's field under ``"field"`` (B, S, S, 2).

        Returns:
            ``{"anchor", "positive"[, "negative"][, "field"]}``: (B, 3, T, S, S) normalised
            tensors of the transform's dtype on ``video``'s device (``negative`` is
            (B, M, 3, T, S, S) with ``negative_mode="all"``).

        Raises:
            ValueError: for bad shapes, ``"shift"`` as the only kind without
                ``video_shift``, or ``"other_video"`` with fewer than 2 clips.
        """
        _check_video(video, "video")
        g = generator
        kinds, probs = self.temporal.kinds, self.temporal.probs
        if "shift" in kinds and video_shift is None:
            kinds, probs = self.temporal.without_shift()
        if "other_video" in kinds and video.shape[0] < 2:
            raise ValueError(f"negative kind 'other_video' needs a batch of >= 2 clips, got "
                             f"{video.shape[0]}")
        use_shift = video_shift is not None and any(k in CLIP_KINDS for k in kinds)
        if use_shift:
            _check_video(video_shift, "video_shift")
            if video_shift.shape != video.shape:
                raise ValueError(f"video_shift shape {tuple(video_shift.shape)} != video "
                                 f"shape {tuple(video.shape)}")
            video_shift = video_shift.to(video.device)
        shared = use_shift and self.shift_augment == "shared"
        clips = torch.stack([video, video_shift], dim=1) if shared else video[:, None]

        batch, device = video.shape[0], video.device
        anchors = transform.apply(clips, transform.sample(batch, g, device), size)
        anchor = anchors[:, 0]
        params = transform.sample(batch, g, device)
        field = self.spatial.sample(batch, size, g, device) if self.spatial.prob > 0 else None
        out = {"anchor": anchor, "positive": transform.apply(video[:, None], params, size,
                                                            field)[:, 0]}
        if kinds:
            shifted = anchors[:, 1] if shared else None
            if use_shift and not shared:  # its own draw, after the anchor's and the positive's
                shifted = transform.apply(video_shift[:, None], transform.sample(batch, g, device),
                                          size)[:, 0]
            clip_negatives = {}
            if "shift" in kinds:
                clip_negatives["shift"] = shifted
            if "other_video" in kinds:  # sample i gets sample i-1's clip: another video
                clip_negatives["other_video"] = (
                    shifted if shifted is not None else anchor).roll(1, dims=0)
            out["negative"] = self.temporal.negatives(anchor, clip_negatives, kinds, probs, g)
        if return_field:
            out["field"] = field if field is not None else torch.zeros(
                batch, size, size, 2, device=device)
        return out

    def extra_repr(self) -> str:
        shown = ("spatial_kinds", "spatial_prob", "point_direction", "field_scope",
                 "negative_kinds", "negative_mode", "shift_augment", "seed")
        settings = self.settings()
        return ", ".join(f"{name}={settings[name]}" for name in shown)
