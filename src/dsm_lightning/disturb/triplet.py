"""``TripletBuilder``: the device-side DSM triplet (anchor, positive, negative) from uint8 clips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dsm_lightning.disturb.simple import (
    KINETICS_MEAN,
    KINETICS_STD,
    augment_clips,
    denormalize,
    normalize,
    rand_uniform,
    sample_simple_params,
    selection_weights,
    spatial_crops,
)
from dsm_lightning.disturb.spatial import SPATIAL_KINDS, sample_disturbance_field
from dsm_lightning.disturb.temporal import negative_kinds as all_negative_kinds
from dsm_lightning.disturb.temporal import (
    reorder_frames,
    sample_frame_indices,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _pair(value: Sequence[float], name: str, low: float, high: float, ordered: bool = True):
    values = tuple(value)
    if len(values) != 2 or not all(low <= v <= high for v in values) or (
        ordered and values[0] > values[1]
    ):
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value}")
    return values


def _prob(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {name}={value}")
    return float(value)


def _kinds(value: Sequence[str], allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    kinds = (value,) if isinstance(value, str) else tuple(value)
    bad = [k for k in kinds if k not in allowed]
    if bad or len(set(kinds)) != len(kinds):
        raise ValueError(f"{name} must be distinct names from {allowed}, got {name}={value}")
    return kinds


class TripletBuilder(nn.Module):
    """Build DSM triplets on the device from uint8 clips, batched (no loop over samples/frames).

    - ``anchor``: simple augmentation of the clip (random resized crop, horizontal flip, small
      rotation, colour jitter, random grayscale; one draw per clip shared by its frames),
      normalised.
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
    generator gives the same triplet parameters on any device). Without ``g`` the builder's own
    CPU generator seeded from ``seed`` is used, or, when ``seed`` is None, the global RNG of the
    video's device. The builder's generator is not part of the state dict; seed each process
    differently in distributed runs if identical draws across ranks are unwanted.

    Args:
        crop_size: output side S in pixels.
        crop_scale: (min, max) area fraction of the random resized crop.
        crop_ratio: (min, max) aspect ratio (width / height) of the crop.
        flip_prob: probability of a horizontal flip.
        jitter: colour jitter strengths (brightness, contrast, saturation, hue); hue <= 0.5 is a
            fraction of the colour circle as in torchvision (0.5 = any hue).
        jitter_prob: probability a clip is colour-jittered.
        grayscale_prob: probability a clip is turned to grayscale.
        rotation_degrees: maximum absolute rotation in degrees.
        mean: per-channel normalisation mean (Kinetics by default).
        std: per-channel normalisation std.
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
        dtype: output dtype, ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        seed: seed of the builder's own generator (None = global RNG).

    Raises:
        ValueError: naming the first invalid argument.
    """

    def __init__(
        self,
        crop_size: int = 112,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.25, 0.5),
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        rotation_degrees: float = 10.0,
        mean: tuple[float, float, float] = KINETICS_MEAN,
        std: tuple[float, float, float] = KINETICS_STD,
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
        dtype: str = "float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got crop_size={crop_size}")
        self.crop_size = crop_size
        self.crop_scale = _pair(crop_scale, "crop_scale", 0.0, 1.0)
        if self.crop_scale[0] <= 0:
            raise ValueError(f"crop_scale must be > 0, got crop_scale={crop_scale}")
        self.crop_ratio = _pair(crop_ratio, "crop_ratio", 1e-3, 1e3)
        self.flip_prob = _prob(flip_prob, "flip_prob")
        jitter = tuple(float(j) for j in jitter)
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(
                "jitter must be 4 non-negative (brightness, contrast, saturation, hue) "
                f"strengths with hue <= 0.5, got jitter={jitter}"
            )
        self.jitter = jitter
        self.jitter_prob = _prob(jitter_prob, "jitter_prob")
        self.grayscale_prob = _prob(grayscale_prob, "grayscale_prob")
        if not 0.0 <= rotation_degrees <= 180.0:
            raise ValueError(
                f"rotation_degrees must be in [0, 180], got rotation_degrees={rotation_degrees}"
            )
        self.rotation_degrees = float(rotation_degrees)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3:
            raise ValueError(f"mean must have 3 values, got mean={mean}")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"std must be 3 positive values, got std={std}")
        self.spatial_kinds = _kinds(spatial_kinds, SPATIAL_KINDS, "spatial_kinds")
        self.spatial_prob = _prob(spatial_prob, "spatial_prob")
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
        self.point_shift = _pair(point_shift, "point_shift", 0.0, 112.0)
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
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got dtype={dtype!r}")
        self.dtype = dtype
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
    @property
    def out_dtype(self) -> torch.dtype:
        """torch dtype of the outputs."""
        return _DTYPES[self.dtype]

    def _simple_kwargs(self) -> dict:
        return {
            "crop_scale": self.crop_scale,
            "crop_ratio": self.crop_ratio,
            "flip_prob": self.flip_prob,
            "rotation_degrees": self.rotation_degrees,
            "jitter": self.jitter,
            "jitter_prob": self.jitter_prob,
            "grayscale_prob": self.grayscale_prob,
        }

    def _generator_for(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self._generator

    @staticmethod
    def _check_video(video: Tensor, name: str = "video") -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, T, H, W), got shape={tuple(video.shape)}")

    def _augment(self, clips: Tensor, generator, field_fn=None) -> tuple[Tensor, Tensor | None]:
        params = sample_simple_params(
            clips.shape[0], generator=generator, device=clips.device, **self._simple_kwargs()
        )
        field = field_fn() if field_fn is not None else None
        out = augment_clips(
            clips, params, self.crop_size, mean=self.mean, std=self.std, field=field,
            dtype=self.out_dtype,
        )
        return out, field

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
            tensors of the builder's dtype on ``video``'s device; ``field`` (B, S, S, 2).

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

        anchors, _ = self._augment(clips, g)
        anchor = anchors[:, 0]
        need_field = self.spatial_prob > 0
        positive, field = self._augment(
            video[:, None],
            g,
            field_fn=(lambda: self.sample_field(video.shape[0], g, video.device))
            if need_field
            else None,
        )
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
                else torch.zeros(video.shape[0], self.crop_size, self.crop_size, 2,
                                 device=video.device)
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
        """Simple augmentation + normalisation (fine-tuning), one draw per clip.

        Args:
            video: (B, 3, T, H, W) uint8 or float in [0, 1].
            generator: random source (default: the builder's own).

        Returns:
            (B, 3, T, S, S) normalised tensor of the builder's dtype.
        """
        self._check_video(video)
        out, _ = self._augment(video[:, None], self._generator_for(generator))
        return out[:, 0]

    def eval_transform(self, video: Tensor, n_crops: int = 1) -> Tensor:
        """Deterministic crops + normalisation for evaluation.

        Crops of side S are taken without interpolation (frames with a short side below S are
        resized first): 1 = centre, 3 = left/centre/right, 5 = corners + centre.

        Args:
            video: (B, 3, T, H, W) or (B, V, 3, T, H, W), uint8 or float in [0, 1].
            n_crops: 1, 3 or 5.

        Returns:
            (B, 3, T, S, S) for 5-D input with ``n_crops=1``, otherwise
            (B, V * n_crops, 3, T, S, S) (view-major: view 0's crops first; V = 1 for 5-D
            input).

        Raises:
            ValueError: for other shapes or ``n_crops``.
        """
        if video.dim() == 5:
            self._check_video(video)
            crops = spatial_crops(video, self.crop_size, n_crops)  # (B, n, C, T, S, S)
            out = normalize(crops, self.mean, self.std, self.out_dtype)
            return out[:, 0] if n_crops == 1 else out
        if video.dim() == 6 and video.shape[2] == 3:
            b, v = video.shape[:2]
            crops = spatial_crops(video.flatten(0, 1), self.crop_size, n_crops)
            out = normalize(crops, self.mean, self.std, self.out_dtype)
            return out.reshape(b, v * n_crops, *out.shape[2:])
        raise ValueError(
            f"video must be (B, 3, T, H, W) or (B, V, 3, T, H, W), got shape={tuple(video.shape)}"
        )

    def denormalize(self, x: Tensor) -> Tensor:
        """Invert the normalisation for display.

        Args:
            x: (..., 3, T, H, W) normalised tensor.

        Returns:
            float32 tensor in [0, 1].
        """
        return denormalize(x, self.mean, self.std)

    def extra_repr(self) -> str:
        return (
            f"crop_size={self.crop_size}, spatial_kinds={self.spatial_kinds}, "
            f"spatial_prob={self.spatial_prob}, negative_kinds={self.negative_kinds}, "
            f"dtype={self.dtype}, seed={self.seed}"
        )
