"""Backbone registry: builders registered by name, built with named keyword arguments.

A leaf module: it imports nothing of the package. The built-in backbones register
themselves when :mod:`dsm_lightning.models.backbones` is imported, which importing
``dsm_lightning.models`` (the parent package of this module) always does. Local weight
files are loaded separately with :func:`dsm_lightning.models.load_backbone_weights`.

Every registered builder returns an ``nn.Module`` whose forward maps a clip batch
``(B, C, T, H, W)`` to pooled features ``(B, D)`` and which exposes ``feature_dim = D``.

A *family* serves many names under one prefix: ``register_backbone_family("pytorchvideo",
names)`` makes ``create_backbone("pytorchvideo:<name>")`` call the family's builder with
``<name>``; :func:`list_backbones` lists every ``prefix:name`` the family offers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_backbone", "register_backbone_family", "create_backbone",
           "list_backbones"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
#: prefix -> (builder(name, **kwargs), names()) of the backbone families
_FAMILIES: dict[str, tuple[Callable[..., nn.Module], Callable[[], Sequence[str]]]] = {}
FamilyBuilderT = TypeVar("FamilyBuilderT", bound=Callable[..., nn.Module])


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


def register_backbone_family(
    prefix: str, names: Callable[[], Sequence[str]]
) -> Callable[[FamilyBuilderT], FamilyBuilderT]:
    """Register a builder serving every ``"<prefix>:<name>"`` (decorator).

    Args:
        prefix: the part before the colon, e.g. ``"pytorchvideo"``.
        names: returns the names the family offers (called by :func:`list_backbones`).

    Returns:
        The decorator; the builder is called as ``builder(name, **kwargs)`` and returned
        unchanged.

    Raises:
        ValueError: if ``prefix`` is already registered or contains a colon.
    """

    def decorator(builder: FamilyBuilderT) -> FamilyBuilderT:
        if prefix in _FAMILIES or ":" in prefix or not prefix:
            raise ValueError(f"backbone family {prefix!r} is already registered or invalid")
        _FAMILIES[prefix] = (builder, names)
        return builder

    return decorator


def list_backbones(families: bool = True) -> list[str]:
    """Names :func:`create_backbone` accepts, sorted.

    Args:
        families: also list ``"<prefix>:<name>"`` for every name of every family (e.g.
            ``"pytorchvideo:x3d_s"`` for each builder of ``pytorchvideo.models.hub``).

    Returns:
        The registered names, then the family names.
    """
    listed = sorted(_BACKBONES)
    if families:
        for prefix, (_, names) in sorted(_FAMILIES.items()):
            listed += [f"{prefix}:{name}" for name in sorted(names())]
    return listed


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone with random initialisation.

    ``None`` keyword arguments are dropped so that each builder's own defaults apply. To
    start from a local weights file, pass the result to
    :func:`~dsm_lightning.models.load_backbone_weights`.

    Args:
        name: a name from :func:`list_backbones`: a registered builder or
            ``"<prefix>:<name>"`` of a family (``"pytorchvideo:<hub builder>"``).
        **kwargs: the builder's named arguments (e.g. ``width``, ``layers``).

    Returns:
        Module mapping ``(B, C, T, H, W)`` to ``(B, feature_dim)``.

    Raises:
        ValueError: if ``name`` is unknown, or ``weights`` is given (loading is
            ``load_backbone_weights(create_backbone(name), path)``).
    """
    prefix, colon, member = name.partition(":")
    if colon and prefix not in _FAMILIES:
        raise ValueError(
            f"unknown backbone family {prefix!r} in {name!r}; families: "
            f"{', '.join(f'{p}:<name>' for p in sorted(_FAMILIES)) or 'none'}"
        )
    if not colon and name not in _BACKBONES:
        families = "".join(f", {p}:<name>" for p in sorted(_FAMILIES))
        raise ValueError(
            f"unknown backbone {name!r}; available: {', '.join(sorted(_BACKBONES))}{families}"
        )
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if "weights" in kwargs:
        raise ValueError(
            f"create_backbone({name!r}, weights={kwargs['weights']!r}): create_backbone no "
            "longer loads files; use load_backbone_weights(create_backbone(name), path)"
        )
    if colon:
        return _FAMILIES[prefix][0](member, **kwargs)
    return _BACKBONES[name](**kwargs)
