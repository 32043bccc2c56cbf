"""Input normalisation of clips: the default statistics and the two maps (a leaf module).

Every path that feeds an encoder (pretraining views, fine-tuning, evaluation, ``encoder.pt``)
takes its statistics from the data module's ``ClipTransform``; these are their defaults
(Kinetics-400 per-channel mean / std on [0, 1] RGB values). Imports nothing of the package,
so models/, modules/ and callbacks/ can use it without depending on disturb/.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["KINETICS_MEAN", "KINETICS_STD", "denormalize", "normalize", "to_float"]

KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


def to_float(x: Tensor, channels_last: bool = False) -> tuple[Tensor, float]:
    """Float32 version of a clip batch and the factor that maps its values to [0, 1].

    Args:
        x: uint8 (values 0-255) or float (values in [0, 1]) tensor.
        channels_last: with a 4-D input on the CPU, write the channels-last layout directly
            (one copy): the CPU ``grid_sample`` kernel runs ~1.7x faster on it.

    Returns:
        ``(float32 tensor, scale)`` with ``scale`` 1/255 for uint8 input, 1 for float.

    Raises:
        ValueError: any other dtype.
    """
    if x.dtype == torch.uint8:
        scale = 1.0 / 255.0
    elif x.is_floating_point():
        scale = 1.0
    else:
        raise ValueError(f"video must be uint8 or float, got dtype={x.dtype}")
    if channels_last and x.dim() == 4 and x.device.type == "cpu":
        return x.to(dtype=torch.float32, memory_format=torch.channels_last), scale
    return x.float(), scale


def _stats(mean: Sequence[float], std: Sequence[float], like: Tensor,
           channel_dim: int) -> tuple[Tensor, Tensor]:
    shape = [1] * like.dim()
    shape[channel_dim] = -1
    def as_tensor(values: Sequence[float]) -> Tensor:
        return torch.tensor(tuple(values), dtype=torch.float32, device=like.device).view(shape)
    return as_tensor(mean), as_tensor(std)


def normalize(
    video: Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    dtype: torch.dtype = torch.float32,
    channel_dim: int = -4,
) -> Tensor:
    """Scale to [0, 1] (uint8 input) and normalise per channel.

    Args:
        video: (..., C, T, H, W) uint8 or float in [0, 1].
        mean: per-channel mean.
        std: per-channel std.
        dtype: output dtype.
        channel_dim: index of the channel dimension.

    Returns:
        Normalised tensor of ``dtype``, same shape.
    """
    x, scale = to_float(video)
    mean_t, std_t = _stats(mean, std, x, channel_dim)
    return ((x * scale - mean_t) / std_t).to(dtype)


def denormalize(
    x: Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    channel_dim: int = -4,
) -> Tensor:
    """Invert ``normalize`` and clip to [0, 1] (for display).

    Args:
        x: (..., C, T, H, W) normalised tensor.
        mean: per-channel mean used to normalise.
        std: per-channel std used to normalise.
        channel_dim: index of the channel dimension.

    Returns:
        float32 tensor in [0, 1], same shape.
    """
    mean_t, std_t = _stats(mean, std, x, channel_dim)
    return (x.float() * std_t + mean_t).clamp(0.0, 1.0)
