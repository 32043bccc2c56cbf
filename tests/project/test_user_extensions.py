"""Extending the library from user code, with no library change: a new view builder and a new
source, in a module of the working directory, chosen by ``class_path`` in a ``dsm fit``
config and run by the installed console script (no PYTHONPATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from helpers.video_fixtures import make_known_video

USER_MODULE = '''
"""A user's extensions: nothing here is part of dsm-lightning."""
from pathlib import Path

import torch

from dsm_lightning.data.sources import SourceSplits, VideoRecord, VideoSource, register_source
from dsm_lightning.disturb import ViewBuilder


class ReversedPositive(ViewBuilder):
    """The positive is an independent augmentation of the clip played backwards."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self._set_seed(seed)

    def build(self, video, video_shift, transform, size, generator):
        batch, device = video.shape[0], video.device
        anchor = transform.apply(video[:, None], transform.sample(batch, generator, device), size)
        positive = transform.apply(video.flip(2)[:, None],
                                   transform.sample(batch, generator, device), size)
        Path("views_built.txt").write_text(f"{tuple(anchor.shape)} {tuple(positive.shape)}")
        return {"anchor": anchor[:, 0], "positive": positive[:, 0]}


@register_source("csv_videos")
class CsvVideos(VideoSource):
    """``path,label,split`` lines of a CSV file, paths relative to it."""

    def __init__(self, csv: str) -> None:
        self.csv = csv

    def read(self) -> SourceSplits:
        base, splits, names = Path(self.csv).parent, {}, []
        for line in Path(self.csv).read_text().splitlines():
            path, label, split = line.split(",")
            names.append(label) if label not in names else None
            splits.setdefault(split, []).append(
                VideoRecord(str(base / path), names.index(label), path))
        return SourceSplits(splits, names, [])
'''


def test_a_users_view_builder_and_source_run_through_dsm_fit(tmp_path: Path):
    work = tmp_path / "work"
    (work / "videos").mkdir(parents=True)
    (work / "my_ext.py").write_text(USER_MODULE)
    lines = []
    for i in range(8):
        make_known_video(str(work / "videos" / f"v{i}.mp4"), num_frames=16, height=32, width=32)
        lines.append(f"videos/v{i}.mp4,{'left' if i % 2 else 'right'},train")
    (work / "videos.csv").write_text("\n".join(lines) + "\n")
    config = {
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_model_summary": False,
                    "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                               "init_args": {"save_dir": "runs", "name": "mine", "version": ""}}},
        "model": {"class_path": "MoCoModule", "init_args": {
            "backbone": "tiny3d", "backbone_kwargs": {"width": 4}, "queue_size": 8,
            "optimizer": "adamw", "lr": 1e-3}},
        "data": {"class_path": "VideoDataModule", "init_args": {
            "source": {"class_path": "my_ext.CsvVideos", "init_args": {"csv": "videos.csv"}},
            "task": "pretrain", "num_frames": 4, "stride": 2, "frame_size": 32, "crop_size": 28,
            "batch_size": 4, "num_workers": 0,
            "augment": {"class_path": "my_ext.ReversedPositive", "init_args": {"seed": 0}}}},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dsm = shutil.which("dsm", path=str(Path(sys.executable).parent))
    done = subprocess.run([dsm, "fit", "--config", "config.yaml"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert (work / "views_built.txt").read_text() == "(4, 1, 3, 4, 28, 28) (4, 1, 3, 4, 28, 28)"
    run = work / "runs" / "mine"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["augment"]["class_path"] == "my_ext.ReversedPositive"
    assert saved["data"]["init_args"]["source"]["class_path"] == "my_ext.CsvVideos"
    encoder = torch.load(run / "encoder.pt", weights_only=True)
    assert encoder["crop_size"] == 28 and encoder["method"] == "moco"
