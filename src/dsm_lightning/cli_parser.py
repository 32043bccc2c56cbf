"""The parser behind the ``dsm`` console script: LightningCLI in subclass mode, links, help.

``dsm fit --config examples/configs/synthetic_dsm_intra.yaml`` pretrains, ``dsm test --config
finetune.yaml`` evaluates; any LightningModule / LightningDataModule is chosen by
``class_path`` (short names such as ``DSMLightningModule``, ``VideoDataModule``,
``TripletBuilder`` or ``TripletMediaLogger`` work for the classes of the modules in
``SHORT_NAME_MODULES``). Configuration is constructor signatures: every argument of the
chosen classes is settable from YAML or as a flag, and ``--print_config`` writes a complete,
re-runnable config.

Values shared by data and model are linked, not typed twice: ``data.num_classes`` feeds the
model's ``num_classes`` (``data.class_names`` its ``class_names``) and ``data.n_clips`` /
``data.n_crops`` the model's ``n_clips`` / ``n_crops``, each only when the chosen model has
that argument (the data module hands its ``crop_size`` to its transform and view builder
itself).

Help shows what a user sets (:class:`DSMHelpFormatter`): a subcommand's ``--help`` lists
the config options, the model / data class choice and the Trainer arguments in
``TRAINER_HELP`` (``DSM_FULL_HELP=1`` lists every one; all are accepted either way), and a
long list of known subclasses (every ``torch.nn`` class for an argument typed
``nn.Module``) is summarised. The console script itself (fast ``dsm --help``, one-line
errors) is :mod:`dsm_lightning.cli`.

Smoke runs: with ``DSM_SMOKE=1`` in the environment every ``dsm`` run (and ``dsm study``,
the examples and the notebooks) checks a configuration end to end in seconds, with the same
command and the same output paths: :func:`apply_smoke` (``SMOKE_TRAINER``, ``SMOKE_SOURCE``,
``SMOKE_CLIPS``, ``SMOKE_WIDTH``) cuts the run to one epoch of at most two batches per loop,
shrinks the synthetic source and its clips, and narrows a ``tiny3d`` backbone; it prints one
line saying what it changed. Real-data sources and other backbones keep their settings.
"""

from __future__ import annotations

import importlib
import os
import re
from argparse import Action
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from jsonargparse import DefaultHelpFormatter, Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from dsm_lightning._signature import init_parameters

__all__ = [
    "SMOKE_CLIPS",
    "SMOKE_ENV",
    "SMOKE_SOURCE",
    "SMOKE_TRAINER",
    "SMOKE_WIDTH",
    "DSMCLI",
    "DSMArgumentParser",
    "DSMHelpFormatter",
    "SHORT_NAME_MODULES",
    "TRAINER_HELP",
    "apply_smoke",
    "build_cli",
    "parse_config",
    "smoke_enabled",
    "smoke_from_env",
]

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
)
INSTANTIATE_LINKS: tuple[tuple[str, str], ...] = (
    ("data.num_classes", "model.init_args.num_classes"),
    ("data.class_names", "model.init_args.class_names"),
)

#: Modules whose classes resolve by short name in configs (``class_path: FinetuneModule``):
#: importing them makes their classes known to jsonargparse. Add a module here to give its
#: classes short names.
SHORT_NAME_MODULES: list[str] = [
    "dsm_lightning.modules.base",
    "dsm_lightning.modules.moco",
    "dsm_lightning.modules.dsm",
    "dsm_lightning.modules.dsm_intra",
    "dsm_lightning.modules.dsm_triplet",
    "dsm_lightning.modules.be",
    "dsm_lightning.modules.fame",
    "dsm_lightning.modules.finetune",
    "dsm_lightning.modules.retrieval",
    "dsm_lightning.data.datamodule",
    "dsm_lightning.disturb.triplet",
    "dsm_lightning.disturb.background_erasing",
    "dsm_lightning.disturb.fame",
    "dsm_lightning.callbacks.knn",
    "dsm_lightning.callbacks.media",
    "dsm_lightning.callbacks.export",
    "dsm_lightning.callbacks.progress",
]

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

