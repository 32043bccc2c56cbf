"""Constructor signatures through ``**kwargs`` chains (plain Python, no torch or Lightning)."""

from __future__ import annotations

import inspect

__all__ = ["init_parameters"]


def init_parameters(cls: type) -> set[str]:
    """Constructor argument names of ``cls``, following ``**kwargs`` up to its base classes
    (a method subclass passes the base's arguments on) until Lightning's own classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith(("pytorch_lightning", "lightning")) or klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind not in (
            inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break
    return names
