"""The encoders a study scores: files (``encoders:``), a random-init baseline, and clips fed
in each encoder's own normalisation."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ENCODER_KEYS", "EncoderSpec", "build_module", "random_encoder", "renormalize"]

#: Keys of an ``encoders`` entry given as a mapping.
ENCODER_KEYS = ("path", "backbone", "backbone_kwargs")


def build_module(spec: Mapping[str, Any]) -> nn.Module:
    """A user's network from ``{"class_path": "pkg.mod.Class", "init_args": {...}}``."""
    path = spec.get("class_path")
    if not isinstance(path, str) or "." not in path or set(spec) - {"class_path", "init_args"}:
        raise ValueError("a backbone module is {class_path: package.module.Class, init_args: "
                         f"{{...}}}}, got {dict(spec)}")
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"backbone class_path {path!r} cannot be imported: {error}") from error
    module = cls(**dict(spec.get("init_args") or {}))
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {path} is a {type(module).__name__}, not an nn.Module")
    return module


class EncoderSpec:
    """One ``encoders`` entry: a file and, for a user's network, how to build it."""

    def __init__(self, name: str, entry: str | Mapping[str, Any]) -> None:
        entry = {"path": entry} if isinstance(entry, (str, Path)) else dict(entry)
        unknown = set(entry) - set(ENCODER_KEYS)
        if unknown or not entry.get("path"):
            raise ValueError(f"encoders.{name} is a path or {{path, backbone, backbone_kwargs}}, "
                             f"got keys {sorted(entry)}")
        self.name, self.path = name, str(entry["path"])
        self.backbone = entry.get("backbone")
        self.backbone_kwargs = entry.get("backbone_kwargs")
        if self.backbone is not None and not isinstance(self.backbone, (str, Mapping, nn.Module)):
            raise ValueError(f"encoders.{name}.backbone is a registry name, {{class_path, "
                             f"init_args}} or an nn.Module, got {self.backbone!r}")

    def build(self) -> nn.Module | str | None:
        """The backbone argument of ``load_encoder``: a fresh module, a name or None."""
        if isinstance(self.backbone, Mapping):
            return build_module(self.backbone)
        if isinstance(self.backbone, nn.Module):  # given in Python: a random-init copy of it
            module = copy.deepcopy(self.backbone)
            for layer in module.modules():
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
            return module
        return self.backbone

    def load(self) -> tuple[nn.Module, dict[str, Any]]:
        """``load_encoder`` of the file into the given (or the file's) backbone."""
        from dsm_lightning.models.encoder_io import EncoderLoadError, load_encoder

        try:
            return load_encoder(self.path, backbone=self.build(),
                                backbone_kwargs=self.backbone_kwargs)
        except EncoderLoadError as error:
            if self.backbone is not None or "user module" not in str(error):
                raise
            raise EncoderLoadError(
                f"encoders.{self.name}: {self.path} holds a network that is not in the "
                "registry: give it as {path: ..., backbone: {class_path: package.module.Net, "
                "init_args: {...}}}") from error


def random_encoder(
    meta: Mapping[str, Any], spec: EncoderSpec | None, seed: int
) -> nn.Module | None:
    """A random-init copy of the first encoder's backbone (None when it cannot be rebuilt)."""
    from dsm_lightning.models.backbones import as_backbone
    from dsm_lightning.models.registry import create_backbone

    torch.manual_seed(seed)
    if spec is not None and isinstance(spec.backbone, (Mapping, nn.Module)):
        return as_backbone(spec.build())
    name = spec.backbone if spec is not None and isinstance(spec.backbone, str) else (
        meta.get("backbone"))
    if name is None:
        return None  # a user module given without its class: nothing to rebuild
    kwargs = spec.backbone_kwargs if spec is not None and spec.backbone_kwargs is not None else (
        meta.get("backbone_kwargs"))
    return create_backbone(name, **dict(kwargs or {}))


def renormalize(
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    data_stats: tuple[Sequence[float], Sequence[float]],
    meta: Mapping[str, Any],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``transform``, re-normalised to the encoder's own mean / std when they differ."""
    norm = meta.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    if mean is None or std is None or (
        [float(v) for v in mean] == [float(v) for v in data_stats[0]]
        and [float(v) for v in std] == [float(v) for v in data_stats[1]]):
        return transform

    def apply(batch: dict[str, Any]) -> dict[str, Any]:
        batch = transform(batch)
        video = batch["video"]  # (..., 3, T, H, W)

        def channels(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor([float(v) for v in values], device=video.device).view(3, 1, 1, 1)

        raw = video.float() * channels(data_stats[1]) + channels(data_stats[0])
        return dict(batch, video=((raw - channels(mean)) / channels(std)).to(video.dtype))

    return apply
