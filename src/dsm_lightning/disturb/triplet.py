"""``TripletBuilder``: the device-side DSM triplet (anchor, positive, negative) from uint8 clips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice
from dsm_lightning.disturb.simple import choose, rand_uniform, selection_weights
from dsm_lightning.disturb.spatial import (
    POINT_DIRECTIONS,
    SPATIAL_KINDS,
    sample_disturbance_field,
)
from dsm_lightning.disturb.temporal import CLIP_KINDS, reorder_frames, sample_frame_indices
from dsm_lightning.disturb.temporal import negative_kinds as all_negative_kinds
from dsm_lightning.disturb.transform import ClipTransform, check_pair, check_prob
from dsm_lightning.disturb.views import ViewBuilder

__all__ = ["TripletBuilder"]

FIELD_SCOPES = ("clip", "batch")
SHIFT_AUGMENTS = ("shared", "independent")


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    check_choice(name, value, allowed)
    return value


def _kinds(value: Sequence[str], allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    kinds = (value,) if isinstance(value, str) else tuple(value)
    bad = [k for k in kinds if k not in allowed]
    if bad or len(set(kinds)) != len(kinds):
        raise ValueError(f"{name} must be distinct names from {allowed}, got {name}={value}")
    return kinds


class TripletBuilder(ViewBuilder):
    """Build DSM triplets on the device from uint8 clips, batched (no loop over samples/frames).

    Implements the view-builder contract of ``disturb.views``:

    - ``anchor``: ``transform``'s simple augmentation of the clip (one draw per clip shared
      by its frames), normalised.
    - ``positive``: the same frames with an independent simple-augmentation draw, then a
      Spatial Local Disturbance field (one per clip, or one per batch with
      ``field_scope="batch"``; identical for every frame) composed with the crop so the clip
      is interpolated once.
    - ``negative``: per clip, one of ``negative_kinds``:

      - ``"shift"``: ``video_shift`` (the data layer's temporally shifted clip of the same
        video), with exactly the anchor's simple-augmentation map
        (``shift_augment="shared"``) or a draw of its own (``"independent"``, the public
        code);
      - ``"other_video"``: that clip (or, without ``video_shift``, the augmented anchor) of
        *another* video of the batch, the batch rolled by one (the public code's negative
        for Something-Something);
      - a frame-level kind (``swap``, ``insert``, ``shuffle``, ``reverse``, ``static``, or
        a registered one): a re-ordering of the augmented anchor's frames, never in the
        anchor's order.

      Absent when ``negative_kinds`` is empty (MoCo). With ``negative_mode="all"`` every clip
      gets one negative of *each* kind, stacked as ``(B, M, 3, T, S, S)``
      (``M = len(negative_kinds)``, in that order).

    Presets: :meth:`paper` (the public DSM code's disturbances, docs/method-fidelity.md) and
    :meth:`moco` (no disturbance); the constructor defaults are the library's stronger
    choices (TPS + any-direction point warps, one field per clip, the shift sharing the
    anchor's augmentation).

    Randomness: ``forward(..., generator=g)`` uses ``g`` (draws happen on ``g.device``; a CPU
    generator gives the same triplet parameters on any device); ``VideoDataModule`` always
    passes one, seeded per batch. Without ``g`` the builder's own CPU generator seeded from
    ``seed`` is used, or, when ``seed`` is None, the global RNG of the video's device.

    Args:
        transform: simple augmentation, crop size and normalisation (``ClipTransform``);
            None = the data module's (or ``ClipTransform()`` standalone).
        spatial_kinds: SLD variants to choose from per clip, subset of ``("tps", "points")``.
        spatial_probs: selection probabilities for ``spatial_kinds`` (None = uniform).
        spatial_prob: probability that a clip's positive is warped at all (0 = MoCo positive).
        tps_grid: TPS control points per side.
        tps_jitter: TPS control point jitter, normalised units (1 = half the frame).
        point_count: (min, max) number of point-warp centres.
        point_shift: (min, max) point-warp shift in pixels of a 112-px frame (scales with the
            crop size): its length (``point_direction="any"``) or each of its components
            (``"down_right"``).
        point_region: (min, max) normalised coordinate range of the point-warp centres (-1 =
            left/top edge, 1 = right/bottom edge).
        point_direction: ``"any"`` (uniform direction, fall-off centred on the point) or
            ``"down_right"`` (both components positive, fall-off centred on the point plus
            its shift: the public code).
        point_strength: peak point-warp displacement as a fraction of the shift (0.5 in the
            public code).
        point_integer: truncate the point-warp offsets to whole pixels (the public code).
        field_scope: ``"clip"``: one SLD field per clip; ``"batch"``: one field shared by
            every clip of the batch (the public code).
        negative_kinds: TLD variants chosen per clip, subset of
            ``("shift", "other_video", "swap", "insert", "shuffle", "reverse", "static")``
            plus any kind added with
            :func:`~dsm_lightning.disturb.temporal.register_frame_kind`; empty = no negative.
        negative_probs: selection probabilities for ``negative_kinds`` (None = uniform).
        local_fraction: fraction of T moved by ``swap`` / ``insert`` (at least one frame).
        negative_mode: ``"sample"``: one hard negative per clip, its kind drawn with
            ``negative_probs``; ``"all"``: one hard negative per kind and clip, stacked on a new
            dim 1 (more motion signal per step; the losses accept ``(B, M, ...)``).
        shift_augment: ``"shared"``: the shifted clip gets the anchor's simple-augmentation
            map (only the time differs); ``"independent"``: a draw of its own (the public
            code).
        seed: seed of the builder's own generator, used only when ``forward`` gets no
            generator (None = global RNG).

    Raises:
        ValueError: naming the first invalid argument.
    """

    def __init__(
        self,
        transform: ClipTransform | None = None,
        spatial_kinds: tuple[str, ...] = SPATIAL_KINDS,
        spatial_probs: tuple[float, ...] | None = None,
        spatial_prob: float = 1.0,
        tps_grid: int = 5,
        tps_jitter: float = 0.1,
        point_count: tuple[int, int] = (1, 3),
        point_shift: tuple[float, float] = (10.0, 20.0),
        point_region: tuple[float, float] = (-0.5, 0.5),
        point_direction: str = "any",
        point_strength: float = 1.0,
        point_integer: bool = False,
        field_scope: str = "clip",
        negative_kinds: tuple[str, ...] = ("shift",),
        negative_probs: tuple[float, ...] | None = None,
        local_fraction: float = 0.1,
        negative_mode: str = "sample",
        shift_augment: str = "shared",
        seed: int | None = None,
    ) -> None:
        super().__init__(transform)
        self.spatial_kinds = _kinds(spatial_kinds, SPATIAL_KINDS, "spatial_kinds")
        self.spatial_prob = check_prob(spatial_prob, "spatial_prob")
        if self.spatial_prob > 0 and not self.spatial_kinds:
            raise ValueError("spatial_kinds must not be empty when spatial_prob > 0")
        self.spatial_probs = (
            selection_weights(self.spatial_kinds, spatial_probs, "spatial_probs")
            if self.spatial_kinds
            else None
        )
        if isinstance(tps_grid, bool) or not isinstance(tps_grid, int) or tps_grid < 2:
            raise ValueError(f"tps_grid must be an int >= 2, got tps_grid={tps_grid}")
        self.tps_grid = tps_grid
        if not 0.0 <= tps_jitter <= 1.0:
            raise ValueError(f"tps_jitter must be in [0, 1], got tps_jitter={tps_jitter}")
        self.tps_jitter = float(tps_jitter)
        count = tuple(point_count)
        if len(count) != 2 or not all(isinstance(c, int) for c in count) or not (
            1 <= count[0] <= count[1] <= 16
        ):
            raise ValueError(
                f"point_count must be ints (min, max) with 1 <= min <= max <= 16, "
                f"got point_count={point_count}"
            )
        self.point_count = count
        self.point_shift = check_pair(point_shift, "point_shift", 0.0, 112.0)
        self.point_region = check_pair(point_region, "point_region", -1.0, 1.0)
        self.point_direction = _choice(point_direction, POINT_DIRECTIONS, "point_direction")
        if not 0.0 < point_strength <= 1.0:
            raise ValueError(f"point_strength must be in (0, 1], got "
                             f"point_strength={point_strength}")
        self.point_strength = float(point_strength)
        self.point_integer = bool(point_integer)
        self.field_scope = _choice(field_scope, FIELD_SCOPES, "field_scope")
        self.negative_kinds = _kinds(negative_kinds, all_negative_kinds(), "negative_kinds")
        self.negative_probs = (
            selection_weights(self.negative_kinds, negative_probs, "negative_probs")
            if self.negative_kinds
            else None
        )
        if not 0.0 < local_fraction <= 0.5:
            raise ValueError(
                f"local_fraction must be in (0, 0.5], got local_fraction={local_fraction}"
            )
        self.local_fraction = float(local_fraction)
        self.negative_mode = _choice(negative_mode, ("sample", "all"), "negative_mode")
        self.shift_augment = _choice(shift_augment, SHIFT_AUGMENTS, "shift_augment")
        self._set_seed(seed)

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
    def paper(cls, **kwargs) -> TripletBuilder:
        """The public DSM code's disturbances (docs/method-fidelity.md has the file lines).

        Positive: local point warps only (TPS off), 1-3 points at pixels 60-139 of a 224-px
        crop, shift components of 10-19 px both positive, fall-off
        ``0.5 / (3 (d/|s|)^4 + 1)`` centred on the point plus its shift, integer offsets,
        one field per batch (all scaled with the crop: 3.5-6.7 px peak at 112 px). Negative:
        the temporal shift only, augmented independently of the anchor; its minimum gap is
        the data module's ``min_gap`` (2 for UCF101/HMDB51, 4 for Kinetics in the public
        code). Pair it with ``ClipTransform.paper()`` for the simple augmentation.

        Args:
            **kwargs: any constructor argument (e.g. ``transform``, ``seed``, or
                ``negative_kinds=("other_video",)`` for Something-Something).

        Returns:
            A ``TripletBuilder``.

        Raises:
            ValueError: an invalid argument.
        """
        return cls(**{**cls.paper_settings(), **kwargs})

    @classmethod
    def moco(cls, **kwargs) -> TripletBuilder:
        """MoCo baseline preset: positive = independent simple augmentation, no negative.

        Args:
            **kwargs: any other constructor argument.

        Raises:
            ValueError: if ``spatial_prob`` or ``negative_kinds`` is given (the preset fixes
                them).
        """
        fixed = {"spatial_prob", "negative_kinds"} & kwargs.keys()
        if fixed:
            raise ValueError(f"the moco preset fixes {sorted(fixed)}; do not pass them")
        return cls(spatial_prob=0.0, negative_kinds=(), **kwargs)

    # ----------------------------------------------------------------------------- helpers
    @staticmethod
    def _check_video(video: Tensor, name: str = "video") -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, T, H, W), got shape={tuple(video.shape)}")

    def sample_field(
        self, batch: int, generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """Sample this builder's SLD fields (see ``spatial.sample_disturbance_field``).

        Returns:
            (B, S, S, 2) displacement field, zeros for clips left unwarped (with
            ``field_scope="batch"`` the B fields are one field, expanded).
        """
        if self.spatial_prob == 0:
            return torch.zeros(batch, self.crop_size, self.crop_size, 2, device=device)
        return sample_disturbance_field(
            batch,
            self.crop_size,
            kinds=self.spatial_kinds,
            probs=self.spatial_probs,
            prob=self.spatial_prob,
            tps_grid=self.tps_grid,
            tps_jitter=self.tps_jitter,
            point_count=self.point_count,
            point_shift=self.point_shift,
            reference_size=112,
            point_region=self.point_region,
            point_direction=self.point_direction,
            point_strength=self.point_strength,
            point_integer=self.point_integer,
            shared=self.field_scope == "batch",
            generator=self._generator_for(generator),
            device=device,
        )

    # ----------------------------------------------------------------------------- API
    def forward(
        self,
        video: Tensor,
        video_shift: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_field: bool = False,
    ) -> dict[str, Tensor]:
        """Build the triplet.

        If ``"shift"`` is among ``negative_kinds`` but ``video_shift`` is None, the clips that
        would have drawn it use the remaining kinds (renormalised probabilities); if
        ``"shift"`` is the only kind this raises.

        Args:
            video: (B, 3, T, H, W) uint8 (or float in [0, 1]) on any device; T >= 2 for
                frame-level negatives, B >= 2 for ``"other_video"``.
            video_shift: (B, 3, T, H, W) temporally shifted clip of the same videos, same dtype.
            generator: random source (default: the builder's own, see the class docstring).
            return_field: also return the positive's field under ``"field"``.

        Returns:
            ``{"anchor", "positive"[, "negative"][, "field"]}``: (B, 3, T, S, S) normalised
            tensors of the transform's dtype on ``video``'s device (``negative`` is
            (B, M, 3, T, S, S) with ``negative_mode="all"``); ``field`` (B, S, S, 2).

        Raises:
            ValueError: for bad shapes, ``"shift"`` as the only kind without
                ``video_shift``, or ``"other_video"`` with fewer than 2 clips.
        """
        self._check_video(video)
        g = self._generator_for(generator)
        kinds, probs = self.negative_kinds, self.negative_probs
        if "shift" in kinds and video_shift is None:
            if kinds == ("shift",):
                raise ValueError(
                    "negative_kinds=('shift',) needs video_shift; pass the data layer's "
                    "'video_shift' or add frame-level kinds"
                )
            keep = [i for i, k in enumerate(kinds) if k != "shift"]
            kinds, probs = tuple(kinds[i] for i in keep), tuple(probs[i] for i in keep)
        if "other_video" in kinds and video.shape[0] < 2:
            raise ValueError(f"negative kind 'other_video' needs a batch of >= 2 clips, got "
                             f"{video.shape[0]}")
        use_shift = video_shift is not None and any(k in CLIP_KINDS for k in kinds)
        if use_shift:
            self._check_video(video_shift, "video_shift")
            if video_shift.shape != video.shape:
                raise ValueError(
                    f"video_shift shape {tuple(video_shift.shape)} != video shape "
                    f"{tuple(video.shape)}"
                )
            video_shift = video_shift.to(video.device)
        shared = use_shift and self.shift_augment == "shared"
        clips = torch.stack([video, video_shift], dim=1) if shared else video[:, None]

        batch, transform = video.shape[0], self.transform
        anchors = transform.apply(clips, transform.sample(batch, g, video.device))
        anchor = anchors[:, 0]
        params = transform.sample(batch, g, video.device)
        field = self.sample_field(batch, g, video.device) if self.spatial_prob > 0 else None
        positive = transform.apply(video[:, None], params, field)
        out = {"anchor": anchor, "positive": positive[:, 0]}
        if kinds:
            shifted = None
            if shared:
                shifted = anchors[:, 1]
            elif use_shift:  # its own draw, after the anchor's and the positive's
                shifted = transform.apply(video_shift[:, None],
                                          transform.sample(batch, g, video.device))[:, 0]
            clip_negatives = {}
            if "shift" in kinds:
                clip_negatives["shift"] = shifted
            if "other_video" in kinds:  # sample i gets sample i-1's clip: another video
                clip_negatives["other_video"] = (
                    shifted if shifted is not None else anchor).roll(1, dims=0)
            if self.negative_mode == "all":
                out["negative"] = torch.stack(
                    [clip_negatives[kind] if kind in clip_negatives
                     else self._reorder(anchor, (kind,), (1.0,), g) for kind in kinds],
                    dim=1,
                )
            else:
                out["negative"] = self._sample_negative(anchor, clip_negatives, kinds, probs, g)
        if return_field:
            out["field"] = (
                field
                if field is not None
                else torch.zeros(batch, self.crop_size, self.crop_size, 2, device=video.device)
            )
        return out

    def _reorder(
        self, anchor: Tensor, kinds: tuple[str, ...], probs: tuple[float, ...],
        g: torch.Generator | None,
    ) -> Tensor:
        """Frame-level negatives: the anchor's frames re-indexed, one drawn kind per clip."""
        index, _ = sample_frame_indices(
            anchor.shape[0],
            anchor.shape[2],
            kinds=kinds,
            probs=probs,
            local_fraction=self.local_fraction,
            generator=g,
            device=anchor.device,
        )
        return reorder_frames(anchor, index)

    def _sample_negative(
        self, anchor: Tensor, clip_negatives: dict[str, Tensor], kinds: tuple[str, ...],
        probs: tuple[float, ...], g: torch.Generator | None,
    ) -> Tensor:
        """One hard negative per clip, its kind drawn with ``probs`` (``negative_mode="sample"``).

        The clip-level kinds each form one candidate; the frame-level kinds together form one
        (their own draw picks the kind); one uniform per clip then picks the candidate.
        """
        candidates = [clip_negatives[k] for k in kinds if k in clip_negatives]
        weights = [p for k, p in zip(kinds, probs) if k in clip_negatives]
        frame_kinds = tuple(k for k in kinds if k not in clip_negatives)
        if frame_kinds:
            frame_probs = tuple(p for k, p in zip(kinds, probs) if k not in clip_negatives)
            candidates.append(self._reorder(anchor, frame_kinds, frame_probs, g))
            weights.append(sum(frame_probs))
        if len(candidates) == 1:
            return candidates[0]
        total = sum(weights)
        pick = choose(tuple(w / total for w in weights),
                      rand_uniform((anchor.shape[0],), generator=g, device=anchor.device))
        out = candidates[-1]
        for i in range(len(candidates) - 2, -1, -1):  # a few kinds, never a loop over clips
            out = torch.where((pick == i)[:, None, None, None, None], candidates[i], out)
        return out

    def train_transform(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``transform.train`` with the builder's generator by default (backward compatibility).

        Args:
            video: (B, 3, T, H, W) uint8 or float in [0, 1].
            generator: random source (default: the builder's own).

        Returns:
            (B, 3, T, S, S) normalised tensor.
        """
        return self.transform.train(video, self._generator_for(generator))

    def extra_repr(self) -> str:
        return (
            f"spatial_kinds={self.spatial_kinds}, spatial_prob={self.spatial_prob}, "
            f"point_direction={self.point_direction}, field_scope={self.field_scope}, "
            f"negative_kinds={self.negative_kinds}, negative_mode={self.negative_mode}, "
            f"shift_augment={self.shift_augment}, seed={self.seed}"
        )
