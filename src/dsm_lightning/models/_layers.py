"""Layers shared by the package's own 3D CNNs (C3D, Tiny3D)."""

from __future__ import annotations

from torch import nn

from dsm_lightning._checks import check_choice

__all__ = ["NORMS", "conv_norm_relu"]

#: the ``norm`` choices of the package's own 3D CNNs
NORMS: tuple[str, ...] = ("batch", "group", "none")


def conv_norm_relu(
    c_in: int, c_out: int, norm: str, stride: tuple[int, int, int] = (1, 1, 1)
) -> list[nn.Module]:
    """A 3x3x3 convolution (padding 1), a normalisation and a ReLU.

    The convolution has a bias only without normalisation.

    Args:
        c_in: input channels.
        c_out: output channels.
        norm: ``"batch"`` (BatchNorm3d), ``"group"`` (GroupNorm, ``min(8, c_out)`` groups)
            or ``"none"``.
        stride: convolution stride ``(s_t, s_h, s_w)``.

    Returns:
        The three modules, in order (to unpack into ``nn.Sequential``).

    Raises:
        ValueError: unknown ``norm``.
    """
    check_choice("norm", norm, NORMS)
    conv = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none")
    if norm == "batch":
        layer: nn.Module = nn.BatchNorm3d(c_out)
    elif norm == "group":
        layer = nn.GroupNorm(min(8, c_out), c_out)
    else:
        layer = nn.Identity()
    return [conv, layer, nn.ReLU(inplace=True)]
