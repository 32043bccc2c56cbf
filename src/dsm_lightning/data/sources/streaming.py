"""``StreamingSource``: the base of sources read as a stream (packed formats such as shards).

A streamed source differs from a file source only in how it says it is read (see
``VideoSource``): its records need not be files, its splits are fixed when the data is
packed, and it builds its own datasets and loaders.
"""

from __future__ import annotations

from typing import ClassVar

from dsm_lightning.data.sources.base import VideoSource

__all__ = ["StreamingSource"]


class StreamingSource(VideoSource):
    """A source whose videos are streamed rather than read from one file per record.

    ``VideoDataModule`` reads its records like any source's (``read()``: class names, split
    sizes, labels; the files are not checked, so records need not be files), then asks
    ``build_dataset`` for each dataset and ``build_loader`` for each loader, as for every
    source; a subclass overrides them (``super()`` gives the map-style dataset over the
    records' files and the data module's samplers). A streamed training dataset must
    yield the items of the map-style dataset it replaces (``VideoDataset.load_item`` of the
    kwargs it is given), split across processes and workers, each video once per epoch;
    its training loader is resumable through ``state_dict`` / ``load_state_dict``
    (``{"epoch", "batches"}``) and counts the batches it yields (``loaders.PassPosition``).
    ``val_split`` must be 0 (the splits are fixed when the data is packed).

    See docs/scale.md for the hook and ``ShardSource`` for the worked example.
    """

    records_are_files: ClassVar[bool] = False
    fixed_splits: ClassVar[bool] = True
