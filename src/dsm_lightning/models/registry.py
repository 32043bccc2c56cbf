"""Backbone registry: builders registered by name, built with named keyword arguments.

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


def _ensure_builtin() -> None:
    # Importing the module registers the built-in builders (import-time side effect, once).
    from dsm_lightning.models import backbones  # noqa: F401


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    _ensure_builtin()
    return sorted(_BACKBONES)


def create_backbone(name: str, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered backbone.

    ``None`` keyword arguments are dropped so that each builder's own defaults apply.

    Args:
        name: a name from :func:`list_backbones`.
        weights: optional path of a local weights file: a plain state dict of the backbone
            (with or without its wrapper prefix, the removed classification head is
            ignored) or an ``encoder.pt`` file. Loaded with ``weights_only=True``.
        **kwargs: the builder's named arguments (e.g. ``width``, ``layers``).

    Returns:
        Module mapping ``(B, C, T, H, W)`` to ``(B, feature_dim)``.

    Raises:
        ValueError: if ``name`` is unknown.
        EncoderLoadError: if ``weights`` does not match the backbone.
    """
    _ensure_builtin()
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(sorted(_BACKBONES))}")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    backbone = _BACKBONES[name](**kwargs)
    if weights is not None:
        from dsm_lightning.models.encoder_io import load_backbone_weights

        load_backbone_weights(backbone, weights, backbone_name=name)
    return backbone
