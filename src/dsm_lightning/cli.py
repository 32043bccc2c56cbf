"""The ``dsm`` console script: LightningCLI in subclass mode for model and data.

``dsm fit --config examples/configs/demo_dsm.yaml`` pretrains, ``dsm test --config
finetune.yaml`` evaluates; any LightningModule / LightningDataModule is chosen by
``class_path`` (short names such as ``DSMLightningModule``, ``VideoDataModule``,
``TripletBuilder`` or ``TripletMediaLogger`` work for the package's own classes).
Configuration is constructor signatures: every argument of the chosen classes is settable
from YAML or as a flag, and ``--print_config`` writes a complete, re-runnable config.

Values shared by data and model are linked, not typed twice: ``data.num_classes`` feeds the
model's ``num_classes`` (``data.class_names`` its ``class_names``) and ``data.n_clips`` / ``data.n_crops`` the model's ``n_clips`` /
``n_crops``, each only when the chosen model has that argument; ``data.crop_size`` sets the
crop of a ``TripletBuilder`` given as ``data.augment``.

A wrong configuration (unknown key, wrong type, missing file, invalid value) ends the
command with one short message naming the key or file, exit code 2; ``DSM_DEBUG=1`` shows
the traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

import dsm_lightning

__all__ = ["DSMCLI", "build_cli", "format_error", "main", "parse_config"]

SUBCOMMANDS: tuple[str, ...] = ("fit", "validate", "test", "predict")

DEFAULT_TRAINER: dict[str, Any] = {
    "logger": {
        "class_path": "pytorch_lightning.loggers.CSVLogger",
        "init_args": {"save_dir": "runs", "name": "dsm"},
    },
}

#: (source, target) links between data and model arguments; a link whose target the chosen
#: model lacks is skipped.
PARSE_LINKS: tuple[tuple[str, str], ...] = (
    ("data.init_args.n_clips", "model.init_args.n_clips"),
    ("data.init_args.n_crops", "model.init_args.n_crops"),
    ("data.init_args.crop_size", "data.init_args.augment.init_args.crop_size"),
)
INSTANTIATE_LINKS: tuple[tuple[str, str], ...] = (
    ("data.num_classes", "model.init_args.num_classes"),
    ("data.class_names", "model.init_args.class_names"),
)

# Modules whose classes must be imported so jsonargparse resolves their short class names.
_SHORT_NAME_MODULES: tuple[str, ...] = (
    "dsm_lightning.modules.pretrain",
    "dsm_lightning.modules.finetune",
    "dsm_lightning.modules.retrieval",
    "dsm_lightning.data.datamodule",
    "dsm_lightning.disturb.triplet",
    "dsm_lightning.callbacks.knn",
    "dsm_lightning.callbacks.media",
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the configuration or its files are wrong" (not a bug)."""
    from dsm_lightning.models.encoder_io import EncoderLoadError

    return (ArgumentError, FileNotFoundError, NotADirectoryError, ValueError, EncoderLoadError)


def _import_public_classes() -> None:
    """Import the package's modules so jsonargparse can resolve their short class names."""
    for module in _SHORT_NAME_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - partial installs
            pass


class DSMCLI(LightningCLI):
    """LightningCLI with the package's links between data and model arguments.

    Links (``PARSE_LINKS``, ``INSTANTIATE_LINKS``) fill a model argument from the data
    module when the chosen model accepts it; models without it (``RetrievalModule`` has no
    ``num_classes``) are built as if the link did not exist.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link values shared by data and model so they are written once."""
        for source, target in PARSE_LINKS:
            parser.link_arguments(source, target, apply_on="parse")
        for source, target in INSTANTIATE_LINKS:
            parser.link_arguments(source, target, apply_on="instantiate")

    def after_instantiate_classes(self) -> None:
        """Drop linked values the model does not accept from its saved hyper-parameters.

        jsonargparse skips a link whose target the model lacks, but Lightning still records
        the value in ``model.hparams``; removing it keeps checkpoints reloadable.
        """
        model = getattr(self, "model", None)
        if model is None:
            return
        accepted = inspect.signature(type(model).__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        for _, target in (*PARSE_LINKS, *INSTANTIATE_LINKS):
            name = target.rsplit(".", 1)[-1]
            if takes_any or name in accepted:
                continue
            for store in (getattr(model, "_hparams", None), getattr(model, "_hparams_initial", None)):
                if store is not None and name in store:
                    del store[name]


class _ParseOnlyCLI(DSMCLI):
    """``DSMCLI`` that parses and validates but builds nothing (see ``parse_config``)."""

    def instantiate_classes(self) -> None:
        self.config_init = Namespace()

    def after_instantiate_classes(self) -> None:
        pass


def _cli_kwargs(args: Sequence[str] | None, run: bool) -> dict[str, Any]:
    parser_kwargs: dict[str, Any] = {
        "prog": "dsm",
        "description": "dsm-lightning: DSM video SSL pretraining, fine-tuning and retrieval.",
        "exit_on_error": False,  # main() prints one short message instead of usage + trace
    }
    for name in SUBCOMMANDS:
        parser_kwargs[name] = {"exit_on_error": False}
    return {
        "model_class": pl.LightningModule,
        "datamodule_class": pl.LightningDataModule,
        "subclass_mode_model": True,
        "subclass_mode_data": True,
        "trainer_defaults": DEFAULT_TRAINER,
        "seed_everything_default": 0,
        "save_config_kwargs": {"overwrite": True},
        # the modules build their own optimiser from named arguments (optimizer, lr, ...)
        "auto_configure_optimizers": False,
        "parser_kwargs": parser_kwargs,
        "args": list(args) if args is not None else None,
        "run": run,
    }


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> DSMCLI:
    """Build (and by default run) the ``dsm`` CLI.

    Args:
        args: Command-line arguments; ``None`` reads ``sys.argv``. With ``run=True`` the
            first one is the subcommand (``fit``, ``validate``, ``test``, ``predict``).
        run: Run the subcommand after parsing; ``False`` parses ``args`` (no subcommand)
            and instantiates the model, data module and trainer only.

    Returns:
        The LightningCLI instance (its ``model``, ``datamodule`` and ``trainer``).

    Raises:
        jsonargparse.ArgumentError: The arguments or config files do not parse.
    """
    _import_public_classes()
    return DSMCLI(**_cli_kwargs(args, run))


def parse_config(args: Sequence[str]) -> Namespace:
    """Parse and validate a configuration without building any class or touching data.

    Every key and value is checked against the chosen classes' signatures (links are
    applied at parse time only; ``num_classes`` is filled at instantiation).

    Args:
        args: Arguments without subcommand, e.g. ``["--config", "examples/configs/x.yaml"]``.

    Returns:
        The parsed configuration (``cfg.model.class_path``, ``cfg.data.init_args``, ...).

    Raises:
        jsonargparse.ArgumentError: Unknown key, wrong type or missing config file.
    """
    _import_public_classes()
    return _ParseOnlyCLI(**_cli_kwargs(args, run=False)).config


# ---------------------------------------------------------------------------- error messages

_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:$"
    r"|Expected a <class 'NoneType'>$|Given value type:)"
)
_MAX_VALUE_CHARS = 80


