"""The parser behind the ``dsm`` console script: LightningCLI in subclass mode, links, help.

Any LightningModule / LightningDataModule is chosen by ``class_path`` (short names such as
``DSMLightningModule`` or ``TripletBuilder`` work for the classes of the modules in
``SHORT_NAME_MODULES``); every constructor argument of the chosen classes is settable from
YAML or as a flag, and ``--print_config`` writes a complete, re-runnable config.

Values shared by data and model are written once, in the data section: ``data.n_clips`` /
``n_crops`` feed the model's ``n_clips`` / ``n_crops`` (at parse time), ``data.num_classes``
/ ``class_names`` its ``num_classes`` / ``class_names`` (at instantiation), each only when
the chosen model takes that argument; a model that does not take it neither receives it
nor records it in its saved hyper-parameters (:class:`DSMArgumentParser`).

Help shows what a user sets (:class:`DSMHelpFormatter`; ``DSM_FULL_HELP=1``: all of it).
With ``DSM_SMOKE=1`` the overlays of :mod:`dsm_lightning.smoke` go on top of the parsed
configuration (:class:`DSMCLI`). The console script itself is :mod:`dsm_lightning.cli`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from dsm_lightning import smoke
from dsm_lightning._signature import init_parameters
from dsm_lightning.cli_help import HELP_EPILOG, TRAINER_HELP, DSMHelpFormatter
from dsm_lightning.smoke import smoke_enabled, smoke_from_env  # noqa: F401 - former home

__all__ = ["CLASSES_BUILT", "DSMCLI", "DSMArgumentParser", "DSMHelpFormatter",
           "SHORT_NAME_MODULES", "TRAINER_HELP", "build_cli", "parse_config"]

#: Set once a ``DSMCLI`` has built its classes: an exception raised from then on comes from
#: running them (``dsm_lightning.cli.main`` keeps its traceback).
CLASSES_BUILT: ContextVar[bool] = ContextVar("dsm_classes_built", default=False)

#: Trainer settings a configuration does not give: CSV logs under runs/dsm/.
DEFAULT_TRAINER: dict[str, Any] = {"logger": {
    "class_path": "pytorch_lightning.loggers.CSVLogger",
    "init_args": {"save_dir": "runs", "name": "dsm"}}}

#: (source, target) links between data and model arguments; a link whose target the chosen
#: model lacks does not reach it.
PARSE_LINKS: tuple[tuple[str, str], ...] = (
    ("data.init_args.n_clips", "model.init_args.n_clips"),
    ("data.init_args.n_crops", "model.init_args.n_crops"),
)
INSTANTIATE_LINKS: tuple[tuple[str, str], ...] = (
    ("data.num_classes", "model.init_args.num_classes"),
    ("data.class_names", "model.init_args.class_names"),
)

#: Modules whose classes resolve by short name in configs (``class_path: FinetuneModule``):
#: importing them makes their classes known to jsonargparse; add one to give its classes one.
SHORT_NAME_MODULES: list[str] = [
    *(f"dsm_lightning.modules.{name}" for name in (
        "base", "moco", "dsm", "dsm_intra", "dsm_triplet", "be", "fame", "finetune", "retrieval")),
    "dsm_lightning.data.datamodule",
    *(f"dsm_lightning.disturb.{name}" for name in ("triplet", "background_erasing", "fame")),
    *(f"dsm_lightning.callbacks.{name}" for name in ("knn", "media", "export", "progress")),
]


def import_public_classes() -> None:
    """Import ``SHORT_NAME_MODULES`` so jsonargparse resolves their short class names."""
    for module in SHORT_NAME_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - partial installs
            pass


class DSMArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` with :class:`DSMHelpFormatter`'s help (also ``--model.help
    X``), whose class instantiators (Lightning's record a module's hyper-parameters, links
    included) see only the applied links whose target argument the class takes."""

    def __init__(self, *args: Any, formatter_class: type = DSMHelpFormatter, **kwargs: Any):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def add_instantiator(self, instantiator: Callable[..., Any], class_type: type,
                         subclasses: bool = True, prepend: bool = False) -> None:
        """jsonargparse's ``add_instantiator``, ``instantiator`` behind the links filter."""

        def accepted_links(cls: type, *args: Any, applied_instantiation_links: dict,
                           **kwargs: Any) -> Any:
            names = init_parameters(cls)
            links = {key: value for key, value in applied_instantiation_links.items()
                     if key.rpartition(".")[2] in names}
            return instantiator(cls, *args, applied_instantiation_links=links, **kwargs)

        super().add_instantiator(accepted_links, class_type, subclasses, prepend)


