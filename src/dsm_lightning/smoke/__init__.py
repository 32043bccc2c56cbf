"""Smoke runs: ``DSM_SMOKE=1`` checks a configuration end to end in seconds.

A smoke run is the configuration as written with small *overlay* files applied on top of
it, like one more ``--config`` after the user's (``dsm fit --config mine.yaml --config
<overlay>``): a value an overlay sets replaces the configuration's, except that a mapping
(``backbone_kwargs``, a section of a plain-dict study config) is merged key by key
(:func:`merge`); everything else -- output paths, loggers, callbacks, learning rates, the
methods -- stays as written. The overlays are the YAML files of this folder, one source of
truth for ``dsm fit|validate|test|predict``, ``dsm study``, the examples and the notebooks:

- ``trainer.yaml``, always: one epoch of at most two batches in every loop;
- ``synthetic.yaml``, when the data source is ``SyntheticSource`` (or ``"synthetic"``): a
  small generated set, short small clips, no loader workers;
- ``tiny3d.yaml``, for each model whose backbone is ``tiny3d``: a narrow network;
- ``study.yaml``, for a ``dsm study`` configuration (a top-level ``n_clips``): fewer
  evaluation windows.

Real-data sources and other backbones keep their settings (two batches of them are read).
Which overlays apply is decided from the configuration's source class path and backbone
name only (:func:`overlays_for`). Apply one by hand with
``dsm fit --config X.yaml --config $(python -c "from dsm_lightning.smoke import
overlay_path; print(overlay_path('trainer'))")``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["OVERLAYS", "SMOKE_ENV", "announce", "apply_smoke", "load_overlay", "merge",
           "overlay_path", "overlays_for", "smoke_enabled", "smoke_from_env", "smoke_notice"]

#: The environment variable that turns smoke runs on (any value but "", "0", "false", "no").
SMOKE_ENV = "DSM_SMOKE"
#: The overlay files of this folder, in the order they are applied.
OVERLAYS = ("trainer", "synthetic", "tiny3d", "study")
_PRINTED: set[str] = set()


def smoke_enabled() -> bool:
    """True when ``DSM_SMOKE`` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def overlay_path(name: str) -> Path:
    """The file of overlay ``name`` (one of :data:`OVERLAYS`)."""
    if name not in OVERLAYS:
        raise ValueError(f"unknown smoke overlay {name!r}; choose from {OVERLAYS}")
    return Path(__file__).with_name(f"{name}.yaml")