_HELP_EPILOG = (
    "Shown: the Trainer arguments a run usually sets; every Trainer argument is accepted "
    "(e.g. --trainer.gradient_clip_val 1.0) and `DSM_FULL_HELP=1 dsm {cmd} --help` lists them "
    "all. A model's or data module's arguments: `dsm {cmd} --model.help FinetuneModule`, "
    "`dsm {cmd} --data.help VideoDataModule`. `DSM_SMOKE=1 dsm {cmd} --config X` checks a "
    "config end to end in seconds (1 epoch, 2 batches, tiny synthetic data; same paths)."
)

# ---------------------------------------------------------------------------- smoke runs

#: The environment variable that turns smoke runs on (any value but "", "0", "false", "no").
SMOKE_ENV = "DSM_SMOKE"
#: Trainer settings of a smoke run: one epoch, at most two batches in every loop.
SMOKE_TRAINER: dict[str, Any] = {
    "max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2,
    "limit_test_batches": 2, "limit_predict_batches": 2, "log_every_n_steps": 1,
    "check_val_every_n_epoch": 1,
}
#: ``SyntheticSource`` settings of a smoke run (each an upper bound on the config's).
SMOKE_SOURCE: dict[str, int] = {
    "num_classes": 4, "videos_per_class": 4, "eval_videos_per_class": 2, "num_frames": 16,
    "size": 32,
}
#: Clip settings of a ``VideoDataModule`` on the synthetic source in a smoke run (upper
#: bounds; ``num_workers`` 0: decoding in the main process starts at once).
SMOKE_CLIPS: dict[str, int] = {
    "num_frames": 4, "stride": 2, "frame_size": 32, "crop_size": 32, "min_gap": 2,
    "batch_size": 4, "eval_batch_size": 4, "n_clips": 2, "num_workers": 0,
}
#: ``backbone_kwargs.width`` of a ``tiny3d`` backbone in a smoke run.
SMOKE_WIDTH = 4
_SYNTHETIC_CLASS = "dsm_lightning.data.sources.SyntheticSource"
_SMOKE_PRINTED: set[str] = set()


def smoke_enabled() -> bool:
    """True when ``DSM_SMOKE`` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _bounded(section: Any, key: str, bound: Any) -> bool:
    """Set ``section[key]`` to ``bound`` unless it is already set at or below it."""
    value = section.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= bound:
        return False
    section[key] = bound
    return True


def _smoke_trainer(trainer: Any) -> None:
    for key, value in SMOKE_TRAINER.items():
        current = trainer.get(key)
        if key.startswith("limit_"):
            if current == 0 or (type(current) is int and current <= value):
                continue  # a loop switched off stays off; fewer batches stay fewer
        elif key == "check_val_every_n_epoch" and current is None:
            continue  # validation by steps (val_check_interval)
        trainer[key] = value
    if type(trainer.get("val_check_interval")) is int:  # every N steps: N > two batches
        trainer["val_check_interval"] = 1.0
    if (trainer.get("max_steps") or -1) > SMOKE_TRAINER["limit_train_batches"]:
        trainer["max_steps"] = -1  # the epoch bound ends the run


def _new_section(like: Any, **values: Any) -> Any:
    """A config section of the same kind as ``like`` (jsonargparse Namespace or dict)."""
    return Namespace(**values) if isinstance(like, Namespace) else dict(values)


def _smoke_data(data: Any) -> bool:
    """Shrink a data section whose source is ``SyntheticSource`` (or ``"synthetic"``)."""
    init = data.get("init_args") if data is not None else None
    if init is None:
        return False
    source = init.get("source", "synthetic")
    if source == "synthetic" or source is None:
        source = _new_section(init, class_path=_SYNTHETIC_CLASS, init_args=_new_section(init))
        init["source"] = source
    if not (hasattr(source, "get") and str(source.get("class_path", "")).endswith(
            "SyntheticSource")):
        return False
    if source.get("init_args") is None:
        source["init_args"] = _new_section(init)
    for key, bound in SMOKE_SOURCE.items():
        _bounded(source["init_args"], key, bound)
    for key, bound in SMOKE_CLIPS.items():
        if key == "eval_batch_size" and init.get(key) is None:
            continue
        _bounded(init, key, bound)
    init["persistent_workers"] = False  # no workers to keep
    for part in ("transform", "augment"):  # a crop size written in a part follows the data's
        part_init = (init.get(part) or {}).get("init_args") if init.get(part) else None
        if part_init is not None and part_init.get("crop_size") is not None:
            part_init["crop_size"] = init["crop_size"]
    return True


def _smoke_model(model: Any) -> bool:
    """Narrow a model section's ``tiny3d`` backbone."""
    init = model.get("init_args") if model is not None else None
    if init is None or init.get("backbone") != "tiny3d":
        return False
    kwargs = init.get("backbone_kwargs")
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else (kwargs or _new_section(init))
    _bounded(kwargs, "width", SMOKE_WIDTH)
    init["backbone_kwargs"] = kwargs
    return True


