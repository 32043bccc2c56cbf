"""``ClipTransform``: the simple augmentation, evaluation crops and normalisation of clips.

One object holds the settings every device-side path shares (plain tensor code, no state):
the simple augmentation of a training clip (random resized crop, horizontal flip, small
rotation, colour jitter, random grayscale; one draw per clip shared by its frames), the
deterministic evaluation crops and the normalisation. Its constructor is the one place
these settings and their defaults are declared and checked. The output side ``size`` is
not one of them: it is the caller's (``VideoDataModule`` passes its ``crop_size`` to every
call, to the transform and to the view builders alike).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsm_lightning._checks import check_choice, check_fraction, check_int, check_pair
from dsm_lightning.disturb.colour import JITTER_MODES, sample_color
from dsm_lightning.disturb.crops import EVAL_CROPS, spatial_crops
from dsm_lightning.disturb.geometry import sample_affine
from dsm_lightning.disturb.simple import SimpleAugParams, augment_clips
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD, denormalize, normalize

__all__ = ["DTYPES", "PAPER_CROP_AREA", "ClipTransform"]

#: Output dtype names accepted by ``ClipTransform(dtype=...)``.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Area fraction of the public DSM code's crop: a 224 random crop of a frame resized to 256
#: (112 of 128), i.e. a square of side 7/8 of the short side.
PAPER_CROP_AREA = (224 / 256) ** 2


def _check_video(video: Tensor) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, T, H, W), got shape={tuple(video.shape)}")


def output_size(video: Tensor, size: int | None) -> int:
    """The output side: ``size``, or the short side of ``video``'s frames when None.

    Raises:
        ValueError: ``size`` is not a positive int.
    """
    return min(video.shape[-2:]) if size is None else check_int("size", size)


class ClipTransform:
    """Simple augmentation, evaluation crops and normalisation of clips, batched.

    ``train(video, size)`` augments each clip with its own draw (shared by its frames) and
    normalises; ``eval(video, size, n_crops)`` takes deterministic crops and normalises.
    Neither loops over samples, frames or pixels. Randomness comes from the ``generator``
    argument (drawn on its device, so a CPU generator gives the same draws whatever device
    the video is on) or, without one, from the global RNG of the video's device.

    Args:
        crop_scale: (min, max) area fraction of the random resized crop.
        crop_ratio: (min, max) aspect ratio (width / height) of the crop.
        flip_prob: probability of a horizontal flip.
        jitter: colour jitter strengths (brightness, contrast, saturation, hue); hue <= 0.5
            is a fraction of the colour circle as in torchvision (0.5 = any hue).
        jitter_prob: probability a clip is colour-jittered.
        jitter_mode: ``"all"``: a jittered clip gets every op (brightness, contrast,
            saturation, hue); ``"one_of"``: exactly one of them, chosen uniformly among those
            with strength > 0 (the public DSM code's behaviour, a bug there; see
            docs/method-fidelity.md).
        grayscale_prob: probability a clip is turned to grayscale.
        rotation_degrees: maximum absolute rotation in degrees.
        mean: per-channel normalisation mean on [0, 1] values (Kinetics by default).
        std: per-channel normalisation std.
        dtype: output dtype, ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Raises:
        ValueError: naming the first invalid argument.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.25, 0.5),
        jitter_prob: float = 0.8,
        jitter_mode: str = "all",
        grayscale_prob: float = 0.2,
        rotation_degrees: float = 10.0,
        mean: tuple[float, float, float] = KINETICS_MEAN,
        std: tuple[float, float, float] = KINETICS_STD,
        dtype: str = "float32",
    ) -> None:
        self.crop_scale = check_pair("crop_scale", crop_scale, 0.0, 1.0)
        if self.crop_scale[0] <= 0:
            raise ValueError(f"crop_scale must be > 0, got crop_scale={crop_scale}")
        self.crop_ratio = check_pair("crop_ratio", crop_ratio, 1e-3, 1e3)
        self.flip_prob = check_fraction("flip_prob", flip_prob)
        strengths = tuple(float(j) for j in jitter)
        if len(strengths) != 4 or min(strengths) < 0 or strengths[3] > 0.5:
            raise ValueError(
                "jitter must be 4 non-negative (brightness, contrast, saturation, hue) "
                f"strengths with hue <= 0.5, got jitter={jitter}"
            )
        self.jitter = strengths
        self.jitter_prob = check_fraction("jitter_prob", jitter_prob)
        check_choice("jitter_mode", jitter_mode, JITTER_MODES)
        self.jitter_mode = jitter_mode
        self.grayscale_prob = check_fraction("grayscale_prob", grayscale_prob)
        self.rotation_degrees = check_fraction("rotation_degrees", rotation_degrees, 0.0, 180.0)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3:
            raise ValueError(f"mean must have 3 values, got mean={mean}")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"std must be 3 positive values, got std={std}")
        check_choice("dtype", dtype, DTYPES)
        self.dtype = dtype

    @classmethod
    def paper_settings(cls) -> dict[str, object]:
        """The public DSM code's simple augmentation as constructor values (see :meth:`paper`)."""
        return {
            "crop_scale": (PAPER_CROP_AREA, PAPER_CROP_AREA),
            "crop_ratio": (1.0, 1.0),
            "flip_prob": 0.0,
            "jitter": (0.5, 0.5, 0.25, 0.5),
            "jitter_prob": 1.0,
            "jitter_mode": "one_of",
            "grayscale_prob": 0.0,
            "rotation_degrees": 10.0,
        }

    @classmethod
    def paper(cls, **overrides: object) -> ClipTransform:
        """The public DSM code's simple augmentation (docs/method-fidelity.md has the lines).

        Resize + random crop of side 7/8 of the short side (224 of 256, 112 of 128: no random
        *resized* crop), rotation up to 10 degrees, no flip, no grayscale, and colour jitter
        (0.5, 0.5, 0.25, 0.5) applied to every clip with exactly one op per clip
        (``jitter_mode="one_of"``, bug-compatible). With the data module's ``frame_size`` =
        ``crop_size`` x 8 / 7 (128 for 112) the crop takes ``crop_size`` pixels unscaled, as
        there. Normalisation stays the library's (Kinetics statistics; the public code uses
        ImageNet's), shared with fine-tuning and evaluation.

        Args:
            **overrides: any constructor argument (e.g. ``dtype``).

        Returns:
            A ``ClipTransform``.

        Raises:
            ValueError: an invalid argument.
        """
        return cls(**{**cls.paper_settings(), **overrides})

    @property
    def torch_dtype(self) -> torch.dtype:
        """torch dtype of the outputs."""
        return DTYPES[self.dtype]

    # ----------------------------------------------------------------------------- pieces
    def sample(
        self, batch: int, generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> SimpleAugParams:
        """One simple-augmentation draw per clip: the affine map, then the colour map.

        Args:
            batch: number of clips B.
            generator: random source (draws on its device); None = global RNG of ``device``.
            device: where the parameters live.

        Returns:
            ``SimpleAugParams`` for B clips.
        """
        theta = sample_affine(
            batch, crop_scale=self.crop_scale, crop_ratio=self.crop_ratio,
            flip_prob=self.flip_prob, rotation_degrees=self.rotation_degrees,
            generator=generator, device=device)
        color_matrix, color_shift = sample_color(
            batch, jitter=self.jitter, jitter_prob=self.jitter_prob,
            grayscale_prob=self.grayscale_prob, jitter_mode=self.jitter_mode,
            generator=generator, device=device)
        return SimpleAugParams(theta, color_matrix, color_shift)

    def apply(
        self, clips: Tensor, params: SimpleAugParams, size: int, field: Tensor | None = None
    ) -> Tensor:
        """Apply one draw per sample to its N clips (same map for all N), then normalise.

        Args:
            clips: (B, N, 3, T, H, W) uint8 or float in [0, 1].
            params: draws of ``sample`` for B samples.
            size: output side S in pixels.
            field: optional (B, S, S, 2) displacement field composed with the crop (one
                interpolation in all).

        Returns:
            (B, N, 3, T, S, S) normalised tensor of the transform's dtype.
        """
        return augment_clips(clips, params, size, mean=self.mean, std=self.std, field=field,
                             dtype=self.torch_dtype)

    def normalize(self, video: Tensor) -> Tensor:
        """Scale to [0, 1] (uint8 input) and normalise: (..., 3, T, H, W) -> same shape."""
        return normalize(video, self.mean, self.std, self.torch_dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        """Invert the normalisation for display: (..., 3, T, H, W) -> float32 in [0, 1]."""
        return denormalize(x, self.mean, self.std)

    # ----------------------------------------------------------------------------- API
    def train(
        self, video: Tensor, size: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Simple augmentation + normalisation of training clips, one draw per clip.

        Args:
            video: (B, 3, T, H, W) uint8 or float in [0, 1].
            size: output side S (None = the frames' short side).
            generator: random source (draws on its device); None = global RNG.

        Returns:
            (B, 3, T, S, S) normalised tensor of the transform's dtype.

        Raises:
            ValueError: ``video`` is not (B, 3, T, H, W), or a bad ``size``.
        """
        _check_video(video)
        params = self.sample(video.shape[0], generator=generator, device=video.device)
        return self.apply(video[:, None], params, output_size(video, size))[:, 0]

    def eval(self, video: Tensor, size: int | None = None, n_crops: int = 1) -> Tensor:
        """Deterministic crops + normalisation for evaluation.

        Crops of side S are taken without interpolation (frames with a short side below S are
        resized first): 1 = centre, 3 = left/centre/right, 5 = corners + centre.

        Args:
            video: (B, 3, T, H, W) or (B, V, 3, T, H, W), uint8 or float in [0, 1].
            size: crop side S (None = the frames' short side).
            n_crops: 1, 3 or 5.

        Returns:
            (B, 3, T, S, S) for 5-D input with ``n_crops=1``, otherwise
            (B, V * n_crops, 3, T, S, S) (view-major: view 0's crops first; V = 1 for 5-D
            input).

        Raises:
            ValueError: for other shapes, ``n_crops`` or ``size``.
        """
        check_choice("n_crops", n_crops, EVAL_CROPS)
        side = output_size(video, size)
        if video.dim() == 5:
            _check_video(video)
            crops = self.normalize(spatial_crops(video, side, n_crops))
            return crops[:, 0] if n_crops == 1 else crops
        if video.dim() == 6 and video.shape[2] == 3:
            b, v = video.shape[:2]
            crops = self.normalize(spatial_crops(video.flatten(0, 1), side, n_crops))
            return crops.reshape(b, v * n_crops, *crops.shape[2:])
        raise ValueError(
            f"video must be (B, 3, T, H, W) or (B, V, 3, T, H, W), got shape={tuple(video.shape)}"
        )

    def __repr__(self) -> str:
        return (
            f"ClipTransform(crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, "
            f"flip_prob={self.flip_prob}, jitter={self.jitter}, jitter_mode={self.jitter_mode!r}, "
            f"rotation_degrees={self.rotation_degrees}, dtype={self.dtype!r})"
        )