@cache
def _read(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(overlay_path(name).read_text())


def load_overlay(name: str) -> dict[str, Any]:
    """The overlay ``name`` as a dict (a fresh copy; sections as in a ``dsm fit`` config)."""
    return copy.deepcopy(_read(name))


def merge(base: Any, overlay: Any) -> Any:
    """``overlay`` on top of ``base``: mappings merge key by key, other values replace.

    A ``class_path`` the overlay gives only fills one the configuration lacks (e.g. for
    ``source: synthetic``): an overlay shrinks settings, it never changes which class runs
    (``CameraSyntheticSource`` stays itself). A parsed section (jsonargparse ``Namespace``)
    is read as the dict it stands for.
    """
    base = base.as_dict() if hasattr(base, "as_dict") else base
    if not isinstance(overlay, Mapping):
        return copy.deepcopy(overlay)
    if not isinstance(base, Mapping):
        return copy.deepcopy(dict(overlay))
    return {**base, **{key: base[key] if key == "class_path" and base.get(key)
                       else merge(base.get(key), value) for key, value in overlay.items()}}


def _get(section: Any, *keys: str) -> Any:
    for key in keys:
        section = section.get(key) if section is not None and hasattr(section, "get") else None
    return section


def _models(config: Any) -> list[Any]:
    """The model sections: ``model`` and each ``methods.<name>.model`` of a study."""
    methods = _get(config, "methods") or {}
    return [m for m in (_get(config, "model"), *(_get(m, "model") for m in methods.values()))
            if m is not None]


def _tiny3d(model: Any) -> bool:
    return _get(model, "init_args", "backbone") == "tiny3d"


def overlays_for(config: Any) -> list[str]:
    """The overlays a smoke run of ``config`` applies (a ``dsm fit`` or ``dsm study`` config).

    Args:
        config: parsed (jsonargparse ``Namespace``) or plain dict, with ``trainer`` /
            ``data`` / ``model`` sections (a study: ``methods`` instead of ``model``).
    """
    data, source = _get(config, "data"), _get(config, "data", "init_args", "source")
    synthetic = source == "synthetic" or str(_get(source, "class_path")).endswith(
        "SyntheticSource") or (source is None and str(_get(data, "class_path")).endswith(
            "VideoDataModule"))  # a plain-dict section without source: the default, synthetic
    return ["trainer", *(["synthetic"] if synthetic else []),
            *(["tiny3d"] if any(map(_tiny3d, _models(config))) else []),
            *(["study"] if _get(config, "n_clips") is not None else [])]  # a study's own


def smoke_notice(names: list[str]) -> str:
    """The one line a smoke run prints: what the overlays ``names`` set."""
    trainer = _read("trainer")["trainer"]
    data = _read("synthetic")["data"]["init_args"]
    source = data["source"]["init_args"]
    said = {
        "trainer": f"{trainer['max_epochs']} epoch, <= {trainer['limit_train_batches']} "
                   "batches per loop",
        "synthetic": f"synthetic source {source['num_classes']} classes x "
                     f"{source['videos_per_class']} videos of {source['num_frames']} frames at "
                     f"{source['size']} px, clips of {data['num_frames']} frames, batch "
                     f"{data['batch_size']}, no loader workers",
        "tiny3d": "tiny3d width "
                  f"{_read('tiny3d')['model']['init_args']['backbone_kwargs']['width']}",
    }  # study.yaml goes unsaid: a study and each of its fits print the same line, once
    return (f"[dsm] smoke mode ({SMOKE_ENV}=1): {'; '.join(said[n] for n in names if n in said)}"
            "; paths unchanged")


def apply_smoke(config: dict[str, Any]) -> str:
    """Apply the smoke overlays to a plain-dict configuration in place; return the notice.

    Args:
        config: a ``dsm fit`` configuration (``trainer`` / ``data`` / ``model``) or ``dsm
            study``'s (``trainer`` / ``data`` / ``methods`` / ``n_clips``), as loaded from YAML.
            The ``tiny3d`` overlay goes to each ``tiny3d`` model section.

    Returns:
        The one-line notice (``[dsm] smoke mode (DSM_SMOKE=1): ...; paths unchanged``).
    """
    names = overlays_for(config)
    models = [model for model in _models(config) if _tiny3d(model)]
    for name in names:
        overlay = load_overlay(name)
        if "model" in overlay:
            for model in models:
                model.update(merge(model, overlay["model"]))
        else:
            config.update(merge(config, overlay))
    sources = config.get("sources") or {}  # a study's suite: each synthetic source shrinks
    small = load_overlay("synthetic")["data"]["init_args"]["source"]
    for key, source in sources.items():
        if str(_get(source, "class_path")).endswith("SyntheticSource"):
            sources[key] = merge(source, small)
    if sources and "synthetic" not in names:
        names.append("synthetic")
    return smoke_notice(names)


def announce(notice: str) -> None:
    """Print ``notice`` unless this process printed it already."""
    if notice not in _PRINTED:
        _PRINTED.add(notice)
        print(notice, flush=True)


def smoke_from_env(config: dict[str, Any]) -> str | None:
    """:func:`apply_smoke` and print its notice (once) when ``DSM_SMOKE`` is set.

    Returns:
        The notice, or None when smoke mode is off (``config`` untouched).
    """
    if not smoke_enabled():
        return None
    notice = apply_smoke(config)
    announce(notice)
    return notice
