"""Sharded videos: pack any source into LitData shards, stream them back (``source="shards"``).

Layout written by ``write_shards`` (``dsm prepare``) under one root (a local folder, to be
copied as is to an object store if wanted)::

    <root>/dsm_shards.json      the manifest: class names, every split's records, skipped
    <root>/<split>/index.json   a LitData dataset per split ...
    <root>/<split>/chunk-*.bin  ... whose samples are the videos' encoded bytes

A sample holds one video: ``video`` (the file's bytes, never decoded frames), its
``frame_index`` (``FrameIndex.to_array()`` as ``load_frame_index`` built it from the file),
``index`` (its position in the split's record list), ``label``, ``video_id``,
``num_frames`` and ``fps``. Samples are written in a seeded random order so that each chunk
mixes classes (a streamed batch draws from few chunks); the manifest maps each record to
its sample.

``ShardSource`` reads the manifest (from a local path or an object-store URL: ``s3://``,
``gs://``, ``azure://``, ``hf://``, ``local:``) and hands ``VideoDataModule`` datasets that
decode clips from the bytes with the file path's frame-exact reader and per-item
randomness: training streams (shuffled, split across processes and workers, resumable
mid-epoch), evaluation reads videos by position. LitData (``pip install
"dsm-lightning[shards]"``) is imported only when shards are written or read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from dsm_lightning.data.datasets import VideoSkippedWarning
from dsm_lightning.data.loaders import LoaderSettings
from dsm_lightning.data.sources import (
    SkippedItem,
    SourceSplits,
    VideoRecord,
    register_source,
)
from dsm_lightning.data.sources.streaming import StreamingSource
from dsm_lightning.data.video_io import VideoDecodeError, load_frame_index
from dsm_lightning.progress import track

__all__ = ["MANIFEST", "ShardSource", "chunk_size_bytes", "is_url", "read_manifest",
           "require_litdata", "write_shards"]

log = logging.getLogger(__name__)

#: Name of the manifest file at the root of a shard folder.
MANIFEST = "dsm_shards.json"
_FORMAT = 1
_URL_PREFIXES = ("s3://", "gs://", "azure://", "hf://", "local:", "r2://", "http://", "https://")
_RECORD_FIELDS = ("video_id", "label", "path", "start_sec", "end_sec", "position",
                  "num_frames", "fps")


def require_litdata() -> Any:
    """Import LitData (silencing its version check) or say how to install it.

    Returns:
        The ``litdata`` module.

    Raises:
        ImportError: LitData is not installed (the message gives the pip command).
    """
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
    try:
        import litdata
    except ImportError as err:
        raise ImportError(
            "sharded videos need LitData: pip install \"dsm-lightning[shards]\" "
            f"(or pip install litdata) ({err})"
        ) from err
    return litdata


def is_url(root: str) -> bool:
    """Whether ``root`` is an object-store URL (else a local path)."""
    return root.startswith(_URL_PREFIXES)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_url(root) else os.path.join(root, *parts)


def read_manifest(root: str, cache_dir: str | None = None) -> dict[str, Any]:
    """The manifest of a shard folder (downloaded first from an object store).

    Args:
        root: Local folder or object-store URL written by ``write_shards``.
        cache_dir: Local folder for downloads (None = a temporary folder).

    Returns:
        The manifest dict (``format``, ``class_names``, ``splits``, ``skipped``, ...).

    Raises:
        FileNotFoundError: No manifest at ``root``.
        ValueError: The manifest is not one this version reads.
    """
    if is_url(root):
        require_litdata()
        from litdata.streaming.downloader import get_downloader

        folder = cache_dir or tempfile.mkdtemp(prefix="dsm_shards_")
        os.makedirs(folder, exist_ok=True)
        local = os.path.join(folder, MANIFEST)
        try:
            get_downloader(root, folder, []).download_file(_join(root, MANIFEST), local)
        except Exception as err:  # each store raises its own error type
            raise FileNotFoundError(f"{_join(root, MANIFEST)}: cannot fetch the shard manifest "
                                    f"({err})") from err
    else:
        local = os.path.join(root, MANIFEST)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"{local}: no shard manifest (write shards with `dsm prepare`)")
    with open(local, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{_join(root, MANIFEST)}: shard format {manifest.get('format')!r}, this "
                         f"version reads format {_FORMAT}")
    return manifest


# --------------------------------------------------------------------------------- writing


def chunk_size_bytes(chunk_bytes: str | int) -> int:
    """Bytes of a chunk size given as ``"64MB"`` / ``"512kb"`` / ``"1G"`` or a number.

    Raises:
        ValueError: Not a positive size (the message names it).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(chunk_bytes).lower())
    if isinstance(chunk_bytes, bool) or match is None or float(match.group(1)) <= 0:
        raise ValueError(f"chunk_bytes must be a positive size such as '64MB' or 1000000, got "
                         f"chunk_bytes={chunk_bytes!r}")
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def _sample(record: VideoRecord, index: int) -> dict[str, Any]:
    """One shard sample: the file's bytes and its frame index (raises VideoDecodeError)."""
    frame_index = load_frame_index(record.path)
    with open(record.path, "rb") as handle:
        data = handle.read()
    return {"video": data, "frame_index": frame_index.to_array(), "index": index,
            "label": int(record.label), "video_id": record.video_id,
            "num_frames": frame_index.num_frames, "fps": float(frame_index.fps)}


