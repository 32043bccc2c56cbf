"""The Background Erasing and FAME paper-scale configs carry their public code's settings
(the generic parse / instantiate checks of every config are in tests/project/test_configs.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dsm_lightning import cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / "examples" / "configs"
BE = ["pretrain_ucf101_be_c3d", "pretrain_k400_be_i3d"]
FAME = ["pretrain_ucf101_fame_r2plus1d18", "pretrain_k400_fame_i3d"]


@pytest.fixture(scope="module")
def parser():
    cli.import_public_classes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["dsm"])
        args = ["--config", str(CONFIG_DIR / f"{BE[0]}.yaml")]
        return cli._ParseOnlyCLI(**cli._cli_kwargs(args, run=False)).parser


def _parse(parser, name: str):
    return parser.parse_args(["--config", str(CONFIG_DIR / f"{name}.yaml")])


def test_every_remedy_config_ships_beside_dsms():
    names = {p.stem for p in CONFIG_DIR.glob("pretrain_*.yaml")}
    assert set(BE + FAME) <= names
    assert {"pretrain_ucf101_c3d", "pretrain_k400_c3d"} <= names  # DSM's, same data


@pytest.mark.parametrize("name", BE)
def test_be_configs_follow_the_public_be_code(parser, name: str):
    cfg = _parse(parser, name)
    model, data = cfg.model.init_args, cfg.data.init_args
    assert cfg.model.class_path == "dsm_lightning.BEModule"
    assert (model.optimizer, model.lr, model.sgd_momentum, model.weight_decay) == (
        "sgd", 0.003, 0.9, 1e-4)
    assert (model.temperature, model.momentum) == (0.07, 0.999)
    k400 = "_k400_" in name
    assert model.queue_size == (65536 if k400 else 3569)
    assert cfg.trainer.max_epochs == (50 if k400 else 200)
    assert (data.num_frames, data.stride, data.min_gap) == (16, 4, 2)
    assert data.crop_size == (224 if k400 else 112)
    assert model.backbone == ("i3d_r50" if k400 else "c3d")
    augment = data.augment
    assert augment.class_path == "dsm_lightning.BackgroundErasingBuilder"
    assert tuple(augment.init_args.mix_range) == (0.0, 0.3)
    assert (augment.init_args.mix_per, tuple(augment.init_args.views)) == ("batch", ("positive",))
    base = augment.init_args.base.init_args
    assert base.spatial_prob == 0.0 and tuple(base.negative_kinds) == ("shift",)
    transform = data.transform.init_args
    assert (transform.flip_prob, transform.rotation_degrees) == (0.0, 10.0)
    assert tuple(transform.jitter) == (0.5, 0.5, 0.25, 0.5)
    assert tuple(transform.mean) == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("name", FAME)
def test_fame_configs_follow_the_public_fame_code(parser, name: str):
    cfg = _parse(parser, name)
    model, data = cfg.model.init_args, cfg.data.init_args
    assert cfg.model.class_path == "dsm_lightning.FAMEModule"
    assert (model.temperature, model.momentum, model.symmetric) == (0.1, 0.999, True)
    assert (model.optimizer, model.lr, model.lr_schedule) == ("sgd", 0.01, "cosine")
    k400 = "_k400_" in name
    assert model.queue_size == (65536 if k400 else 2048)
    assert model.proj_hidden_dim == (None if k400 else 512)  # --mlp for R(2+1)D only
    assert (data.num_frames, data.stride) == (16, 2)
    assert data.crop_size == (224 if k400 else 112)
    assert cfg.trainer.max_epochs == 200
    assert data.augment.class_path == "dsm_lightning.FAMEBuilder"
    assert data.augment.init_args.foreground_ratio == 0.5
    transform = data.transform.init_args
    assert tuple(transform.crop_scale) == (0.2, 1.0) and transform.flip_prob == 0.5
    assert tuple(transform.jitter) == (0.4, 0.4, 0.4, 0.1)
    assert (transform.jitter_prob, transform.grayscale_prob) == (0.8, 0.2)
