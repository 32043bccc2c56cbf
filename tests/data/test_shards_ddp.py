"""Shards under DDP: 2 CPU processes (gloo) x 2 loader workers each, 2 epochs.

Every video is seen exactly once per epoch over all ranks and workers (each rank and
worker with its own videos), the order changes between epochs, and both ranks end with the
same weights and queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("litdata")

from dsm_lightning.data.sources import SyntheticSource  # noqa: E402
from dsm_lightning.prepare import prepare_shards  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "shards_ddp_script.py"
N_VIDEOS = 16  # 2 ranks x 2 workers x batch 2 x 2 batches


@pytest.mark.timeout(300)
def test_two_processes_two_workers_see_every_video_once_per_epoch(tmp_path):
    source = SyntheticSource(num_classes=2, videos_per_class=N_VIDEOS // 2,
                             eval_videos_per_class=1, num_frames=12, size=32,
                             cache_dir=str(tmp_path / "videos"))
    prepare_shards(source, str(tmp_path / "shards"), splits=["train"], chunk_bytes=20_000,
                   progress=False)
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "shards"), str(out)],
                            capture_output=True, text=True, timeout=240, env=env,
                            cwd=SCRIPT.parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]

    orders = []
    for epoch in (0, 1):
        groups = {(rank, worker): [i for e, w, i in state["seen"] if e == epoch and w == worker]
                  for rank, state in enumerate(ranks) for worker in (0, 1)}
        assert all(len(videos) == N_VIDEOS // 4 for videos in groups.values()), groups
        counts = Counter(i for videos in groups.values() for i in videos)
        assert sorted(counts) == list(range(N_VIDEOS)) and set(counts.values()) == {1}, groups
        orders.append(groups)
    assert orders[0] != orders[1]  # reshuffled between epochs

    assert ranks[0]["ptr"] == ranks[1]["ptr"] == (2 * N_VIDEOS) % 8
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    for key, value in ranks[0]["params"].items():
        assert torch.equal(ranks[1]["params"][key], value), key
