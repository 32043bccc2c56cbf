"""Backbone registry: builders registered by name, built with named keyword arguments.

Imports only the package's leaf :mod:`dsm_lightning.registry` (whose one rule for a taken
name applies here: another builder under a taken name raises unless ``overwrite=True``, the
same definition registered again replaces it). The built-in backbones register themselves
when :mod:`dsm_lightning.models.backbones` is imported, which importing
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
from typing import Any, TypeVar, overload

from torch import nn

from dsm_lightning.registry import Registry

__all__ = ["register_backbone", "register_backbone_family", "create_backbone",
           "list_backbones"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
#: prefix -> builder(name, **kwargs) of the backbone families
_FAMILIES: Registry[Callable[..., nn.Module]] = Registry("backbone family")
#: prefix -> names() of the family registered under that prefix
_FAMILY_NAMES: dict[str, Callable[[], Sequence[str]]] = {}


@overload
def register_backbone(
    name: str, builder: None = None, *, overwrite: bool = False
) -> Callable[[BuilderT], BuilderT]: ...


@overload
def register_backbone(name: str, builder: BuilderT, *, overwrite: bool = False) -> BuilderT: ...


def register_backbone(
    name: str, builder: BuilderT | None = None, *, overwrite: bool = False
) -> BuilderT | Callable[[BuilderT], BuilderT]:
    """Register a backbone builder under ``name`` (a decorator, or a call with ``builder``).

    Args:
        name: registry key, e.g. ``"r3d_18"`` (no colon: that marks a family).
        builder: the builder; omitted when used as ``@register_backbone("name")``.
        overwrite: replace another builder registered under ``name``.

    Returns:
        ``builder`` unchanged, or the decorator (which returns the builder unchanged).

    Raises:
        ValueError: ``name`` is empty or has a colon, or is taken by another builder
            (without ``overwrite``; the same definition registered again replaces it).
    """
    if isinstance(name, str) and ":" in name:
        raise ValueError(f"a backbone name has no colon (that marks a family), got {name!r}")
    return _BACKBONES.register(name, builder, overwrite=overwrite)


def register_backbone_family(
    prefix: str, names: Callable[[], Sequence[str]], *, overwrite: bool = False
) -> Callable[[BuilderT], BuilderT]:
    """Register a builder serving every ``"<prefix>:<name>"`` (decorator).

    Args:
        prefix: the part before the colon, e.g. ``"pytorchvideo"``.
        names: returns the names the family offers (called by :func:`list_backbones`).
        overwrite: replace another family registered under ``prefix``.

    Returns:
        The decorator; the builder is called as ``builder(name, **kwargs)`` and returned
        unchanged.

    Raises:
        ValueError: ``prefix`` is empty or contains a colon (at once), or is taken by
            another builder (without ``overwrite``).
    """
    if not isinstance(prefix, str) or ":" in prefix:
        raise ValueError(f"a backbone family prefix has no colon, got {prefix!r}")
    register = _FAMILIES.register(prefix, overwrite=overwrite)

    def decorator(builder: BuilderT) -> BuilderT:
        register(builder)
        _FAMILY_NAMES[prefix] = names
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
    listed = sorted(_BACKBONES.names())
    if families:
        for prefix in sorted(_FAMILIES.names()):
            listed += [f"{prefix}:{name}" for name in sorted(_FAMILY_NAMES[prefix]())]
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
    family_names = ", ".join(f"{p}:<name>" for p in sorted(_FAMILIES.names()))
    if colon and prefix not in _FAMILIES:
        raise ValueError(
            f"unknown backbone family {prefix!r} in {name!r}; families: "
            f"{family_names or 'none'}"
        )
    if not colon and name not in _BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; registered backbones: "
            f"{', '.join(sorted(_BACKBONES.names()))}{', ' if family_names else ''}{family_names}"
        )
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if "weights" in kwargs:
        raise ValueError(
            f"create_backbone({name!r}, weights={kwargs['weights']!r}): create_backbone no "
            "longer loads files; use load_backbone_weights(create_backbone(name), path)"
        )
    if colon:
        return _FAMILIES.get(prefix)(member, **kwargs)
    return _BACKBONES.get(name)(**kwargs)