def apply_smoke(config: Any) -> str:
    """Shrink a run configuration in place for a seconds-long smoke run; say what changed.

    The command, the config files and every output path stay as they are; only sizes change:

    - ``trainer``: :data:`SMOKE_TRAINER` (one epoch, at most two batches per loop; a loop
      the config switched off stays off);
    - ``data`` on ``SyntheticSource`` (or ``source: synthetic``): the source bounded by
      :data:`SMOKE_SOURCE` and the clips by :data:`SMOKE_CLIPS`; other sources keep their
      data settings (two batches of them are read);
    - ``model`` (and each ``methods.<name>.model`` of a ``dsm study`` config) with
      ``backbone: tiny3d``: ``backbone_kwargs.width`` at most :data:`SMOKE_WIDTH`; other
      backbones are kept; a study's ``n_clips`` at most ``SMOKE_CLIPS["n_clips"]``.

    Args:
        config: A ``dsm fit`` configuration (``trainer`` / ``data`` / ``model`` sections) as
            a jsonargparse ``Namespace`` or a dict, or ``dsm study``'s arguments (a dict with
            ``trainer`` / ``data`` / ``methods``); missing sections are skipped.

    Returns:
        The one-line notice to print (``[dsm] smoke mode (DSM_SMOKE=1): ...``).
    """
    if isinstance(config, dict) and config.get("trainer") is None:
        config["trainer"] = {}
    done = []
    if config.get("trainer") is not None:
        _smoke_trainer(config["trainer"])
        done.append(f"{SMOKE_TRAINER['max_epochs']} epoch, <= "
                    f"{SMOKE_TRAINER['limit_train_batches']} batches per loop")
    if _smoke_data(config.get("data")):
        src, clip = SMOKE_SOURCE, SMOKE_CLIPS
        done.append(f"synthetic source <= {src['num_classes']} classes x "
                    f"{src['videos_per_class']} videos of {src['num_frames']} frames at "
                    f"{src['size']} px, clips <= {clip['num_frames']} frames, batch "
                    f"<= {clip['batch_size']}, no loader workers")
    if isinstance(config, dict) and config.get("n_clips") is not None:
        _bounded(config, "n_clips", SMOKE_CLIPS["n_clips"])
    methods = config.get("methods") if isinstance(config, dict) else None
    models = [config.get("model"), *((m or {}).get("model") for m in (methods or {}).values())]
    if any([_smoke_model(model) for model in models]):
        done.append(f"tiny3d width <= {SMOKE_WIDTH}")
    return f"[dsm] smoke mode ({SMOKE_ENV}=1): {'; '.join(done)}; paths unchanged"


def smoke_from_env(config: Any) -> str | None:
    """:func:`apply_smoke` and print its notice when ``DSM_SMOKE`` is set (else nothing).

    A process prints the same notice once (``dsm study`` applies it to the study, then to
    each method's fit).

    Args:
        config: as for :func:`apply_smoke`.

    Returns:
        The notice printed, or None when smoke mode is off.
    """
    if not smoke_enabled():
        return None
    notice = apply_smoke(config)
    if notice not in _SMOKE_PRINTED:
        _SMOKE_PRINTED.add(notice)
        print(notice, flush=True)
    return notice


