"""Argument checks shared by the package (plain Python, no torch or Lightning)."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Raise ``ValueError`` naming ``name`` when ``value`` is not one of ``choices``."""
    allowed = tuple(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` when ``value`` is not > 0 (NaN included)."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
