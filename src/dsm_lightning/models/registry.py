"""Backbone registry: builders registered by name, built with named keyword arguments.

A leaf module: it imports nothing of the package. The built-in backbones register
themselves when :mod:`dsm_lightning.models.backbones` is imported, which importing
``dsm_lightning.models`` (the parent package of this module) always does. Local weight
files are loaded separately with :func:`dsm_lightning.models.load_backbone_weights`.

Every registered builder returns an ``nn.Module`` whose forward maps a clip batch
``(B, C, T, H, W)`` to pooled features ``(B, D)`` and which exposes ``feature_dim = D``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_backbone", "create_backbone", "list_backbones"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[BuilderT], BuilderT]:
    """Register a backbone builder under ``name`` (decorator).

    Args:
        name: registry key, e.g. ``"r3d_18"``.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(builder: BuilderT) -> BuilderT:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = builder
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return sorted(_BACKBONES)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone with random initialisation.

    ``None`` keyword arguments are dropped so that each builder's own defaults apply. To
    start from a local weights file, pass the result to
    :func:`~dsm_lightning.models.load_backbone_weights`.

    Args:
        name: a name from :func:`list_backbones`.
        **kwargs: the builder's named arguments (e.g. ``width``, ``layers``).

    Returns:
        Module mapping ``(B, C, T, H, W)`` to ``(B, feature_dim)``.

    Raises:
        ValueError: if ``name`` is unknown, or ``weights`` is given (loading is
            ``load_backbone_weights(create_backbone(name), path)``).
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(sorted(_BACKBONES))}")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if "weights" in kwargs:
        raise ValueError(
            f"create_backbone({name!r}, weights={kwargs['weights']!r}): create_backbone no "
            "longer loads files; use load_backbone_weights(create_backbone(name), path)"
        )
    return _BACKBONES[name](**kwargs)
