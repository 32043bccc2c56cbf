"""Argument checks shared by the package (plain Python, no torch or Lightning).

Every constructor validates its arguments with these, once, and the message names the
argument and the value it got (``ValueError``), so a YAML key that is wrong is named.
"""

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


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` when it is an int (not a bool) >= ``minimum``.

    Raises:
        ValueError: naming ``name`` and the value otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
    return value


def check_at_least(name: str, value: float, minimum: float = 0.0) -> float:
    """``value`` as a float when it is a number >= ``minimum`` (NaN refused).

    Raises:
        ValueError: naming ``name`` and the value otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value!r}")
    return float(value)


def check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0,
                   open_low: bool = False) -> float:
    """``value`` as a float within ``[low, high]`` (``(low, high]`` with ``open_low``).

    Raises:
        ValueError: naming ``name`` and the value otherwise.
    """
    inside = (low < value if open_low else low <= value) and value <= high
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not inside:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {name}={value!r}")
    return float(value)


def check_pair(name: str, value: Iterable[float], low: float, high: float,
               ordered: bool = True) -> tuple[float, float]:
    """``(min, max)`` as floats when both lie in ``[low, high]`` (and ``min <= max``).

    Raises:
        ValueError: naming ``name`` when the pair is malformed or out of range.
    """
    values = tuple(value)
    if len(values) != 2 or not all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and low <= v <= high
        for v in values
    ) or (ordered and values[0] > values[1]):
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, "
                         f"got {name}={value!r}")
    return float(values[0]), float(values[1])
