"""One registry for everything the package looks up by name (a leaf: standard library only).

Backbones (``register_backbone``), backbone families, sources (``register_source``) and
disturbance kinds (``register_frame_kind``) each keep a :class:`Registry`, so a name follows
the same rule everywhere.

The one rule for a taken name:

- a name taken by *another* object raises ``ValueError`` unless ``overwrite=True`` (which
  replaces it, silently);
- registering the *same definition* again (same ``__module__`` and ``__qualname__``: a
  re-run notebook cell, a reloaded module, an example script run twice) replaces the earlier
  one silently, keeping its place in :meth:`Registry.names`. Objects without a qualified name
  (instances, ``functools.partial``) are the same definition only when they are the same
  object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, overload

__all__ = ["Registry", "same_definition"]

T = TypeVar("T")


def _definition(obj: object) -> tuple[str, str] | None:
    """``(module, qualname)`` of a function or class; None for objects without both."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return module, qualname
    return None


def same_definition(old: object, new: object) -> bool:
    """Whether ``new`` is ``old`` defined again: the same object, or equal module and qualname.

    Args:
        old: the registered object.
        new: the object being registered.

    Returns:
        True when registering ``new`` under ``old``'s name replaces it without an error.
    """
    if old is new:
        return True
    key = _definition(old)
    return key is not None and key == _definition(new)


def _describe(obj: object) -> str:
    key = _definition(obj)
    return key[1] if key is not None else repr(obj)


class Registry(Generic[T]):
    """Objects registered by name, with the one rule for a taken name (module docstring).

    Names keep their registration order (:meth:`names`); a replaced entry keeps its place.

    Args:
        kind: what the registry holds, singular, used in messages (e.g. ``"backbone"``,
            ``"frame kind"``); the plural adds an ``s``.

    Raises:
        ValueError: ``kind`` is not a non-empty string.

    Example::

        KINDS: Registry[Callable[..., Tensor]] = Registry("frame kind")

        @KINDS.register("reverse")
        def reverse(batch, frames): ...

        KINDS.get("reverse")  # the function; KINDS.get("nope") raises, listing "reverse"
    """

    def __init__(self, kind: str) -> None:
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got kind={kind!r}")
        self.kind = kind
        self._entries: dict[str, T] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={list(self._entries)})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def register(
        self, name: str, obj: None = None, *, overwrite: bool = False
    ) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, overwrite: bool = False) -> T: ...

    def register(
        self, name: str, obj: T | None = None, *, overwrite: bool = False
    ) -> T | Callable[[T], T]:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        Args:
            name: the registry key (a non-empty string).
            obj: what to register; omitted when used as ``@registry.register("name")``.
            overwrite: replace an object registered under ``name`` even when it is another
                definition.

        Returns:
            ``obj`` unchanged, or the decorator (which returns what it decorates unchanged).

        Raises:
            ValueError: ``name`` is not a non-empty string (at once), or it is taken by
                another definition and ``overwrite`` is False (when ``obj`` is registered).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            if name in self._entries and not overwrite:
                taken = self._entries[name]
                if not same_definition(taken, item):
                    raise ValueError(
                        f"{self.kind} {name!r} is already registered ({_describe(taken)}); "
                        "pick another name or pass overwrite=True"
                    )
            self._entries[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The object registered under ``name``.

        Raises:
            ValueError: unknown ``name`` (the message lists the registered names, sorted).
        """
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                f"{', '.join(sorted(self._entries)) or 'none'}"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def unregister(self, name: str) -> T | None:
        """Remove ``name`` (for tests and notebooks); return what it held, None if it was free."""
        return self._entries.pop(name, None)

    def copy(self) -> Registry[T]:
        """A new registry of the same kind holding the same entries (e.g. to isolate a test)."""
        twin: Registry[T] = Registry(self.kind)
        twin._entries = dict(self._entries)
        return twin
