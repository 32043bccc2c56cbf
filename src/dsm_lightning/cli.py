"""The ``dsm`` console script: ``dsm fit|validate|test|predict|study|prepare --config FILE.yaml``.

``dsm --help`` (or ``dsm`` alone) prints the subcommands at once, without importing torch
or Lightning; everything else goes to the LightningCLI parser of
:mod:`dsm_lightning.cli_parser` (subclass mode for model and data, links between them,
short help), ``dsm study`` to :mod:`dsm_lightning.study`, ``dsm prepare`` to :mod:`dsm_lightning.prepare`, and the parser's public names (``DSMCLI``, ``build_cli``, ``parse_config``) are also
reachable from here.

A wrong configuration (unknown key, wrong type, missing file, invalid value), a checkpoint
that is not safe to unpickle, or testing a classifier that was never fitted ends the command
with one short message naming the key or file, exit code 2; ``DSM_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dsm_lightning._lazy import lazy_getattr
from dsm_lightning._signature import init_parameters

if TYPE_CHECKING:  # pragma: no cover - for type checkers; imported on first use below
    from dsm_lightning.cli_parser import DSMCLI, build_cli, parse_config

__all__ = ["DSMCLI", "EXTRA_SUBCOMMANDS", "SUBCOMMANDS", "build_cli", "format_error", "main", "parse_config"]

#: subcommand -> what it does (the fast ``dsm --help``); LightningCLI's own subcommands
#: plus any a ``DSMCLI.subcommands()`` override adds must be listed here.
SUBCOMMANDS: dict[str, str] = {
    "fit": "train: pretraining (DSMLightningModule) or fine-tuning (FinetuneModule)",
    "validate": "one evaluation epoch over the validation set",
    "test": "one evaluation epoch over the test set (fine-tuning accuracy, retrieval)",
    "predict": "predictions of a model over the data module's predict set",
}
#: subcommands of the package's own (not LightningCLI's), run by their module's ``main``.
EXTRA_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "study": ("dsm_lightning.study",
              "pretrain several methods on the same data and measure their scene bias"),
    "prepare": ("dsm_lightning.prepare",
                "pack a data section's videos into streaming shards (source: shards)"),
}

# names of the parser module, imported on first use (PEP 562) so `dsm --help` stays fast
_PARSER_NAMES = ("DSMCLI", "build_cli", "parse_config", "_ParseOnlyCLI", "_cli_kwargs",
                 "import_public_classes")
__getattr__ = lazy_getattr(__name__, dict.fromkeys(_PARSER_NAMES, "dsm_lightning.cli_parser"))


def top_level_help() -> str:
    """The ``dsm --help`` text (built from ``SUBCOMMANDS``, no heavy import)."""
    width = max(len(name) for name in (*SUBCOMMANDS, *EXTRA_SUBCOMMANDS))
    lines = [
        f"usage: dsm [-h] {{{','.join([*SUBCOMMANDS, *EXTRA_SUBCOMMANDS])}}} --config FILE.yaml "
        "[--key value ...]",
        "",
        "dsm-lightning: DSM video SSL pretraining, fine-tuning and retrieval.",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()),
        *(f"  {name:<{width}}  {text}" for name, (_, text) in EXTRA_SUBCOMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this message; `dsm <subcommand> --help` shows the subcommand's",
        "              options, `dsm fit --model.help FinetuneModule` a model's arguments",
        "",
        "examples:",
        "  dsm fit --config examples/configs/synthetic_dsm_intra.yaml",
        "  dsm fit --config examples/configs/synthetic_dsm_intra.yaml --print_config > my.yaml",
        "  dsm test --config examples/configs/finetune_synthetic.yaml "
        "--ckpt_path runs/finetune_synthetic/version_0/checkpoints/last.ckpt",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- error messages

_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:$"
    r"|Expected a <class 'NoneType'>$|Given value type:)"
)
_MAX_VALUE_CHARS = 80


def _signature_names(target: type | Any) -> list[str]:
    try:
        return sorted(init_parameters(target))
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return []


def _import_class(path: str | None) -> type | None:
    if not path:
        return None
    if "." not in path:
        import dsm_lightning

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
        import pytorch_lightning as pl

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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the configuration, its files or the request are wrong"."""
    from pickle import UnpicklingError

    from jsonargparse import ArgumentError

    from dsm_lightning.models.encoder_io import EncoderLoadError

    return (ArgumentError, FileNotFoundError, NotADirectoryError, ValueError, EncoderLoadError,
            UnpicklingError)


def _option_value(args: Sequence[str], option: str) -> str | None:
    """The value of ``--option value`` / ``--option=value`` in ``args`` (the last one)."""
    value = None
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def _unsafe_checkpoint(error: BaseException, args: Sequence[str]) -> str:
    """One line for a checkpoint that ``torch.load(weights_only=True)`` refuses."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f"a pickled {match.group(1)}" if match else "pickled Python objects"
    path = _option_value(args, "--ckpt_path")
    where = f"checkpoint {path}" if path else "the checkpoint (ckpt_path)"
    return (f"{where} holds {what}, which safe loading (weights_only) refuses; load it only if "
            "you trust the file: --weights_only false")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsm`` console script; returns the process exit code.

    ``dsm``, ``dsm -h`` and ``dsm --help`` print :func:`top_level_help` without importing
    torch (exit code 2 without arguments). Configuration and input errors print
    ``dsm: error: <message>`` plus one hint line on stderr and return 2; other exceptions
    keep their traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # Lightning 2.x on recent torch: a deprecation inside Lightning, nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    if args in ([], ["-h"], ["--help"]):
        print(top_level_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    from pickle import UnpicklingError

    from jsonargparse import ArgumentError

    try:
        if args and args[0] in EXTRA_SUBCOMMANDS:
            importlib.import_module(EXTRA_SUBCOMMANDS[args[0]][0]).main(args[1:])
        else:
            from dsm_lightning.cli_parser import build_cli

            build_cli(argv)
    except _user_errors() as err:
        if os.environ.get("DSM_DEBUG"):
            raise
        if isinstance(err, UnpicklingError):
            message = _unsafe_checkpoint(err, args)
        else:
            # jsonargparse reports every failed instantiation as a ValueError: the name adds
            # nothing
            kind = "" if isinstance(err, (ArgumentError, ValueError)) else f"{type(err).__name__}: "
            message = kind + format_error(err)
        print(f"dsm: error: {message}", file=sys.stderr)
        print("dsm: see `dsm <subcommand> --help` (or --print_config); DSM_DEBUG=1 shows the "
              "traceback", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
