"""Multi-node launch: examples/launch/ on two "nodes" of this machine.

``examples/launch/torchrun.sh`` is run twice on localhost (``NNODES=2``, ``NODE_RANK`` 0 and
1, one CPU process per node, gloo), with the shipped launch config plus an override that
shrinks the run (tiny model, a few steps, tiny shards). Both nodes must finish, Lightning
must see torchrun's environment with 2 nodes, the ranks must have trained on different
videos and end with the same weights and queue. The SLURM script and the launch config are
checked for syntax and against the real parser.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.fit_configs import csv_logger_yaml

pytest.importorskip("litdata")

from dsm_lightning import cli  # noqa: E402
from dsm_lightning.data.sources import SyntheticSource  # noqa: E402
from dsm_lightning.prepare import prepare_shards  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "examples" / "launch"
STEPS = 2  # one epoch: 8 videos, 2 ranks x 2 batches of 2

OVERRIDE = """\
trainer:
  accelerator: cpu
  precision: 32-true
  max_steps: {steps}
{logger}  callbacks:
    - class_path: launch_probe.RankState
      init_args: {{out: "{run}"}}
model:
  init_args:
    backbone: tiny3d
    backbone_kwargs: {{width: 4, norm: group}}
    queue_size: 8
    sync_batchnorm: false
data:
  init_args:
    root: "{shards}"
    cache_dir: null
    num_frames: 4
    stride: 2
    frame_size: 32
    crop_size: 32
    batch_size: 2
    num_workers: 0
    pin_memory: false
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_launch_config_parses_and_scripts_are_valid_shell():
    cfg = cli.parse_config(["--config", str(LAUNCH / "pretrain_k400_shards.yaml")])
    assert cfg.data.init_args.source == "shards" and cfg.trainer.strategy == "ddp"
    for script in ("torchrun.sh", "slurm.sbatch"):
        assert subprocess.run(["bash", "-n", str(LAUNCH / script)]).returncode == 0
        assert os.access(LAUNCH / script, os.X_OK)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.timeout(300)
def test_two_nodes_on_localhost_with_torchrun(tmp_path):
    source = SyntheticSource(num_classes=2, videos_per_class=4, eval_videos_per_class=1,
                             num_frames=12, size=32, cache_dir=str(tmp_path / "videos"))
    prepare_shards(source, str(tmp_path / "shards"), splits=["train"], progress=False)
    run = tmp_path / "run"
    run.mkdir()
    override = tmp_path / "override.yaml"
    override.write_text(OVERRIDE.format(steps=STEPS, logger=csv_logger_yaml(run), run=run,
                                        shards=tmp_path / "shards"))
    work = tmp_path / "work"  # the callback's module (class_path: launch_probe.RankState) lies
    work.mkdir()              # in the working directory, as a user's would: no PYTHONPATH
    shutil.copy(REPO / "tests" / "helpers" / "launch_probe.py", work / "launch_probe.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", NNODES="2",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), GPUS_PER_NODE="1",
               PYTHON=sys.executable, DSM_PROGRESS="off",
               CONFIG=str(LAUNCH / "pretrain_k400_shards.yaml"))
    nodes = [subprocess.Popen(["bash", str(LAUNCH / "torchrun.sh"), "--config", str(override)],
                              env={**env, "NODE_RANK": str(rank)}, cwd=work, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for rank in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=240)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    failed = {rank: output[-3000:] for rank, (node, output) in enumerate(zip(nodes, outputs))
              if node.returncode != 0}
    assert not failed, "\n".join(f"node {rank}:\n{text}" for rank, text in failed.items())

    ranks = [torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["node_rank"] for r in ranks] == [0, 1]
    for state in ranks:
        assert state["environment"] == "TorchElasticEnvironment"
        assert state["world_size"] == 2 and state["global_step"] == STEPS
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(8))  # split, all seen
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    for key, value in ranks[0]["params"].items():
        assert torch.equal(ranks[1]["params"][key], value), key