def _signature_names(target: type | Any) -> list[str]:
    try:
        return [n for n in inspect.signature(target.__init__).parameters if n != "self"]
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return []


def _import_class(path: str | None) -> type | None:
    if not path:
        return None
    if "." not in path:
        return getattr(dsm_lightning, path, None)
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _suggest(option: str, cls: type | None) -> str:
    """`` (did you mean 'x'?)`` for a misspelt argument of ``cls`` (or of the Trainer)."""
    section, _, leaf = option.rpartition(".")
    if cls is None and section.split(".")[0] == "trainer":
        cls = pl.Trainer
    if cls is None:
        return ""
    close = difflib.get_close_matches(leaf, _signature_names(cls), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_error(error: BaseException | str) -> str:
    """One short line for a configuration error, naming the key, class and value.

    Condenses jsonargparse's nested union reports ("Does not validate against any of the
    Union subtypes ... Given value: {...}") and instantiation failures to
    ``<key path>: <problem> [<class>]``.

    Args:
        error: The exception (or its message).

    Returns:
        The message, without trailing newline.
    """
    message = str(error)
    keys: list[str] = []
    problems: list[str] = []
    cls_path: str | None = None
    given: str | None = None
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line or _NOISE.match(line):
            continue
        if line.startswith("Given value:"):
            value = line.removeprefix("Given value:").strip()
            match = re.search(r"class_path='([^']+)'", value)
            if match and cls_path is None:
                cls_path = match.group(1)
            if given is None:
                given = value
            continue
        match = re.match(r'Parser key "([^"]+)":\s*(.*)$', line)
        if match:
            keys.append(match.group(1))
            line = match.group(2)
            if not line:
                continue
        match = re.match(r"Problem with given class_path '([^']+)':\s*(.*)$", line)
        if match:
            cls_path = match.group(1)
            keys.append("init_args")
            line = match.group(2)
            if not line:
                continue
        unknown = re.match(r"Option '([^']+)' is not accepted", line) or re.search(
            r"does not accept option '([^']+)'", line
        )
        if unknown:
            option = unknown.group(1)
            key = ".".join([*keys, option])
            line = f"unknown key {key!r}" + _suggest(key, _import_class(cls_path))
            keys, given = [], ""
        line = re.sub(r"Expected a <class '([\w.]+)'>", r"expected \1", line)
        line = re.sub(r"Expected a dot import path string: (\S+)",
                      r"unknown class_path '\1' (give the full import path)", line)
        if "class_path" in line:
            given = ""
        problems.append(re.sub(r"<class '([\w.]+)'>", r"\1", line))
    if not problems:
        problems = [message.strip().splitlines()[0] if message.strip() else type(error).__name__]
    while keys and keys[-1] == "init_args":
        keys.pop()
    text = "; ".join(dict.fromkeys(problems))
    if keys:
        text = f"{'.'.join(keys)}: {text}"
    if given and len(given) <= _MAX_VALUE_CHARS and "Got value" not in text:
        text += f" (got {given!r})" if not given.startswith("{") else f" (got {given})"
    if cls_path is not None:
        text += f" [{cls_path.rpartition('.')[2]}]"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsm`` console script; returns the process exit code.

    Configuration and input errors print ``dsm: error: <message>`` plus one hint line on
    stderr and return 2; other exceptions keep their traceback.
    """
    try:
        build_cli(argv)
    except _user_errors() as err:
        if os.environ.get("DSM_DEBUG"):
            raise
        # jsonargparse reports every failed instantiation as a ValueError: the name adds nothing
        kind = "" if isinstance(err, (ArgumentError, ValueError)) else f"{type(err).__name__}: "
        print(f"dsm: error: {kind}{format_error(err)}", file=sys.stderr)
        print("dsm: see `dsm <subcommand> --help` (or --print_config); DSM_DEBUG=1 shows the "
              "traceback", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
