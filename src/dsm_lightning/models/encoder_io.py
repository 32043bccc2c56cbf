"""Save and load pretrained encoders (``encoder.pt`` files and Lightning ``.ckpt`` files).

``encoder.pt`` (see docs/architecture.md, "Encoder contract") is a plain dict loadable with
``torch.load(path, weights_only=True)``::

    {"format": "dsm-lightning-encoder", "version": 1,
     "backbone": "r3d_18", "backbone_kwargs": {...}, "feature_dim": 512,
     "normalization": {"mean": [...], "std": [...]},
     "num_frames": 16, "crop_size": 112, "method": "dsm",
     "state_dict": {...backbone weights, no prefix...}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsm_lightning.models.registry import create_backbone
from dsm_lightning.models.wrappers import BackboneWrapper, as_backbone
from dsm_lightning.normalization import KINETICS_MEAN, KINETICS_STD

__all__ = [
    "build_backbone",
    "downstream_encoder",
    "ENCODER_FORMAT",
    "ENCODER_VERSION",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "EncoderLoadError",
    "save_encoder",
    "load_encoder",
    "load_backbone_weights",
]

ENCODER_FORMAT = "dsm-lightning-encoder"
ENCODER_VERSION = 1
#: Aliases of the package's one default normalisation, ``normalization.KINETICS_MEAN`` /
#: ``KINETICS_STD`` (the ``TripletBuilder``'s defaults); kept for existing imports.
DEFAULT_MEAN = KINETICS_MEAN
DEFAULT_STD = KINETICS_STD
_CKPT_PREFIX = "encoder."
_WRAPPER_PREFIX = "model."


class EncoderLoadError(RuntimeError):
    """An encoder file does not match the backbone it is loaded into."""


def _plain(value: Any) -> Any:
    """Convert tuples / mappings recursively to lists / dicts (safe for weights_only)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def save_encoder(
    path: str | Path,
    encoder: nn.Module,
    backbone: str | None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    *,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    num_frames: int | None = None,
    crop_size: int | None = None,
    method: str | None = None,
) -> Path:
    """Write ``encoder.pt`` for a backbone.

    Args:
        path: output file; parent folders are created.
        encoder: the backbone (``(B, C, T, H, W) -> (B, D)``, attribute ``feature_dim``);
            a user's network is saved as pretraining holds it, ``BackboneWrapper(net)``
            (keys ``model.*``), and loads back into the bare ``net`` (see ``load_encoder``).
        backbone: its registry name (None for a user module: loading then needs the module).
        backbone_kwargs: the builder arguments it was created with (plain types).
        mean: input normalisation mean per channel (RGB, values in [0, 1] units).
        std: input normalisation std per channel.
        num_frames: clip length it was trained on.
        crop_size: clip side (pixels) it was trained on.
        method: pretraining method, e.g. ``"dsm"``.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": ENCODER_FORMAT,
        "version": ENCODER_VERSION,
        "backbone": backbone,
        "backbone_kwargs": _plain(dict(backbone_kwargs or {})),
        "feature_dim": int(getattr(encoder, "feature_dim", -1)),
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "num_frames": num_frames,
        "crop_size": crop_size,
        "method": method,
        "state_dict": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def _load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle of arbitrary objects is refused on purpose
        raise EncoderLoadError(f"cannot load {path} with weights_only=True: {error}") from error
    if not isinstance(data, dict):
        raise EncoderLoadError(f"{path} holds a {type(data).__name__}, expected a dict")
    return data


def _strict_load(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], file_side: str, model_side: str
) -> None:
    missing, unexpected = _mismatch(module, state_dict)
    if missing or unexpected:
        raise EncoderLoadError(
            f"encoder weights do not match: the file holds {file_side}, the model is "
            f"{model_side}.\n  missing keys ({len(missing)}): {missing[:10]}"
            f"\n  unexpected keys ({len(unexpected)}): {unexpected[:10]}"
        )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:  # shape mismatches
        raise EncoderLoadError(
            f"encoder weights do not match: the file holds {file_side}, the model is "
            f"{model_side}: {error}"
        ) from error


def _mismatch(module: nn.Module, state_dict: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    expected = set(module.state_dict())
    given = set(state_dict)
    return sorted(expected - given), sorted(given - expected)


def load_backbone_weights(
    backbone: nn.Module, path: str | Path, backbone_name: str | None = None
) -> nn.Module:
    """Load a local weights file into a registry backbone, in place.

    ``load_backbone_weights(create_backbone("r3d_18"), "r3d.pt")`` starts a backbone from
    local weights (nothing is ever downloaded).

    Accepts an ``encoder.pt``, a plain state dict of the backbone (``model.``-prefixed keys),
    or a state dict of the original network (e.g. torchvision / pytorchvideo weights): then
    every backbone weight must be present and only the removed classification head may be
    left over.

    Args:
        backbone: module from ``create_backbone``.
        path: weights file (loaded with ``weights_only=True``).
        backbone_name: used in error messages.

    Returns:
        ``backbone``, its weights loaded.

    Raises:
        EncoderLoadError: keys or shapes do not match.
    """
    data = _load_file(path)
    for key in ("state_dict", "model_state", "model"):
        if isinstance(data.get(key), Mapping):
            data = dict(data[key])
            break
    expected = set(backbone.state_dict())
    if set(data) & expected or not hasattr(backbone, "model"):
        _strict_load(backbone, data, f"weights from {path}", f"backbone {backbone_name!r}")
        return backbone
    inner = backbone.model
    missing, unexpected = _mismatch(inner, data)
    if missing:
        raise EncoderLoadError(
            f"{path} does not match backbone {backbone_name!r}: missing keys "
            f"({len(missing)}): {missing[:10]}; unexpected ({len(unexpected)}): {unexpected[:10]}"
        )
    try:
        inner.load_state_dict(data, strict=False)
    except RuntimeError as error:
        raise EncoderLoadError(
            f"{path} does not match backbone {backbone_name!r}: {error}"
        ) from error
    return backbone


def load_encoder(
    path: str | Path,
    backbone: str | nn.Module | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a pretrained backbone from ``encoder.pt`` or a ``DSMLightningModule`` checkpoint.

    Checkpoint keys are taken from the exact prefix ``encoder.`` (``str.removeprefix``), so
    ``momentum_encoder.*`` and heads are ignored. Loading is ``strict=True``.

    Args:
        path: ``encoder.pt`` or ``.ckpt`` file.
        backbone: registry name overriding the file's, or a user's network to load the
            weights into (needed for modules that are not in the registry). A bare network
            is wrapped in ``BackboneWrapper`` (see ``as_backbone``), the form pretraining
            trains and saves it in (keys ``model.*``); weights saved from the bare network
            itself (keys without the prefix) load as well.
        backbone_kwargs: builder arguments overriding the file's (only with a name).

    Returns:
        ``(encoder, meta)``: the backbone (train mode, on the CPU; a ``BackboneWrapper``
        around a given bare network) and the file's metadata (the ``encoder.pt`` fields
        without ``state_dict``; for a checkpoint, the ones it can provide, normalisation
        defaults when unknown).

    Raises:
        FileNotFoundError: the file does not exist.
        EncoderLoadError: unknown file kind, or the weights do not match the backbone
            (missing / unexpected keys and both sides' backbones are listed).
    """
    data = _load_file(path)
    if data.get("format") == ENCODER_FORMAT:
        state_dict = data["state_dict"]
        meta = {k: v for k, v in data.items() if k != "state_dict"}
    elif "state_dict" in data and ("pytorch-lightning_version" in data or "hyper_parameters" in data):
        hparams = dict(data.get("hyper_parameters") or {})
        state_dict = {
            key.removeprefix(_CKPT_PREFIX): value
            for key, value in data["state_dict"].items()
            if key.startswith(_CKPT_PREFIX)
        }
        if not state_dict:
            raise EncoderLoadError(f"{path} has no '{_CKPT_PREFIX}*' weights")
        norm = data.get("encoder_normalization") or {
            "mean": list(KINETICS_MEAN),
            "std": list(KINETICS_STD),
        }
        meta = {
            "format": "lightning-checkpoint",
            "version": ENCODER_VERSION,
            "backbone": hparams.get("backbone"),
            "backbone_kwargs": dict(hparams.get("backbone_kwargs") or {}),
            "feature_dim": None,
            "normalization": norm,
            "num_frames": data.get("encoder_num_frames"),
            "crop_size": data.get("encoder_crop_size"),
            "method": data.get("encoder_method") or hparams.get("method"),
        }
    else:
        raise EncoderLoadError(
            f"{path} is neither an encoder.pt (format {ENCODER_FORMAT!r}) nor a Lightning "
            "checkpoint"
        )

    file_side = f"backbone {meta['backbone']!r} with {meta['backbone_kwargs']}"
    if isinstance(backbone, nn.Module):
        module = as_backbone(backbone, meta.get("feature_dim"))
        model_side = f"the given {type(backbone).__name__}"
        state_dict = _with_wrapper_prefix(module, state_dict)
    else:
        name = backbone if backbone is not None else meta["backbone"]
        if name is None:
            raise EncoderLoadError(
                f"{path} holds a user module (no registry name): pass it as "
                "load_encoder(path, backbone=<your nn.Module>)"
            )
        kwargs = dict(meta["backbone_kwargs"]) if backbone_kwargs is None else dict(backbone_kwargs)
        module = create_backbone(name, **kwargs)
        model_side = f"backbone {name!r} with {kwargs}"
    _strict_load(module, state_dict, file_side, model_side)
    if meta.get("feature_dim") in (None, -1):
        meta["feature_dim"] = getattr(module, "feature_dim", None)
    return module, meta


