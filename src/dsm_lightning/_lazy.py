"""Lazy public names (PEP 562) shared by the package's ``__init__`` modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """Build a module ``__getattr__`` importing ``exports[name]`` (a module path) on first use.

    Args:
        package: the package's ``__name__`` (for the error message).
        exports: public name -> module that defines it.

    Returns:
        The ``__getattr__`` function; unknown names raise ``AttributeError``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
