"""The ``dsm`` console script: ``dsm fit|validate|test|predict|study|prepare --config FILE.yaml``.

``dsm --help`` prints the subcommands without importing torch; ``fit|validate|test|predict``
go to :mod:`dsm_lightning.cli_parser` (``DSMCLI``, ``build_cli``, ``parse_config``, also
reachable here), ``study`` / ``prepare`` to their module's ``main``. A module in the working
directory imports by ``class_path`` (``mymod.Net`` from ``./mymod.py``), as under ``python -m``.
A configuration or input error (:func:`_is_user_error`) ends the command with one line
(:func:`format_error`) and a hint, exit code 2 (``DSM_DEBUG=1``: the traceback); an
exception raised while the built classes run (a training step, a hook) keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pickle
import re
import sys
import warnings
from argparse import ArgumentError  # jsonargparse's parse errors are argparse's
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dsm_lightning._lazy import lazy_getattr
from dsm_lightning._signature import init_parameters

if TYPE_CHECKING:  # pragma: no cover - for type checkers; imported on first use below
    from dsm_lightning.cli_parser import DSMCLI, build_cli, parse_config

__all__ = ["DSMCLI", "EXTRA_SUBCOMMANDS", "SUBCOMMANDS", "build_cli", "format_error", "main",
           "parse_config"]

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
    commands = {**SUBCOMMANDS, **{name: text for name, (_, text) in EXTRA_SUBCOMMANDS.items()}}
    width = max(map(len, commands))
    return "\n".join([
        f"usage: dsm [-h] {{{','.join(commands)}}} --config FILE.yaml [--key value ...]", "",
        "dsm-lightning: DSM video SSL pretraining, fine-tuning and retrieval.", "",
        "subcommands:", *(f"  {name:<{width}}  {text}" for name, text in commands.items()), "",
        "options:",
        "  -h, --help  show this message; `dsm <subcommand> --help` shows the subcommand's",
        "              options, `dsm fit --model.help FinetuneModule` a model's arguments", "",
        "examples:",
        "  dsm fit --config examples/configs/synthetic_dsm_intra.yaml",
        "  dsm fit --config examples/configs/synthetic_dsm_intra.yaml --print_config > my.yaml",
        "  dsm test --config examples/configs/finetune_synthetic.yaml "
        "--ckpt_path runs/finetune_synthetic/version_0/checkpoints/last.ckpt",
    ])


# ---------------------------------------------------------------------------- error messages

#: Longest error line printed (the rest is cut with "...").
MAX_ERROR_CHARS = 280
_QUOTED = re.compile(r"""["']([^"'\s]+)["']""")
_CLASS_REPR = re.compile(r"<class '([\w.]+)'>")  # Python's repr of a class


def _class_of(name: str) -> type | None:
    """The class an import path names (``pkg.mod.Class``), or None."""
    module, _, attr = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attr, None)
    except (ImportError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _suggestion(problem: str, cls: type | None) -> str:
    """`` (did you mean 'x'?)`` for the last quoted name of ``problem`` that is not an
    argument of ``cls`` (the class above it; the Trainer for a ``trainer.`` key)."""
    names = _QUOTED.findall(problem)
    leaf = names[-1].rpartition(".")[2] if names else ""
    if cls is None and names and names[-1].startswith("trainer."):
        cls = _class_of("pytorch_lightning.Trainer")
    if cls is None or not leaf:
        return ""
    accepted = init_parameters(cls) or set(inspect.signature(cls).parameters)
    close = difflib.get_close_matches(leaf, sorted(accepted), n=1)
    return f" (did you mean {close[0]!r}?)" if close and leaf not in accepted else ""


def format_error(error: BaseException | str) -> str:
    """One line for a configuration error, by the structure of its message.

    A multi-line report quoting the exception it was raised from (the parser wrapping a
    constructor's error) stands for that exception. A nested report (first line a header
    ending with ``:``, problems indented below) is cut to its first most indented line,
    after the key path the quoted names of the headers above it make (a class path adds
    ``init_args`` and is named in brackets); other messages are kept whole on one line. A
    quoted name the class does not take gets a "did you mean"; cut at ``MAX_ERROR_CHARS``.

    Args:
        error: The exception (or its message).

    Returns:
        ``<key path>: <problem> [<class>]``, without trailing newline.
    """
    kind = ""
    if isinstance(error, BaseException):
        cause = error.__cause__
        while (cause is not None and not isinstance(error, ArgumentError)
               and "\n" in str(error) and str(cause) in str(error)):
            error, cause = cause, cause.__cause__
        if not isinstance(error, (ArgumentError, ValueError)):
            kind = f"{type(error).__name__}: "
    lines = [(len(line) - len(line.lstrip(" \t-")), line.strip(" \t-"))
             for line in _CLASS_REPR.sub(r"\1", str(error)).splitlines() if line.strip(" \t-")]
    keys: list[str] = []
    owner, cls = "", None  # the innermost class path above the problem: its name, its class
    if not lines or not lines[0][1].endswith(":"):
        problem = " ".join(line for _, line in lines) or type(error).__name__
    else:
        level = max(depth for depth, _ in lines)
        at = next(i for i, (depth, _) in enumerate(lines) if depth == level)
        problem = lines[at][1]
        for depth, line in reversed(lines[:at]):
            if depth < level and line.endswith(":"):
                level = depth
                for name in reversed(_QUOTED.findall(line)):
                    is_class = "." in name and name.rpartition(".")[2][:1].isupper()
                    if is_class and not owner:
                        owner, cls = name.rpartition(".")[2], _class_of(name)
                    keys.insert(0, "init_args" if is_class else name)
        while keys and keys[-1] == "init_args":
            keys.pop()
    text = f"{kind}{'.'.join(keys) + ': ' if keys else ''}{problem}{_suggestion(problem, cls)}"
    text += f" [{owner}]" if owner else ""
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def _is_user_error(error: Exception, running: bool) -> bool:
    """Whether ``error`` says the configuration, its files or the request are wrong: a bad
    argument (``ValueError``) before the classes run; at any time a missing or unsafe file,
    an encoder that does not fit, bad annotations, an unfitted classifier."""
    from dsm_lightning.data.sources.base import AnnotationError
    from dsm_lightning.models.encoder_io import EncoderLoadError
    from dsm_lightning.modules.finetune import UnfittedClassifierError

    always = (ArgumentError, FileNotFoundError, NotADirectoryError, pickle.UnpicklingError,
              EncoderLoadError, AnnotationError, UnfittedClassifierError)
    return isinstance(error, always) or (not running and isinstance(error, ValueError))


def _unsafe_checkpoint(args: Sequence[str]) -> str:
    """One line for a checkpoint that ``torch.load(weights_only=True)`` refuses."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    given = [arg.partition("=")[2] or (args[i + 1] if i + 1 < len(args) else "")
             for i, arg in enumerate(args) if arg.partition("=")[0] == "--ckpt_path"]
    path = given[-1] if given else None  # --ckpt_path P / --ckpt_path=P, the last one
    what = ", ".join(get_unsafe_globals_in_checkpoint(path)) if path else "not weights"
    return (f"{f'checkpoint {path}' if path else 'the checkpoint (ckpt_path)'} holds pickled "
            f"Python objects ({what}), which safe loading (weights_only) refuses; load it "
            "only if you trust the file: --weights_only false")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsm`` console script; returns the process exit code.

    ``dsm [-h|--help]`` prints :func:`top_level_help` (exit 2 without arguments). The
    working directory goes first on ``sys.path`` for the command (not under ``python -P``).
    A user error prints ``dsm: error: <one line>`` and a hint on stderr and returns 2.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # Lightning 2.x on recent torch: a deprecation inside Lightning, nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    if args in ([], ["-h"], ["--help"]):
        print(top_level_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    from dsm_lightning import cli_parser

    cwd = os.getcwd()  # first on sys.path, as `python -m` puts it (not with -P)
    added = not getattr(sys.flags, "safe_path", False) and cwd not in sys.path + [""]
    if added:
        sys.path.insert(0, cwd)
    built = cli_parser.CLASSES_BUILT.set(False)
    try:
        if args[0] in EXTRA_SUBCOMMANDS:
            importlib.import_module(EXTRA_SUBCOMMANDS[args[0]][0]).main(args[1:])
        else:
            cli_parser.build_cli(argv)
    except Exception as error:
        if os.environ.get("DSM_DEBUG") or not _is_user_error(
                error, cli_parser.CLASSES_BUILT.get()):
            raise
        message = (_unsafe_checkpoint(args) if isinstance(error, pickle.UnpicklingError)
                   else format_error(error))
        print(f"dsm: error: {message}\ndsm: see `dsm <subcommand> --help` (or --print_config);"
              " DSM_DEBUG=1 shows the traceback", file=sys.stderr)
        return 2
    finally:
        cli_parser.CLASSES_BUILT.reset(built)
        if added:
            sys.path.remove(cwd)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