def _with_wrapper_prefix(
    wrapper: BackboneWrapper, state_dict: Mapping[str, torch.Tensor]
) -> Mapping[str, torch.Tensor]:
    """Prefix ``model.`` when the keys are exactly those of the wrapped network."""
    if set(state_dict) != set(wrapper.state_dict()) and set(state_dict) == set(
        wrapper.model.state_dict()
    ):
        return {_WRAPPER_PREFIX + key: value for key, value in state_dict.items()}
    return state_dict


def build_backbone(
    backbone: str | nn.Module | None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    weights: str | None = None,
) -> nn.Module:
    """A backbone from a registry name (optionally with local weights), or a user module.

    Args:
        backbone: registry name (``dsm_lightning.list_backbones()``) or an ``nn.Module``
            returning a feature map or a vector (wrapped by ``as_backbone``).
        backbone_kwargs: the registry builder's named arguments (names only).
        weights: local weights file for a registry backbone (``load_backbone_weights``).

    Raises:
        ValueError: ``backbone`` is None, or kwargs/weights given with a module.
    """
    if backbone is None:
        raise ValueError("backbone must be a registry name or an nn.Module, got None")
    if isinstance(backbone, nn.Module):
        if backbone_kwargs or weights:
            raise ValueError("backbone_kwargs and weights apply to registry names only; "
                             f"got a {type(backbone).__name__} module")
        return as_backbone(backbone)
    module = create_backbone(backbone, **dict(backbone_kwargs or {}))
    if weights is not None:
        load_backbone_weights(module, weights, backbone_name=backbone)
    return module


