"""The shipped configs (examples/configs/*.yaml): documented, parsed by the real `dsm` parser,
faithful to the paper's settings (docs/method.md) and to the demo's, and buildable without data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.fit_configs import SCRIPT_CONFIGS

from dsm_lightning import cli
from dsm_lightning.disturb import ClipTransform

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "examples" / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
IDS = [p.stem for p in CONFIGS]
REMEDIES = ("_be_", "_fame_")  # Background Erasing / FAME configs: tests/project/test_remedy_configs.py
# configs that follow a public script (224 px, queue 3569, ...) are checked by test_reproduce.py
PRETRAIN = [p for p in CONFIGS if p.stem.startswith("pretrain_") and p.stem not in SCRIPT_CONFIGS
            and not any(r in p.stem for r in REMEDIES)]
MODULES = {"dsm_lightning.DSMLightningModule", "dsm_lightning.DSMIntraModule",
           "dsm_lightning.DSMTripletModule", "dsm_lightning.MoCoModule",
           "dsm_lightning.FinetuneModule", "dsm_lightning.RetrievalModule",
           "dsm_lightning.BEModule", "dsm_lightning.FAMEModule"}
FIT_CONFIGS = [p for p in CONFIGS if not p.stem.startswith("study_")]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments sit in sys.argv."""
    monkeypatch.setattr(sys, "argv", ["dsm"])


@pytest.fixture(scope="module")
def parser():
    """The `dsm` parser (built once; parsing a file does not instantiate anything)."""
    cli.import_public_classes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["dsm"])
        args = ["--config", str(CONFIGS[0])]
        return cli._ParseOnlyCLI(**cli._cli_kwargs(args, run=False)).parser


def _parse(parser, path: Path):
    return parser.parse_args(["--config", str(path)])