def _write_split(
    name: str, records: list[VideoRecord], folder: str, chunk_bytes: int, seed: int,
    on_error: str, progress: bool,
) -> tuple[list[list[Any]], list[SkippedItem]]:
    """Write one split; returns (manifest records, skipped)."""
    from litdata.streaming.writer import BinaryWriter

    good: list[tuple[VideoRecord, Any]] = []
    skipped: list[SkippedItem] = []
    for record in track(records, desc=f"indexing {name}", unit="video", enabled=progress):
        try:  # demux only: checks the file is a readable video, caches its frame index
            good.append((record, load_frame_index(record.path)))
        except VideoDecodeError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping {record.path} ({name}): {err}", VideoSkippedWarning,
                          stacklevel=3)
            skipped.append(SkippedItem(name, record.path, str(err)))
    order = np.random.default_rng([seed, len(good)]).permutation(len(good))
    position = np.empty(len(good), dtype=np.int64)
    os.makedirs(folder)
    writer = BinaryWriter(folder, chunk_bytes=chunk_bytes)
    for written, index in enumerate(track(order.tolist(), desc=f"writing {name}", unit="video",
                                          enabled=progress)):
        writer.add_item(written, _sample(good[index][0], index))
        position[index] = written
    writer.done()
    writer.merge()
    rows = [[r.video_id, int(r.label), r.path, r.start_sec, r.end_sec, int(position[i]),
             info.num_frames, float(info.fps)] for i, (r, info) in enumerate(good)]
    return rows, skipped


