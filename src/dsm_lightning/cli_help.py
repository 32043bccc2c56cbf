"""How ``dsm <subcommand> --help`` reads: what a user sets, short (``DSM_FULL_HELP=1``: all).

A subcommand's help lists the config options, the model / data class choice and the
Trainer arguments in ``TRAINER_HELP`` (every Trainer argument is accepted either way),
Lightning's options by their first sentence, and known subclasses by class name, a long
list of them (every ``torch.nn`` class for an argument typed ``nn.Module``) summarised.
Used by :class:`dsm_lightning.cli_parser.DSMArgumentParser`.
"""

from __future__ import annotations

import os
import re
from argparse import Action
from typing import Any

from jsonargparse import DefaultHelpFormatter

__all__ = ["HELP_EPILOG", "MAX_LISTED_SUBCLASSES", "MAX_TYPE_CHARS", "SHORT_HELP",
           "TRAINER_HELP", "DSMHelpFormatter"]

#: The Trainer arguments a subcommand's ``--help`` shows (every one is accepted).
TRAINER_HELP: tuple[str, ...] = (
    "accelerator", "strategy", "devices", "precision", "max_epochs", "max_steps", "logger",
    "callbacks", "default_root_dir", "fast_dev_run",
)
#: Short help of Lightning's subcommand options whose first sentence says too little.
SHORT_HELP: dict[str, str] = {
    "ckpt_path": "Checkpoint to resume from (fit) or to evaluate (validate, test, predict); "
                 "'last' = the last checkpoint of this run.",
    "weights_only": "Load ckpt_path with torch's safe unpickler (default); false only for a "
                    "file you trust.",
    "print_config": "Print the complete configuration (after all other arguments) and exit; "
                    "flags: skip_default, skip_unset.",
}
_LIGHTNING_OPTIONS = ("seed_everything", *SHORT_HELP)
#: Known subclasses listed in full up to this many; longer lists are summarised.
MAX_LISTED_SUBCLASSES = 8
#: Longer type descriptions (e.g. a union of Literals) are left out of the short help.
MAX_TYPE_CHARS = 60
_KNOWN = ", known subclasses: "
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s|$)", re.DOTALL)

#: The end of a subcommand's help (``{cmd}``: the subcommand).
HELP_EPILOG = (
    "Shown: the Trainer arguments a run usually sets; every Trainer argument is accepted "
    "(e.g. --trainer.gradient_clip_val 1.0) and `DSM_FULL_HELP=1 dsm {cmd} --help` lists them "
    "all. A model's or data module's arguments: `dsm {cmd} --model.help FinetuneModule`, "
    "`dsm {cmd} --data.help VideoDataModule`. `DSM_SMOKE=1 dsm {cmd} --config X` checks a "
    "config end to end in seconds (1 epoch, 2 batches, tiny synthetic data; same paths)."
)


def _full_help() -> bool:
    return bool(os.environ.get("DSM_FULL_HELP"))


def _summarise_subclasses(extra: str) -> str:
    """``, known subclasses: A, B`` by class name (accepted as values), the package's own
    first; a list longer than ``MAX_LISTED_SUBCLASSES`` shows only the package's own (a few)
    and counts the rest."""
    if _full_help():
        return extra
    paths = extra.removeprefix(_KNOWN).split(", ")
    own = [path for path in paths if path.startswith("dsm_lightning.")]
    names = [path.rpartition(".")[2] for path in own + [p for p in paths if p not in own]]
    names = list(dict.fromkeys(names))
    if len(names) <= MAX_LISTED_SUBCLASSES:
        return _KNOWN + ", ".join(names)
    shown = list(dict.fromkeys(path.rpartition(".")[2] for path in own))
    if not shown or len(shown) > MAX_LISTED_SUBCLASSES // 2:  # e.g. every torch.nn class
        return f", any subclass by class_path ({len(names)} known)"
    return f"{_KNOWN}{', '.join(shown)} and {len(names) - len(shown)} more (any by class_path)"


def _hidden(action: Action) -> bool:
    """A Trainer argument (or ``--trainer.X.help``) left out of the short help."""
    parts = action.dest.split(".")
    if _full_help() or len(parts) < 2 or parts[0] != "trainer":
        return False
    return parts[1] not in TRAINER_HELP or parts[-1] == "help"


def _short_description(action: Action) -> str | None:
    """The short help's text of one of Lightning's options (None: keep the full text)."""
    if _full_help() or not isinstance(action.help, str):
        return None
    if action.dest in SHORT_HELP:
        return SHORT_HELP[action.dest]
    if action.dest.startswith("trainer.") or action.dest in _LIGHTNING_OPTIONS:
        match = _FIRST_SENTENCE.match(action.help.strip())
        return " ".join(match.group(1).split()) if match else None
    return None


class DSMHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, short: the Trainer arguments cut to ``TRAINER_HELP``,
    Lightning's options to their first sentence, known subclasses by class name and long
    lists of them summarised, type descriptions over ``MAX_TYPE_CHARS`` left out
    (``DSM_FULL_HELP=1``: jsonargparse's full help)."""

    def _get_help_string(self, action: Action) -> str:
        short = _short_description(action)
        original = action.help
        if short is not None:
            action.help = short
        try:
            text = super()._get_help_string(action)
        finally:
            action.help = original
        extra = action.extra_help() if hasattr(action, "extra_help") else ""
        return text.replace(extra, _summarise_subclasses(extra)) if extra else text

    def _get_type_str(self, action: Action) -> str | None:
        text = super()._get_type_str(action)
        if text is not None and len(text) > MAX_TYPE_CHARS and not _full_help():
            return None
        return text

    def add_argument(self, action: Action) -> None:
        if not _hidden(action):
            super().add_argument(action)

    def _format_usage(self, usage: Any, actions: Any, *args: Any, **kwargs: Any) -> str:
        shown = [action for action in actions if not _hidden(action)]
        return super()._format_usage(usage, shown, *args, **kwargs)