def import_public_classes() -> None:
    """Import ``SHORT_NAME_MODULES`` so jsonargparse resolves their short class names."""
    for module in SHORT_NAME_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - partial installs
            pass


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


class DSMArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose help (also ``--model.help X``) is
    :class:`DSMHelpFormatter`'s."""

    def __init__(self, *args: Any, formatter_class: type = DSMHelpFormatter, **kwargs: Any):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


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

    def before_instantiate_classes(self) -> None:
        """With ``DSM_SMOKE`` set, shrink the parsed configuration (:func:`apply_smoke`)."""
        smoke_from_env(self.config.get(str(self.subcommand), self.config))

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The Trainer with the package's defaults added where the config has none.

        ``EncoderExport`` (``encoder.pt`` in the log dir and a report of where fit's outputs
        went), a progress bar that writes plain lines when the output is not a terminal
        (``LineProgressBar``), and ``save_last=True`` on the first checkpoint callback when none
        sets it, so ``last.ckpt`` exists to resume from.
        """
        from pytorch_lightning.callbacks import ProgressBar

        from dsm_lightning.callbacks.export import EncoderExport
        from dsm_lightning.callbacks.progress import default_progress_bar

        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        given = config.get("callbacks") or []
        callbacks = list(given) if isinstance(given, list) else [given]
        if not any(isinstance(c, EncoderExport) for c in callbacks):
            callbacks.append(EncoderExport())
        if config.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(default_progress_bar())
        kwargs["callbacks"] = callbacks
        trainer = super().instantiate_trainer(**kwargs)
        checkpoints = trainer.checkpoint_callbacks
        if checkpoints and not any(getattr(c, "save_last", None) for c in checkpoints):
            if getattr(checkpoints[0], "save_last", False) is None:  # unset, not refused
                checkpoints[0].save_last = True
        return trainer

    def after_instantiate_classes(self) -> None:
        """Drop linked values the model does not accept from its saved hyper-parameters, and
        make a model with a ``require_fitted`` switch refuse to evaluate an unfitted head.

        jsonargparse skips a link whose target the model lacks, but Lightning still records
        the value in ``model.hparams``; removing it keeps checkpoints reloadable.
        """
        model = getattr(self, "model", None)
        if model is None:
            return
        if hasattr(model, "require_fitted"):  # FinetuneModule: `dsm test` refuses, not warns
            model.require_fitted = True
        accepted = init_parameters(type(model))
        for _, target in (*PARSE_LINKS, *INSTANTIATE_LINKS):
            name = target.rsplit(".", 1)[-1]
            if name in accepted:
                continue
            for store in (getattr(model, "_hparams", None), getattr(model, "_hparams_initial", None)):
                if store is not None and name in store:
                    del store[name]


class _ParseOnlyCLI(DSMCLI):
    """``DSMCLI`` that parses and validates but builds nothing (see ``parse_config``)."""

    def before_instantiate_classes(self) -> None:
        pass  # the configuration as written, even with DSM_SMOKE set

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
    for name in DSMCLI.subcommands():
        parser_kwargs[name] = {"exit_on_error": False, "epilog": _HELP_EPILOG.format(cmd=name)}
    return {
        "parser_class": DSMArgumentParser,
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
        "args": args if args is None or isinstance(args, (dict, Namespace)) else list(args),
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
    import_public_classes()
    return DSMCLI(**_cli_kwargs(args, run))


def parse_config(args: Sequence[str]) -> Namespace:
    """Parse and validate a configuration without building any class or touching data.

    Every key and value is checked against the chosen classes' signatures (links are
    applied at parse time only; ``num_classes`` is filled at instantiation).

    Args:
        args: Arguments without subcommand, e.g. ``["--config", "my_config.yaml"]``.

    Returns:
        The parsed configuration (``cfg.model.class_path``, ``cfg.data.init_args``, ...).

    Raises:
        jsonargparse.ArgumentError: Unknown key, wrong type or missing config file.
    """
    import_public_classes()
    return _ParseOnlyCLI(**_cli_kwargs(args, run=False)).config