def write_shards(
    source: SourceSplits,
    output: str,
    splits: Sequence[str] | None = None,
    chunk_bytes: str | int = "64MB",
    seed: int = 0,
    on_error: str = "skip",
    overwrite: bool = False,
    progress: bool = True,
    description: str = "",
) -> dict[str, Any]:
    """Pack the videos of ``source``'s splits into LitData shards under ``output``.

    Each video is checked and indexed (demux, no decoding), then its file's bytes are
    written with its frame index; unreadable videos are skipped (listed in the manifest)
    or raise. Records keep their order (a video's ``index`` is its position among the
    split's readable videos, as in ``VideoDataModule``), samples are shuffled with ``seed``.

    Args:
        source: The splits to pack (``VideoSource.read()`` or ``VideoDataModule``'s splits).
        output: New local folder (copy it to an object store afterwards if wanted).
        splits: Split names to write (None = every non-empty split).
        chunk_bytes: Target chunk size (``"64MB"``, or bytes).
        seed: Seed of the sample order.
        on_error: ``"skip"`` (warn, list in the manifest) or ``"raise"``.
        overwrite: Replace an existing ``output`` folder.
        progress: Progress bars / lines.
        description: Where the videos came from (kept in the manifest).

    Returns:
        The manifest written to ``<output>/dsm_shards.json`` plus ``seconds`` per split.

    Raises:
        ValueError: ``output`` exists (without ``overwrite``), is a URL, or a split is
            unknown or empty; ``on_error`` is invalid.
        VideoDecodeError: A video is unreadable and ``on_error="raise"``.
        ImportError: LitData is not installed.
    """
    chunk = chunk_size_bytes(chunk_bytes)
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got on_error={on_error!r}")
    if is_url(output):
        raise ValueError(f"output={output!r}: write shards to a local folder, then copy it to "
                         "the object store (e.g. aws s3 sync)")
    names = list(splits) if splits else [n for n, r in source.splits.items() if r]
    for name in names:
        if not source.splits.get(name):
            raise ValueError(f"split {name!r} has no videos; available: "
                             f"{[n for n, r in source.splits.items() if r]}")
    if os.path.exists(output):
        if not overwrite:
            raise ValueError(f"output={output!r} exists; pass overwrite=True (--overwrite) to "
                             "replace it")
        shutil.rmtree(output)
    litdata = require_litdata()
    os.makedirs(output)
    manifest: dict[str, Any] = {
        "format": _FORMAT, "library": f"litdata {litdata.__version__}", "seed": seed,
        "description": description, "class_names": list(source.class_names),
        "record_fields": list(_RECORD_FIELDS), "splits": {},
        "skipped": [list(item) for item in source.skipped],
    }
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        rows, skipped = _write_split(name, source.splits[name], os.path.join(output, name),
                                     chunk, seed, on_error, progress)
        seconds[name] = time.perf_counter() - start
        manifest["splits"][name] = {"records": rows}
        manifest["skipped"] += [list(item) for item in skipped]
        log.info("%s: %d videos in %.1fs (%d skipped)", name, len(rows), seconds[name],
                 len(skipped))
    with open(os.path.join(output, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return {**manifest, "seconds": seconds}


# --------------------------------------------------------------------------------- reading


@register_source("shards")
class ShardSource(StreamingSource):
    """Videos packed by ``dsm prepare`` (LitData shards), streamed from a folder or a URL.

    Training streams the shards: shuffled (chunk order and samples within a chunk, reseeded
    every epoch from ``seed`` and the epoch), split across processes and loader workers
    (each video once per epoch; up to ``processes x workers x batch_size`` videos of an
    epoch are left out so that every process gets the same number of full batches), and a
    run resumed mid-epoch continues with exactly the batches it had not seen. Evaluation
    reads videos by position (every process the whole split, like a file tree). Clips are
    decoded from the bytes with the same frame-exact reader and the same per-item
    randomness as the original files, so a video gives the same clips either way.

    Args:
        root: The folder ``dsm prepare`` wrote, or its copy on an object store
            (``s3://bucket/prefix``, ``gs://...``, ``azure://...``; credentials from the
            usual environment variables of each store).
        cache_dir: Local folder for chunks downloaded from an object store (None = LitData's
            default cache); unused for local folders.

    Raises:
        ValueError: ``root`` is empty.
    """

    def __init__(self, root: str, cache_dir: str | None = None) -> None:
        if not isinstance(root, str) or not root:
            raise ValueError(f"root must name the shard folder or URL, got root={root!r}")
        self.root, self.cache_dir = root, cache_dir
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """The shard manifest (read once)."""
        if self._manifest is None:
            cache = os.path.join(self.cache_dir, "manifest") if self.cache_dir else None
            self._manifest = read_manifest(self.root, cache)
        return self._manifest

    def split_dir(self, split: str) -> str:
        """Folder (or URL) of a split's LitData dataset."""
        return _join(self.root, split)

    def read(self) -> SourceSplits:
        """Records of every split (``path`` = ``<root>/<split>/<video_id>``, not a file)."""
        manifest = self.manifest
        splits = {}
        for name, split in manifest["splits"].items():
            splits[name] = [
                VideoRecord(_join(self.root, name, row[0]), int(row[1]), row[0], row[3], row[4])
                for row in split["records"]
            ]
        skipped = [SkippedItem(*item) for item in manifest.get("skipped", [])]
        return SourceSplits(splits, list(manifest["class_names"]), skipped)

    def class_names(self) -> list[str]:
        """Class names from the manifest."""
        return list(self.manifest["class_names"])

    def positions(self, split: str) -> list[int]:
        """Sample position of each record of ``split`` in its shards."""
        return [int(row[5]) for row in self.manifest["splits"][split]["records"]]

    def build_dataset(
        self, kind: str, records: list[VideoRecord], evaluation: bool, **kwargs: Any
    ) -> Any:
        """Training: a ``ShardStream``; evaluation: the map-style dataset with a
        ``ShardOpener`` (videos read by position)."""
        require_litdata()
        split = kwargs["split"]
        from dsm_lightning.data import shard_stream

        if kwargs.get("decoder", "pyav") != "pyav":
            raise ValueError(f"decoder={kwargs['decoder']!r}: shards decode with decoder='pyav'")
        opener = shard_stream.ShardOpener(self.split_dir(split), self.positions(split),
                                          self.cache_dir)
        clips = super().build_dataset(kind, records, evaluation, opener=opener, **kwargs)
        if evaluation:
            return clips
        return shard_stream.ShardStream(self.split_dir(split), clips, cache_dir=self.cache_dir)

    def build_loader(self, dataset: Any, settings: LoaderSettings) -> Any:
        """A ``ShardLoader`` for a ``ShardStream``; the map-style loader otherwise."""
        from dsm_lightning.data import shard_stream

        if not isinstance(dataset, shard_stream.ShardStream):
            return super().build_loader(dataset, settings)
        return shard_stream.ShardLoader.from_settings(dataset, settings)
