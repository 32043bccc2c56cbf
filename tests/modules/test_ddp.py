"""DDP with 2 CPU processes (gloo) against 1 process on the same global batches.

Both runs use ``tiny3d`` with GroupNorm: BatchNorm normalises each rank's half batch with
its own statistics, so with BatchNorm the 2-process loss legitimately differs from the
1-process one (torch's SyncBatchNorm, the fix, is GPU-only). Without BatchNorm every
quantity is a mean over samples, DDP averages the rank gradients and the keys are gathered
in rank order (each rank gets a contiguous half of every global batch), so losses,
parameters, EMA weights and the queue must match the single process up to float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "pretrain_ddp_script.py"


def _run(out: Path, devices: int, norm: str = "group") -> list[dict]:
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), str(devices), norm],
                            capture_output=True, text=True, timeout=240, env=env,
                            cwd=SCRIPT.parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(devices)]


@pytest.mark.timeout(300)
def test_two_processes_match_one_process(tmp_path):
    (single,) = _run(tmp_path / "one", devices=1)
    rank0, rank1 = _run(tmp_path / "two", devices=2)
    # completes, and every rank holds the same queue (keys gathered before enqueue)
    assert rank0["ptr"] == rank1["ptr"] == single["ptr"] == (8 * 4) % 12
    assert torch.equal(rank0["queue"], rank1["queue"])
    torch.testing.assert_close(rank0["queue"], single["queue"], rtol=0, atol=1e-5)
    # same global batch and seed: the mean of the rank losses is the 1-process loss
    two_process_loss = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])]
    assert two_process_loss == pytest.approx(single["losses"], abs=1e-5)
    assert rank0["losses"] != pytest.approx(rank1["losses"], abs=1e-3)  # ranks saw different data
    for key, value in single["params"].items():
        torch.testing.assert_close(rank0["params"][key], value, rtol=0, atol=1e-5, msg=key)
        torch.testing.assert_close(rank1["params"][key], rank0["params"][key], rtol=0, atol=0)
