"""docs/reproduce.md and the configs it lists: a row and a config for every reference number
of docs/method.md, and configs that carry the public scripts' settings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from helpers.fit_configs import SCRIPT_CONFIGS

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "examples" / "configs"
DOC = ROOT / "docs" / "reproduce.md"
METHOD = ROOT / "docs" / "method.md"
# the reference numbers of docs/method.md (the public README): I3D top-1 and C3D recall@k
I3D_TOP1 = {"random init": (47.9, 29.6), "MoCo baseline": (62.3, 36.5),
            "DSM (triplet)": (70.7, 48.5), "DSM": (74.8, 52.5)}
C3D_RECALL = {"UCF101": (16.8, 33.4, 43.4, 54.6, 70.7), "HMDB51": (8.2, 25.9, 38.1, 52.0, 75.0)}


@pytest.fixture(scope="module")
def parse():
    from dsm_lightning import cli

    cli.import_public_classes()
    argv, sys.argv = sys.argv, ["dsm"]
    try:
        parser = cli._ParseOnlyCLI(**cli._cli_kwargs(
            ["--config", str(CONFIG_DIR / "retrieval_ucf101_split1.yaml")], run=False)).parser
    finally:
        sys.argv = argv

    def _parse(name: str):  # parsing builds nothing: no data, no view builder
        return parser.parse_args(["--config", str(CONFIG_DIR / f"{name}.yaml")])

    return _parse


def doc_rows() -> list[list[str]]:
    """The numbered table rows of docs/reproduce.md, split into cells."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_every_reference_number_has_a_row_with_configs_and_a_status():
    rows = doc_rows()
    assert [int(r[0]) for r in rows] == list(range(1, 19))
    i3d = {(r[1], r[4]): float(r[5]) for r in rows[:8]}
    assert i3d == {(m, d): v for m, (u, h) in I3D_TOP1.items()
                   for d, v in (("UCF101", u), ("HMDB51", h))}
    c3d = {(r[1], int(r[2])): float(r[5]) for r in rows[8:]}
    assert c3d == {(d, k): v for d, values in C3D_RECALL.items()
                   for k, v in zip((1, 5, 10, 20, 50), values)}
    for row in rows:
        assert row[-1].startswith("not run"), row
        for config in re.findall(r"`([\w]+\.yaml)`", " ".join(row)):
            assert (CONFIG_DIR / config).is_file(), config


def test_the_reference_numbers_are_method_md_s():
    text = METHOD.read_text()
    for method, (ucf, hmdb) in I3D_TOP1.items():
        assert re.search(rf"\| {re.escape(method)} \| {ucf} \| {hmdb} \|", text), method
    for data, values in C3D_RECALL.items():
        assert f"{data} {' / '.join(map(str, values))}" in text, data


def test_every_config_named_in_the_doc_exists_and_every_bash_block_is_marked():
    text = DOC.read_text()
    for name in set(re.findall(r"examples/configs/([\w]+\.yaml)", text)):
        assert (CONFIG_DIR / name).is_file(), name
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("```bash"):
            assert lines[i - 1].startswith("<!-- not run:"), f"line {i + 1}"


@pytest.mark.parametrize("name", sorted(SCRIPT_CONFIGS))
def test_script_pretraining_configs_carry_the_public_settings(parse, name):
    cfg = parse(name)
    model, data = cfg.model.init_args, cfg.data.init_args
    transform, augment = data.transform.init_args, data.augment.init_args
    assert model.backbone == "i3d_inception"
    assert (data.num_frames, data.stride, data.frame_size, data.crop_size) == (16, 4, 256, 224)
    assert (model.optimizer, model.lr, model.sgd_momentum, model.weight_decay) == (
        "sgd", 0.003, 0.9, 1e-4)
    assert (transform.flip_prob, transform.rotation_degrees) == (0.0, 10.0)
    assert tuple(transform.jitter) == (0.5, 0.5, 0.25, 0.5)
    kind = cfg.model.class_path.rsplit(".", 1)[1]
    if kind == "DSMTripletModule":
        assert (model.margin, model.inter_video, model.shared_pass) == (0.5, True, False)
    else:
        assert (model.temperature, model.queue_size, model.momentum) == (0.07, 3569, 0.999)
    epochs, batch, source, negative = {
        "pretrain_ucf101_i3d": (100, 16, "ucf101", ("shift",)),
        "pretrain_ucf101_moco_i3d": (100, 16, "ucf101", ()),
        "pretrain_ucf101_dsm_triplet_i3d": (100, 16, "ucf101", ("shift",)),
        "pretrain_ssv2_i3d": (10, 48, "ssv2", ("other_video",)),
        "pretrain_diving48_i3d": (10, 8, "diving48", ("shift",)),
    }[name]
    assert (cfg.trainer.max_epochs, data.batch_size, data.source) == (epochs, batch, source)
    assert tuple(augment.negative_kinds) == negative
    assert kind == {"pretrain_ucf101_moco_i3d": "MoCoModule",
                    "pretrain_ucf101_dsm_triplet_i3d": "DSMTripletModule"}.get(
        name, "DSMLightningModule")
    if "shift" in negative:
        assert data.min_gap == 2


@pytest.mark.parametrize("name, source, frames, batch", [
    ("finetune_ucf101_i3d", "ucf101", 64, 4), ("finetune_hmdb51_i3d", "hmdb51", 64, 4),
    ("finetune_ssv2_i3d", "ssv2", 16, 48), ("finetune_diving48_i3d", "diving48", 64, 4),
])
def test_i3d_finetune_configs_carry_the_public_settings(parse, name, source, frames, batch):
    cfg = parse(name)
    model, data = cfg.model.init_args, cfg.data.init_args
    assert model.backbone == "i3d_inception" and model.pretrained.endswith("encoder.pt")
    assert (model.optimizer, model.lr, model.momentum, model.weight_decay) == (
        "sgd", 0.001, 0.9, 1e-8)
    assert (model.lr_schedule, tuple(model.lr_milestones), model.lr_gamma) == (
        "multistep", (10, 20, 25, 30, 35, 40), 0.3)
    assert (model.dropout, cfg.trainer.max_epochs) == (0.5, 45)
    assert (data.source, data.num_frames, data.stride, data.crop_size, data.batch_size) == (
        source, frames, 1, 224, batch)
    assert (data.n_clips, data.n_crops) == (10, 3)


@pytest.mark.parametrize("name", ["retrieval_ucf101_split1", "retrieval_hmdb51_split1"])
def test_paper_retrieval_configs_use_the_public_protocol(parse, name):
    cfg = parse(name)
    model, data = cfg.model.init_args, cfg.data.init_args
    assert (model.protocol, model.backbone) == ("centre", "c3d")
    assert (data.n_clips, data.n_crops, data.num_frames, data.stride, data.crop_size) == (
        1, 1, 64, 1, 224)
    header = (CONFIG_DIR / f"{name}.yaml").read_text().split("seed_everything")[0]
    assert "docs/reproduce.md" in header and "reterival.py" in header
