"""The one registry (``dsm_lightning.registry``) and its one rule, in every registry that uses it."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import pytest

from dsm_lightning.data.sources import VideoSource, register_source
from dsm_lightning.data.sources import base as sources_base
from dsm_lightning.disturb import spatial, temporal
from dsm_lightning.models import registry as backbone_registry
from dsm_lightning.registry import Registry, same_definition


def _defined() -> Callable[..., None]:
    """A function whose every call returns a new object of the same definition (a re-run)."""

    def builder(*args: object, **kwargs: object) -> None:
        return None

    return builder


def _another(*args: object, **kwargs: object) -> None:
    return None


def _defined_source() -> type[VideoSource]:
    class DefinedTwice(VideoSource):
        pass

    return DefinedTwice


class AnotherSource(VideoSource):
    pass


def _defined_warp() -> type:
    class DefinedWarp:
        def sample(self, batch, size, generator=None, device=None): ...

    return DefinedWarp


class AnotherWarp:
    def sample(self, batch, size, generator=None, device=None): ...


def _register_family(name: str, obj: Callable[..., None], **kwargs: bool) -> object:
    return backbone_registry.register_backbone_family(name, lambda: (), **kwargs)(obj)


# registry -> (register(name, obj, overwrite=...), its storage, a definition, another one)
REGISTRIES = {
    "backbone": (backbone_registry.register_backbone, backbone_registry._BACKBONES,
                 _defined, _another),
    "backbone family": (_register_family, backbone_registry._FAMILIES, _defined, _another),
    "source": (lambda name, obj, **kw: register_source(name, **kw)(obj),
               sources_base._SOURCES, _defined_source, lambda: AnotherSource),
    "frame kind": (temporal.register_frame_kind, temporal._FRAME_BUILDERS, _defined, _another),
    "spatial kind": (spatial.register_spatial_kind, spatial._SPATIAL, _defined_warp,
                     lambda: AnotherWarp),
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registry_follows_the_one_rule_for_a_taken_name(kind):
    register, storage, define, other = REGISTRIES[kind]
    other = other() if kind in ("source", "spatial kind") else other
    name = "_one_rule_test"
    first = define()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the rule never warns
            assert register(name, first) is first and storage.get(name) is first
            # another definition under a taken name: an error naming the holder
            with pytest.raises(ValueError, match=rf"{kind} '{name}' is already registered "
                                                 rf"\(.*{first.__qualname__.split('.')[-1]}\)"):
                register(name, other)
            assert storage.get(name) is first
            # the same definition again (a re-run cell, a reloaded module): replaced silently
            again = define()
            assert again is not first
            assert register(name, again) is again and storage.get(name) is again
            assert storage.names().count(name) == 1
            # overwrite=True replaces any definition
            assert register(name, other, overwrite=True) is other
            assert storage.get(name) is other
    finally:
        storage.unregister(name)
    assert name not in storage
    with pytest.raises(ValueError, match=rf"unknown {kind} '{name}'; registered {kind}s: "):
        storage.get(name)


def test_register_is_a_decorator_or_a_call_and_names_keep_their_order():
    registry: Registry[Callable[..., None]] = Registry("thing")

    @registry.register("b")
    def b() -> None: ...

    assert registry.register("a", _another) is _another and b.__name__ == "b"
    assert registry.names() == ("b", "a") and "a" in registry and len(registry) == 2
    registry.register("b", b)  # replaced in place: the order stays
    assert registry.names() == ("b", "a") and registry.get("b") is b
    with pytest.raises(ValueError, match="unknown thing 'c'; registered things: a, b"):
        registry.get("c")
    assert repr(registry) == "Registry('thing', names=['b', 'a'])"


def test_names_and_kinds_are_checked_at_once():
    registry: Registry[int] = Registry("thing")
    with pytest.raises(ValueError, match="a thing name must be a non-empty string, got ''"):
        registry.register("")
    with pytest.raises(ValueError, match="non-empty string, got 3"):
        registry.register(3, 1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        Registry("")
    with pytest.raises(ValueError, match="unknown thing 'x'; registered things: none"):
        registry.get("x")


def test_objects_without_a_qualified_name_are_the_same_definition_only_when_identical():
    registry: Registry[object] = Registry("thing")
    partial = functools.partial(_another, 1)
    registry.register("p", partial)
    assert registry.register("p", partial) is partial  # the same object: fine
    with pytest.raises(ValueError, match=r"already registered \(functools.partial"):
        registry.register("p", functools.partial(_another, 1))
    assert same_definition(_defined(), _defined()) and not same_definition(_defined(), _another)
    assert not same_definition(1, 1.0) and same_definition(partial, partial)


def test_copy_is_independent_and_unregister_returns_what_it_held():
    registry: Registry[Callable[..., None]] = Registry("thing")
    registry.register("a", _another)
    twin = registry.copy()
    twin.register("b", _another)
    assert registry.names() == ("a",) and twin.names() == ("a", "b") and twin.kind == "thing"
    assert registry.unregister("a") is _another and registry.unregister("a") is None
    assert "a" not in registry and twin.get("a") is _another


def test_backbone_names_and_family_prefixes_have_no_colon():
    with pytest.raises(ValueError, match="no colon"):
        backbone_registry.register_backbone("a:b", _another)
    with pytest.raises(ValueError, match="no colon"):
        backbone_registry.register_backbone_family("a:b", lambda: ())
    assert "a:b" not in backbone_registry._BACKBONES
