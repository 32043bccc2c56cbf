"""benchmarks/gpu_smoke.py: fake layouts every source reads, configs kept at the paper's
settings for the GPU, and a tiny CPU run (--cpu-smoke) that says no GPU figure was recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from dsm_lightning.data.sources import create_source

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds benchmarks/
from benchmarks import gpu_smoke  # noqa: E402


@pytest.mark.parametrize("source", ["ucf101", "hmdb51", "kinetics_csv", "ssv2", "diving48"])
def test_fake_layouts_are_read_by_their_source(tmp_path, source):
    videos = gpu_smoke.FakeVideos(frames=6, height=16, width=20)
    location = gpu_smoke.write_layout(source, tmp_path, videos, n_train=5, n_test=3)
    result = create_source(source, **location).read()
    assert len(result.class_names) == 3 and not result.skipped
    assert len(result.splits["train"]) == 5 and len(result.splits["test"]) == 3
    assert all(Path(r.path).is_file() for split in result.splits.values() for r in split)


def test_gpu_configs_keep_the_paper_settings(tmp_path):
    """Without --cpu-smoke only the data location, the steps and the logs change; a config
    that needs an encoder.pt gets one of the backbone it (or its pretraining config) names."""
    layouts = {s: {"root": f"/fake/{s}", "annotations": f"/fake/{s}/ann"}
               for s in ("ucf101", "hmdb51", "kinetics_csv", "ssv2", "diving48")}
    names = {p.stem for p in gpu_smoke.paper_configs()}
    assert {"pretrain_ucf101_i3d", "finetune_ucf101_i3d", "retrieval_ucf101_split1",
            "pretrain_ssv2_i3d", "pretrain_diving48_i3d"} <= names
    path = gpu_smoke.CONFIG_DIR / "retrieval_ucf101_split1.yaml"
    config, command, facts = gpu_smoke.prepare_config(path, tmp_path, 5, cpu=False,
                                                      layouts=layouts)
    original = yaml.safe_load(path.read_text())["data"]["init_args"]
    data = config["data"]["init_args"]
    assert command == "test" and facts["backbone"] == "c3d"
    for key in ("num_frames", "stride", "frame_size", "crop_size", "batch_size", "n_clips"):
        assert data[key] == original[key], key
    assert data["root"] == "/fake/ucf101" and config["trainer"]["accelerator"] == "gpu"
    encoder = Path(config["model"]["init_args"]["pretrained"])
    assert encoder.parent == tmp_path / "encoders" and encoder.is_file()
    # no backbone in the config: the pretraining config named by its encoder path says it
    path = gpu_smoke.CONFIG_DIR / "finetune_ucf101_split1.yaml"
    _, command, facts = gpu_smoke.prepare_config(path, tmp_path, 5, cpu=False, layouts=layouts)
    assert (command, facts["backbone"]) == ("fit", "slow_r50")


def test_cpu_smoke_runs_configs_and_records_no_gpu_figure(tmp_path):
    out = tmp_path / "smoke.json"
    code = gpu_smoke.main(["--cpu-smoke", "--steps", "2", "--out", str(out),
                           "--workdir", str(tmp_path / "work"),
                           "--only", "pretrain_ucf101_i3d", "retrieval_ucf101_split1"])
    result = json.loads(out.read_text())
    assert code == 0
    assert result["gpu_figures_recorded"] is False and "NOT recorded" in result["note"]
    rows = {row["config"]: row for row in result["configs"]}
    assert set(rows) == {"pretrain_ucf101_i3d", "retrieval_ucf101_split1"}
    for row in rows.values():
        assert row["status"] == "ok" and row["error"] is None, row
        assert row["peak_gpu_memory_gib"] is None and row["step_time_s"] > 0
    assert len(rows["pretrain_ucf101_i3d"]["step_times_s"]) == 2  # --steps training steps
    assert rows["retrieval_ucf101_split1"]["command"] == "test"
    recall = tmp_path / "work" / "retrieval" / "retrieval_ucf101_split1" / "version_0"
    assert (recall / "recall.json").is_file()
    edited = yaml.safe_load((tmp_path / "work" / "configs" / "pretrain_ucf101_i3d.yaml")
                            .read_text())
    assert edited["data"]["init_args"]["root"].startswith(str(tmp_path / "work" / "data"))


def test_unknown_config_names_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        gpu_smoke.main(["--cpu-smoke", "--only", "pretrain_nope", "--out", str(tmp_path / "x")])
