"""What a source is and the registry of sources (standard library and the leaf ``registry``
at import time).

A source is a small class that knows where a dataset's videos are and how they split:
``read()`` returns a ``SourceSplits`` (records per split, class names, dropped entries) and
``prepare()`` creates or fetches files once (the synthetic source writes its videos there).
A source also says how it is read (``build_dataset`` / ``build_loader``, map-style files by
default; their imports of torch and the datasets happen when they are called).
``register_source("name")`` makes a class available by name to
``VideoDataModule(source="name")`` and to YAML configs; an instance works too, registered or
not.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

if TYPE_CHECKING:  # annotations only: torch and the loaders are imported when reading
    from torch.utils.data import DataLoader, Dataset

    from dsm_lightning.data.loaders import LoaderSettings

from dsm_lightning.registry import Registry

__all__ = [
    "AnnotationError", "SkippedItem", "SourceSplits", "VideoRecord", "VideoSource",
    "create_source", "drop_missing", "list_sources", "register_source", "source_class",
]


class AnnotationError(ValueError):
    """An annotation file is missing or malformed (the message names the file and line)."""


class VideoRecord(NamedTuple):
    """One video of a split.

    Attributes:
        path: Video file path.
        label: Class index, -1 when unknown (e.g. unlabelled test sets).
        video_id: Identifier (path relative to the dataset root or YouTube id).
        start_sec: Start of the labelled segment in an untrimmed video, or None.
        end_sec: End of the labelled segment, or None.
    """

    path: str
    label: int
    video_id: str
    start_sec: float | None = None
    end_sec: float | None = None


class SkippedItem(NamedTuple):
    """An entry dropped while reading a layout.

    Attributes:
        split: Split the entry belonged to.
        item: The file (or annotation line) concerned.
        reason: Why it was dropped.
    """

    split: str
    item: str
    reason: str


class SourceSplits(NamedTuple):
    """Everything a source found.

    Attributes:
        splits: Records per split name (``"train"``, ``"val"``, ``"test"``, ...).
        class_names: Class names; index = label.
        skipped: Entries dropped (unknown class, missing file).
    """

    splits: dict[str, list[VideoRecord]]
    class_names: list[str]
    skipped: list[SkippedItem]


class VideoSource:
    """Base class of the data sources.

    Subclasses take their settings as constructor arguments of plain types (so LightningCLI
    can build them from YAML) and check them there, without touching files; they implement
    ``read``, and ``prepare`` / ``class_names`` / ``adopt_seed`` when the defaults do not fit.

    A source also says how it is read. The defaults read files with map-style datasets
    (``build_dataset``) and samplers (``build_loader``); a streamed format
    (``StreamingSource``, e.g. ``source="shards"``) overrides both and the two flags.

    Attributes:
        name: The registry name (set by ``register_source``; empty for unregistered classes).
        records_are_files: The records' paths are files: the data module drops the missing
            ones (``drop_missing``) under its ``on_error`` policy.
        fixed_splits: The splits are fixed by the source (``val_split`` must be 0).
    """

    name: ClassVar[str] = ""
    records_are_files: ClassVar[bool] = True
    fixed_splits: ClassVar[bool] = False

    def prepare(self) -> None:
        """Create or fetch the files once, before ``read`` (one process per node).

        ``VideoDataModule.prepare_data`` calls it. Default: nothing to do.
        """

    def read(self) -> SourceSplits:
        """Read the layout: records per split, class names and the entries dropped.

        Missing video files may be listed; the data module drops them (``drop_missing``)
        under its ``on_error`` policy.

        Returns:
            The ``SourceSplits``.

        Raises:
            AnnotationError: An annotation file is missing or malformed.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement read()")

    def class_names(self) -> list[str]:
        """Class names (index = label), wanted right after construction (the CLI links
        ``num_classes``). Default: ``read().class_names``; override when that is costly.
        """
        return list(self.read().class_names)

    def adopt_seed(self, seed: int) -> None:
        """Receive the data module's seed (sources built without their own seed use it).

        Args:
            seed: The data module's seed. Default: ignored (no randomness).
        """

    def build_dataset(
        self, kind: str, records: list[VideoRecord], evaluation: bool, **kwargs: Any
    ) -> Dataset:
        """The dataset of a split. Default: the map-style dataset of ``kind`` over the files.

        Args:
            kind: ``"pretrain"`` (``PretrainClipDataset``), ``"clip"``
                (``LabelledClipDataset``) or ``"multiview"`` (``MultiViewClipDataset``):
                ``datasets.DATASET_KINDS``.
            records: The split's records (from ``read()``).
            evaluation: An evaluation dataset (bad videos left out, not replaced).
            **kwargs: The dataset class's arguments (``split`` names the split).

        Returns:
            A ``torch.utils.data.Dataset`` of the batch contract's items
            (docs/architecture.md).

        Raises:
            ValueError: Unknown ``kind``.
        """
        from dsm_lightning.data.datasets import clip_dataset

        return clip_dataset(kind, records, **kwargs)

    def build_loader(self, dataset: Dataset, settings: LoaderSettings) -> DataLoader:
        """The loader of a dataset from ``build_dataset``. Default: ``loaders.map_loader``.

        Args:
            dataset: What ``build_dataset`` returned.
            settings: The data module's ``loaders.LoaderSettings``.

        Returns:
            A ``DataLoader``; the training loader (``settings.training``) is resumable
            (``state_dict`` / ``load_state_dict``: ``{"epoch", "batches"}``).
        """
        from dsm_lightning.data.loaders import map_loader

        return map_loader(dataset, settings)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={value!r}" for key, value in vars(self).items() if not key.startswith("_")
        )
        return f"{type(self).__name__}({shown})"