class DSMCLI(LightningCLI):
    """LightningCLI with the package's links (``PARSE_LINKS``, ``INSTANTIATE_LINKS``),
    Trainer defaults and smoke overlays.

    Args:
        *args: LightningCLI's arguments.
        smoke: apply the smoke overlays of :mod:`dsm_lightning.smoke` after parsing; None:
            when ``DSM_SMOKE`` is set.
        **kwargs: LightningCLI's keyword arguments.
    """

    def __init__(self, *args: Any, smoke: bool | None = None, **kwargs: Any) -> None:
        self.smoke = smoke_enabled() if smoke is None else smoke
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link values shared by data and model so they are written once."""
        for source, target in PARSE_LINKS:
            parser.link_arguments(source, target, apply_on="parse")
        for source, target in INSTANTIATE_LINKS:
            parser.link_arguments(source, target, apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args``; in a smoke run, then each overlay on top as one more config
        (:func:`dsm_lightning.smoke.merge`), and say so in one line."""
        super().parse_arguments(parser, args)
        command = self.config.get("subcommand")  # None (run=False): .get(None, x) gives x
        names = smoke.overlays_for(self.config.get(command, self.config)) if self.smoke else []
        for name in names:
            section = self.config.get(command, self.config)
            overlay = {key: smoke.merge(section.get(key), value)
                       for key, value in smoke.load_overlay(name).items()}
            self.config = parser.parse_object({command: overlay} if command else overlay,
                                              self.config)
        if names:
            smoke.announce(smoke.smoke_notice(names))

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The Trainer with the package's defaults where the config has none: ``EncoderExport``
        (``encoder.pt`` in the log dir; says where fit's outputs went), a progress bar writing
        plain lines off a terminal, ``save_last=True`` on the first checkpoint callback."""
        from pytorch_lightning.callbacks import ProgressBar

        from dsm_lightning.callbacks.export import EncoderExport
        from dsm_lightning.callbacks.progress import default_progress_bar

        section = self.config_init.get(str(self.subcommand), self.config_init)
        config = {**(section.get("trainer") or {}), **kwargs}
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
        """Mark the classes built: what fails from now on fails while running them."""
        CLASSES_BUILT.set(True)


class _ParseOnlyCLI(DSMCLI):
    """``DSMCLI`` that parses and validates but builds nothing (see ``parse_config``)."""

    def instantiate_classes(self) -> None:
        self.config_init = Namespace()

    def after_instantiate_classes(self) -> None:
        pass


def _cli_kwargs(args: Sequence[str] | None, run: bool) -> dict[str, Any]:
    parser_kwargs: dict[str, Any] = {  # no exit on error: dsm's main prints one short line
        "prog": "dsm", "exit_on_error": False,
        "description": "dsm-lightning: DSM video SSL pretraining, fine-tuning and retrieval.",
        **{name: {"exit_on_error": False, "epilog": HELP_EPILOG.format(cmd=name)}
           for name in DSMCLI.subcommands()},
    }
    return dict(
        parser_class=DSMArgumentParser, parser_kwargs=parser_kwargs,
        model_class=pl.LightningModule, datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True, subclass_mode_data=True, trainer_defaults=DEFAULT_TRAINER,
        seed_everything_default=0, save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the modules build their optimiser from arguments
        args=args if args is None or isinstance(args, (dict, Namespace)) else list(args),
        run=run)


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> DSMCLI:
    """Build (and by default run) the ``dsm`` CLI; returns it (``model``, ``datamodule``,
    ``trainer``).

    Args:
        args: Command-line arguments (or a config dict); ``None`` reads ``sys.argv``. With
            ``run=True`` the first one is the subcommand (``fit``, ``test``, ...).
        run: Run the subcommand; ``False`` parses ``args`` (no subcommand) and builds the
            model, data module and trainer only.

    Raises:
        jsonargparse.ArgumentError: The arguments or config files do not parse.
    """
    import_public_classes()
    return DSMCLI(**_cli_kwargs(args, run))


def parse_config(args: Sequence[str], smoke: bool = False) -> Namespace:
    """The parsed configuration (``cfg.model.class_path``, ...), checked against the chosen
    classes' signatures, without building any class or touching data (links apply at parse
    time only: ``num_classes`` is filled at instantiation).

    Args:
        args: Arguments without subcommand, e.g. ``["--config", "my_config.yaml"]``.
        smoke: apply the smoke overlays as ``DSM_SMOKE=1`` would (default: as written).

    Raises:
        jsonargparse.ArgumentError: Unknown key, wrong type or missing config file.
    """
    import_public_classes()
    return _ParseOnlyCLI(**_cli_kwargs(args, run=False), smoke=smoke).config
