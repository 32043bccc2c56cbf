"""A data source of your own, registered by name: videos listed in one CSV file.

Many datasets ship as a table rather than a folder tree. ``CSVPathsSource`` reads
``path,label,split`` rows (paths relative to ``root``), with no change to the library: a
small ``VideoSource`` subclass with a ``read()`` method, made known by name with
``@register_source("csv_paths")``::

    import examples.custom_source  # registers "csv_paths"
    from dsm_lightning import VideoDataModule

    data = VideoDataModule(source="csv_paths", root="/data/clips",
                           annotations="/data/clips/videos.csv")

``root`` and ``annotations`` are the data module's location arguments, handed to the source's
constructor (an argument the source does not take, e.g. ``test_root``, is an error naming
it). An instance works too: ``VideoDataModule(source=CSVPathsSource(root, csv))``.

From a YAML config, give the class path (the ``dsm`` command imports the module, which
registers the name)::

    data:
      class_path: VideoDataModule
      init_args:
        source:
          class_path: examples.custom_source.CSVPathsSource
          init_args: {root: /data/clips, annotations: /data/clips/videos.csv}

Run from the repository root (the CSV lists the synthetic source's videos, so no download)::

    python examples/custom_source.py              # writes the CSV, pretrains DSM on it
    DSM_SMOKE=1 python examples/custom_source.py  # the same, shrunk: seconds

Writes ``outputs/examples/custom_source/`` (``videos.csv``, ``metrics.csv``), relative to
where it runs; the listed videos are the synthetic source's, in its cache.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsm_lightning.data.sources import (
    AnnotationError,
    SourceSplits,
    VideoRecord,
    VideoSource,
    register_source,
)

# Run as a file (python examples/<name>.py): the repository root makes `examples` importable.
if not __package__ and (root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, root)
from examples import _common as common

__all__ = ["CSVPathsSource", "main", "write_csv"]


@register_source("csv_paths")
class CSVPathsSource(VideoSource):
    """Videos listed in a CSV file with the columns ``path``, ``label`` and ``split``.

    Classes are the sorted labels of the ``train`` rows; rows of other splits whose label
    is not a train class get ``label = -1``.

    Args:
        root: Directory the paths are relative to.
        annotations: The CSV file.
    """

    def __init__(self, root: str, annotations: str) -> None:
        self.root, self.annotations = root, annotations

    def read(self) -> SourceSplits:
        """Rows -> records per split (the data module drops the missing files).

        Raises:
            AnnotationError: The file is missing or lacks a column.
        """
        if not os.path.isfile(self.annotations):
            raise AnnotationError(f"{self.annotations}: annotation file not found")
        with open(self.annotations, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and not {"path", "label", "split"} <= set(rows[0]):
            raise AnnotationError(f"{self.annotations}, line 1: expected path,label,split")
        names = sorted({row["label"] for row in rows if row["split"] == "train"})
        index = {name: i for i, name in enumerate(names)}
        splits: dict[str, list[VideoRecord]] = {}
        for row in rows:
            record = VideoRecord(os.path.join(self.root, row["path"]),
                                 index.get(row["label"], -1), row["path"])
            splits.setdefault(row["split"], []).append(record)
        return SourceSplits(splits, names, [])


def write_csv(s: dict[str, Any], path: Path) -> tuple[str, Path]:
    """List the synthetic source's train / val / test videos in a ``path,label,split`` CSV.

    Args:
        s: the example settings (``common.settings``).
        path: the CSV file to write.

    Returns:
        ``(root, path)``: the directory the listed paths are relative to, and the CSV.
    """
    synthetic = common.synthetic_source(s)
    result = synthetic.read()  # writes the videos on first use
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for split in ("train", "val", "test"):
            for record in result.splits[split]:
                writer.writerow([record.video_id, result.class_names[record.label], split])
    return synthetic.directory, path


# ------------------------------------------------------------------------------- script
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the CSV, pretrain DSM for a few steps on ``source="csv_paths"``; return results."""
    import pytorch_lightning as pl

    from dsm_lightning import DSMLightningModule, VideoDataModule

    parser = common.example_parser(__doc__.splitlines()[0], "outputs/examples/custom_source")
    args = parser.parse_args(argv)
    s = common.settings(args.fast)
    out = Path(args.out_dir)
    root, table = write_csv(s, out / "videos.csv")

    pl.seed_everything(args.seed, verbose=False)
    data = VideoDataModule(
        source="csv_paths", root=root, annotations=str(table), num_frames=s["num_frames"],
        stride=s["stride"], frame_size=s["synthetic_size"], crop_size=s["crop_size"],
        batch_size=s["batch_size"], num_workers=0, seed=args.seed,
    )
    model = DSMLightningModule(
        backbone="tiny3d", backbone_kwargs={"width": s["width"]}, optimizer="adamw", lr=1e-3,
        temperature=0.1, momentum=0.99, queue_size=s["queue_size"],
    )
    trainer = common.example_trainer(out, s["epochs"], args.fast)
    trainer.fit(model, datamodule=data)
    logged = common.logged_metrics(trainer)
    sizes = {split: len(data.records(split)) for split in data.split_names}
    print(f"source {data.source!r}: classes {data.class_names}, videos per split {sizes}")
    print(f"last epoch: train/loss={logged.get('train/loss_epoch', float('nan')):.3f}")
    common.print_outputs(csv=table, metrics=out / "metrics.csv")
    return {"data": data, "model": model, "trainer": trainer, "metrics": logged,
            "sizes": sizes, "csv": table}


if __name__ == "__main__":
    main()