def test_the_expected_configs_ship():
    names = set(IDS)
    for data in ("ucf101", "hmdb51", "k400"):
        for backbone in ("r3d18", "r2plus1d18", "c3d", "slow_r50"):
            assert f"pretrain_{data}_{backbone}" in names
    assert {"pretrain_ucf101_moco_slow_r50", "finetune_ucf101_split1", "finetune_hmdb51_split1",
            "retrieval_ucf101_split1", "retrieval_hmdb51_split1", "study_synthetic",
            "demo_dsm_wandb"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_opens_with_what_it_reproduces_and_its_reference(path: Path):
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3, f"{path.name} must open with a comment block"
    text = "\n".join(header)
    assert "Reference" in text, f"{path.name}: no reference number / statement"
    assert "dsm " in text, f"{path.name}: no run command"


@pytest.mark.parametrize("path", FIT_CONFIGS, ids=[p.stem for p in FIT_CONFIGS])
def test_config_parses_with_the_real_parser(parser, path: Path):
    cfg = _parse(parser, path)
    assert cfg.model.class_path in MODULES
    assert cfg.data.class_path == "dsm_lightning.VideoDataModule"
    if isinstance(cfg.data.init_args.source, str):  # placeholders, documented in the header
        assert cfg.data.init_args.root.startswith("data/")
        assert cfg.data.init_args.root in path.read_text().split("seed_everything")[0]


def _same(value, expected) -> bool:
    """Config values (lists) against preset values (tuples)."""
    as_tuple = (lambda v: tuple(v) if isinstance(v, (list, tuple)) else v)  # noqa: E731
    return as_tuple(value) == as_tuple(expected)


@pytest.mark.parametrize("path", PRETRAIN, ids=[p.stem for p in PRETRAIN])
def test_pretrain_configs_use_the_paper_presets(parser, path: Path):
    """Every paper config writes out the presets of docs/method-fidelity.md: the module's
    ``paper_settings()``, ``ClipTransform.paper()`` and (DSM) ``TripletBuilder.paper()``."""
    from dsm_lightning import DSMLightningModule, MoCoModule, TripletBuilder
    from dsm_lightning.disturb import ClipTransform

    cfg = _parse(parser, path)
    model, data = cfg.model.init_args, cfg.data.init_args
    augment, transform = data.augment.init_args, data.transform.init_args
    assert (data.num_frames, data.stride, data.crop_size) == (16, 4, 112)
    assert data.frame_size == 128  # 112 of 128: the public 224-of-256 crop, unscaled
    assert "crop_size" not in transform  # written once: the data module's crop_size
    moco = "_moco_" in path.name
    module = MoCoModule if moco else DSMLightningModule
    assert cfg.model.class_path == f"dsm_lightning.{module.__name__}"  # the paper's DSM
    for name, value in module.paper_settings().items():
        assert _same(model[name], value), name
    for name, value in ClipTransform.paper_settings().items():
        assert _same(transform[name], value), name
    assert data.min_gap == (4 if "_k400_" in path.name else 2)
    if moco:
        assert augment.spatial_prob == 0.0 and tuple(augment.negative_kinds) == ()
    else:
        for name, value in TripletBuilder.paper_settings().items():
            assert _same(augment[name], value), name
    source = {"ucf101": "ucf101", "hmdb51": "hmdb51", "k400": "kinetics_csv"}
    assert data.source == source[path.stem.split("_")[1]]
    assert "method-fidelity.md" in path.read_text().split("seed_everything")[0]


@pytest.mark.parametrize("name", ["finetune_ucf101_split1", "finetune_hmdb51_split1"])
def test_finetune_configs_follow_the_protocol(parser, name: str):
    cfg = _parse(parser, CONFIG_DIR / f"{name}.yaml")
    model, data = cfg.model.init_args, cfg.data.init_args
    assert cfg.model.class_path == "dsm_lightning.FinetuneModule"
    assert (model.optimizer, model.lr, model.dropout, model.mode) == ("sgd", 0.001, 0.5,
                                                                     "finetune")
    assert cfg.trainer.max_epochs == 45
    assert (data.n_clips, data.n_crops, data.split, data.task) == (10, 3, 1, "classify")
    # linked at parse time: written once in the data section
    assert (model.n_clips, model.n_crops) == (10, 3)


@pytest.mark.parametrize("name", ["retrieval_ucf101_split1", "retrieval_hmdb51_split1"])
def test_retrieval_configs_follow_the_protocol(parser, name: str):
    cfg = _parse(parser, CONFIG_DIR / f"{name}.yaml")
    assert cfg.model.class_path == "dsm_lightning.RetrievalModule"
    assert tuple(cfg.model.init_args.ks) == (1, 5, 10, 20, 50)
    assert (cfg.data.init_args.task, cfg.data.init_args.split) == ("retrieval", 1)


def test_study_config_pretrains_each_method_as_a_valid_fit_config(parser, tmp_path):
    """Every method of study_synthetic.yaml (make demo) merges into a `dsm fit` config that
    the real parser accepts; the methods share backbone, optimiser, data and epochs."""
    import yaml

    from dsm_lightning.study import study_parser
    from dsm_lightning.study.runs import fit_config as _fit_config

    study = study_parser().parse_args(["--config", str(CONFIG_DIR / "study_synthetic.yaml")])
    assert set(study.methods) >= {"moco", "dsm", "dsm_intra", "dsm_triplet"}
    shared, queued = None, None
    classes = {}
    for name, method in study.methods.items():
        config = _fit_config(study.seed_everything, study.trainer, study.data, method,
                             tmp_path, name)
        cfg = parser.parse_object(yaml.safe_load(yaml.safe_dump(config)))
        model = cfg.model.init_args
        classes[name] = cfg.model.class_path
        common = (model.backbone, dict(model.backbone_kwargs), cfg.trainer.max_epochs)
        shared = shared or common
        assert common == shared, name
        if "queue_size" in model:  # the MoCo-family methods share the queue settings too
            queue = (model.optimizer, model.lr, model.temperature, model.queue_size)
            queued = queued or queue
            assert queue == queued, name
    # each column is labelled by what it computes: the paper's objective is "dsm"
    assert classes["dsm"] == "dsm_lightning.DSMLightningModule"
    assert classes["dsm_intra"] == "dsm_lightning.DSMIntraModule"
    assert classes["dsm_triplet"] == "dsm_lightning.DSMTripletModule"
    assert classes["moco"] == "dsm_lightning.MoCoModule"
    assert study.splits.balanced_train == "balanced_train"


@pytest.mark.parametrize("name", ["synthetic_dsm_intra", "demo_dsm_wandb"])
def test_single_fit_configs_equal_the_study_method(parser, name: str, tmp_path):
    """The one-method `dsm fit` configs pretrain exactly as the study's dsm_intra does."""
    import yaml

    from dsm_lightning.study import study_parser
    from dsm_lightning.study.runs import fit_config as _fit_config

    study = study_parser().parse_args(["--config", str(CONFIG_DIR / "study_synthetic.yaml")])
    merged = _fit_config(study.seed_everything, study.trainer, study.data,
                         study.methods["dsm_intra"], tmp_path, "dsm_intra")
    expected = parser.parse_object(yaml.safe_load(yaml.safe_dump(merged)))
    cfg = _parse(parser, CONFIG_DIR / f"{name}.yaml")
    assert cfg.model == expected.model
    assert cfg.data == expected.data
    assert cfg.seed_everything == expected.seed_everything
    for key in ("max_epochs", "accelerator", "devices"):
        assert cfg.trainer[key] == expected.trainer[key], key


def test_wandb_config_is_offline(parser):
    cfg = _parse(parser, CONFIG_DIR / "demo_dsm_wandb.yaml")
    assert cfg.trainer.logger.class_path.endswith("WandbLogger")
    assert cfg.trainer.logger.init_args.offline is True


@pytest.mark.parametrize("path", FIT_CONFIGS, ids=[p.stem for p in FIT_CONFIGS])
def test_config_instantiates_without_touching_files(path: Path, tmp_path: Path, monkeypatch):
    """Model, data module and trainer build; nothing is read or written before setup().

    The class list of a real dataset comes from its annotation files, which do not exist
    here: ``num_classes`` / ``class_names`` are stubbed, and ``pretrained`` files are
    replaced by random init. Each paper backbone is built once (pretrain_ucf101_*); the
    other configs swap in ``tiny3d`` to keep the test fast (backbones: tests/models/test_models.py).
    """
    from dsm_lightning.data.datamodule import VideoDataModule

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSM_LIGHTNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(VideoDataModule, "num_classes", property(lambda self: 5))
    monkeypatch.setattr(VideoDataModule, "class_names",
                        property(lambda self: [f"c{i}" for i in range(5)]))
    extra = []
    if path.stem.startswith(("finetune_", "retrieval_")):
        extra = ["--model.init_args.pretrained", "null"]
    full = path.stem.startswith(("pretrain_ucf101_", "demo_")) and "_moco_" not in path.stem
    if not full:
        extra += ["--model.init_args.backbone", "tiny3d"]
    built = cli.build_cli(["--config", str(path), *extra], run=False)
    assert f"dsm_lightning.{type(built.model).__name__}" in MODULES
    assert isinstance(built.datamodule, VideoDataModule)
    data = built.datamodule
    # one transform for every path, the data module's; the builder holds none of its own
    assert isinstance(data.transform, ClipTransform) and data.hparams.crop_size > 0
    assert not any(isinstance(v, ClipTransform) for m in data.augment.modules()
                   for v in vars(m).values())
    if hasattr(built.model, "classifier"):
        assert built.model.classifier.out_features == 5
    assert list(tmp_path.iterdir()) == [], "instantiation wrote files"