S = TypeVar("S", bound=type)
_SOURCES: Registry[type[VideoSource]] = Registry("source")


def register_source(name: str, *, overwrite: bool = False) -> Callable[[S], S]:
    """Class decorator: make a ``VideoSource`` subclass available under ``name``.

    Example::

        @register_source("my_csv")
        class MyCSV(VideoSource):
            def __init__(self, root: str, annotations: str) -> None: ...
            def read(self) -> SourceSplits: ...

        VideoDataModule(source="my_csv", root="/data", annotations="/data/videos.csv")

    The package's one rule for a taken name (:mod:`dsm_lightning.registry`): a class
    defined again under the same module and name (a re-run notebook cell, a reloaded
    module) replaces its earlier definition; any other class needs a free name.

    Args:
        name: The registry name (``source: name`` in YAML).
        overwrite: Replace a source already registered under ``name``.

    Returns:
        The decorator (it returns the class unchanged, with ``name`` set).

    Raises:
        ValueError: ``name`` is empty or taken by another class (without ``overwrite``), or
            the decorated object is not a ``VideoSource`` subclass.
    """
    register = _SOURCES.register(name, overwrite=overwrite)

    def decorator(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, VideoSource)):
            raise ValueError(f"register_source({name!r}) decorates VideoSource subclasses, got {cls!r}")
        register(cls)
        cls.name = name
        return cls

    return decorator


def list_sources() -> list[str]:
    """Registered source names, sorted."""
    return sorted(_SOURCES.names())


def source_class(name: str) -> type[VideoSource]:
    """The class registered under ``name``.

    Raises:
        ValueError: Unknown name (the message lists the registered ones).
    """
    return _SOURCES.get(name)


def create_source(name: str, **kwargs: Any) -> VideoSource:
    """Build the source registered under ``name``.

    ``None`` values are dropped so the source's own defaults apply.

    Args:
        name: Registry name.
        **kwargs: Constructor arguments.

    Returns:
        The source.

    Raises:
        ValueError: Unknown name, an argument the source does not accept, a required argument
            missing (each named), or an invalid value (raised by the source).
    """
    cls = source_class(name)
    given = {key: value for key, value in kwargs.items() if value is not None}
    parameters = dict(inspect.signature(cls.__init__).parameters)
    parameters.pop("self", None)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(given) - set(parameters))
        if unknown:
            raise ValueError(
                f"source {name!r} does not accept {', '.join(unknown)} (its arguments: "
                f"{', '.join(parameters) or 'none'})"
            )
    missing = [
        key for key, p in parameters.items()
        if p.default is inspect.Parameter.empty and key not in given
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if missing:
        raise ValueError(f"source {name!r} needs {', '.join(missing)}")
    return cls(**given)


def drop_missing(source: SourceSplits) -> SourceSplits:
    """Move records whose file does not exist into ``skipped``.

    Args:
        source: Parsed layout.

    Returns:
        The layout with only existing files in ``splits``.
    """
    splits: dict[str, list[VideoRecord]] = {}
    skipped = list(source.skipped)
    for name, records in source.splits.items():
        kept = []
        for record in records:
            if os.path.isfile(record.path):
                kept.append(record)
            else:
                skipped.append(SkippedItem(name, record.path, "file not found"))
        splits[name] = kept
    return SourceSplits(splits, source.class_names, skipped)