def downstream_encoder(
    pretrained: str | Path | None,
    backbone: str | nn.Module | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    default: str = "r3d_18",
) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder of a downstream module (fine-tuning, retrieval) and what it is.

    Args:
        pretrained: an ``encoder.pt`` or pretraining checkpoint (``load_encoder``), or None
            for a random-init backbone.
        backbone: registry name or a user's ``nn.Module``; None = the file's (or
            ``default`` without a file).
        backbone_kwargs: builder arguments; None = the file's.
        default: the registry name used without a file or a backbone.

    Returns:
        ``(encoder, meta)`` with ``meta["backbone"]`` (None for a user module) and
        ``meta["backbone_kwargs"]`` (plus the file's metadata when loaded from one).

    Raises:
        EncoderLoadError: the file does not fit the backbone.
    """
    if pretrained is not None:
        encoder, meta = load_encoder(pretrained, backbone, backbone_kwargs)
        meta = dict(meta)
        meta["backbone"] = None if isinstance(backbone, nn.Module) else (
            backbone or meta.get("backbone"))
        meta["backbone_kwargs"] = dict(backbone_kwargs if backbone_kwargs is not None
                                       else meta.get("backbone_kwargs") or {})
        return encoder, meta
    if isinstance(backbone, nn.Module):
        return as_backbone(backbone), {"backbone": None, "backbone_kwargs": {}}
    name = backbone or default
    return (create_backbone(name, **dict(backbone_kwargs or {})),
            {"backbone": name, "backbone_kwargs": dict(backbone_kwargs or {})})
