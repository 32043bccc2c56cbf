"""``TripletBuilder``: the device-side DSM triplet (anchor, positive, negative) from uint8 clips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dsm_lightning.disturb.simple import rand_uniform, selection_weights
from dsm_lightning.disturb.spatial import SPATIAL_KINDS, sample_disturbance_field
from dsm_lightning.disturb.temporal import negative_kinds as all_negative_kinds
from dsm_lightning.disturb.temporal import reorder_frames, sample_frame_indices
from dsm_lightning.disturb.transform import ClipTransform, check_pair, check_prob
from dsm_lightning.disturb.views import ViewBuilder

__all__ = ["TripletBuilder"]


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
      Spatial Local Disturbance field (one per clip, identical for its frames) composed with the
      crop so the clip is interpolated once.
    - ``negative``: per clip, one of ``negative_kinds``: ``"shift"`` = ``video_shift`` (the
      data layer's temporally shifted clip of the same video) with exactly the anchor's
      simple-augmentation map; a frame-level kind (``swap``, ``insert``, ``shuffle``,
      ``reverse``, ``static``) = a re-ordering of the augmented anchor's frames, never in the
      anchor's order. Absent when ``negative_kinds`` is empty (MoCo). With
      ``negative_mode="all"`` every clip gets one negative of *each* kind, stacked as
      ``(B, M, 3, T, S, S)`` (``M = len(negative_kinds)``, in that order).

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
            crop size).
        negative_kinds: TLD variants chosen per clip, subset of
            ``("shift", "swap", "insert", "shuffle", "reverse", "static")`` plus any kind added
            with :func:`~dsm_lightning.disturb.temporal.register_frame_kind`; empty = no
            negative.
        negative_probs: selection probabilities for ``negative_kinds`` (None = uniform).
        local_fraction: fraction of T moved by ``swap`` / ``insert`` (at least one frame).
        negative_mode: ``"sample"``: one hard negative per clip, its kind drawn with
            ``negative_probs``; ``"all"``: one hard negative per kind and clip, stacked on a new
            dim 1 (more motion signal per step; the losses accept ``(B, M, ...)``).
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
        negative_kinds: tuple[str, ...] = ("shift",),
        negative_probs: tuple[float, ...] | None = None,
        local_fraction: float = 0.1,
        negative_mode: str = "sample",
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
        if negative_mode not in ("sample", "all"):
            raise ValueError(
                f"negative_mode must be 'sample' or 'all', got negative_mode={negative_mode!r}"
            )
        self.negative_mode = negative_mode
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got seed={seed!r}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

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
    def _generator_for(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self._generator

    @staticmethod
    def _check_video(video: Tensor, name: str = "video") -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, T, H, W), got shape={tuple(video.shape)}")

    def sample_field(
        self, batch: int, generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """Sample this builder's SLD fields (see ``spatial.sample_disturbance_field``).

        Returns:
            (B, S, S, 2) displacement field, zeros for clips left unwarped.
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
        would have drawn it use the remaining frame-level kinds (renormalised probabilities);
        if ``"shift"`` is the only kind this raises.

        Args:
            video: (B, 3, T, H, W) uint8 (or float in [0, 1]) on any device; T >= 2 for
                frame-level negatives.
            video_shift: (B, 3, T, H, W) temporally shifted clip of the same videos, same dtype.
            generator: random source (default: the builder's own, see the class docstring).
            return_field: also return the positive's field under ``"field"``.

        Returns:
            ``{"anchor", "positive"[, "negative"][, "field"]}``: (B, 3, T, S, S) normalised
            tensors of the transform's dtype on ``video``'s device (``negative`` is
            (B, M, 3, T, S, S) with ``negative_mode="all"``); ``field`` (B, S, S, 2).

        Raises:
            ValueError: for bad shapes, or ``"shift"`` as the only kind without
                ``video_shift``.
        """
        self._check_video(video)
        g = self._generator_for(generator)
        kinds, probs = self.negative_kinds, self.negative_probs
        use_shift = "shift" in kinds and video_shift is not None
        if "shift" in kinds and video_shift is None:
            if kinds == ("shift",):
                raise ValueError(
                    "negative_kinds=('shift',) needs video_shift; pass the data layer's "
                    "'video_shift' or add frame-level kinds"
                )
            keep = [i for i, k in enumerate(kinds) if k != "shift"]
            kinds, probs = tuple(kinds[i] for i in keep), tuple(probs[i] for i in keep)
        if use_shift:
            self._check_video(video_shift, "video_shift")
            if video_shift.shape != video.shape:
                raise ValueError(
                    f"video_shift shape {tuple(video_shift.shape)} != video shape "
                    f"{tuple(video.shape)}"
                )
            clips = torch.stack([video, video_shift.to(video.device)], dim=1)
        else:
            clips = video[:, None]

        batch, transform = video.shape[0], self.transform
        anchors = transform.apply(clips, transform.sample(batch, g, video.device))
        anchor = anchors[:, 0]
        params = transform.sample(batch, g, video.device)
        field = self.sample_field(batch, g, video.device) if self.spatial_prob > 0 else None
        positive = transform.apply(video[:, None], params, field)
        out = {"anchor": anchor, "positive": positive[:, 0]}
        if kinds:
            shifted = anchors[:, 1] if use_shift else None
            if self.negative_mode == "all":
                out["negative"] = torch.stack(
                    [shifted if kind == "shift" else self._reorder(anchor, (kind,), (1.0,), g)
                     for kind in kinds],
                    dim=1,
                )
            else:
                out["negative"] = self._sample_negative(anchor, shifted, kinds, probs, g)
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
        self, anchor: Tensor, shifted: Tensor | None, kinds: tuple[str, ...],
        probs: tuple[float, ...], g: torch.Generator | None,
    ) -> Tensor:
        """One hard negative per clip, its kind drawn with ``probs`` (``negative_mode="sample"``)."""
        frame_kinds = tuple(k for k in kinds if k != "shift")
        if not frame_kinds:
            return shifted
        frame_probs = tuple(p for k, p in zip(kinds, probs) if k != "shift")
        reordered = self._reorder(anchor, frame_kinds, frame_probs, g)
        if shifted is None:
            return reordered
        shift_weight = probs[kinds.index("shift")]
        pick_shift = rand_uniform((anchor.shape[0],), generator=g, device=anchor.device)
        pick_shift = (pick_shift < shift_weight)[:, None, None, None, None]
        return torch.where(pick_shift, shifted, reordered)

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
            f"negative_kinds={self.negative_kinds}, negative_mode={self.negative_mode}, "
            f"seed={self.seed}"
        )
