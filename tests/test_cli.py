"""The `dsm` CLI end to end on the synthetic source: fit from a printed config, then fine-tune
and retrieval tests from its encoder.pt; links; short error messages and help; offline wandb
media."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from dsm_lightning import cli
from dsm_lightning.callbacks.media import TripletMediaLogger

ROOT = Path(__file__).resolve().parents[1]
DSM = [sys.executable, "-m", "dsm_lightning.cli"]  # the console script, in a subprocess

T, S = 4, 32  # frames and crop of the tiny runs

DATA = {
    "class_path": "VideoDataModule",
    "init_args": {
        "num_frames": T, "stride": 2, "frame_size": S, "crop_size": S, "batch_size": 4,
        "num_workers": 0, "n_clips": 2,
        "source": {"class_path": "SyntheticSource", "init_args": {
            "num_classes": 4, "videos_per_class": 4, "eval_videos_per_class": 2,
            "num_frames": 16, "size": S}},
    },
}


def _data_args(cache: str, **extra) -> dict:
    """DATA's init_args with the synthetic videos cached in ``cache``."""
    source = DATA["init_args"]["source"]
    return {**DATA["init_args"], **extra,
            "source": {**source, "init_args": {**source["init_args"], "cache_dir": cache}}}
TINY = {"backbone": "tiny3d", "backbone_kwargs": {"width": 4}}


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments sit in sys.argv."""
    monkeypatch.setattr(sys, "argv", ["dsm"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("synthetic"))


def _config(tmp: Path, name: str, model: dict, task: str, cache: str, **trainer) -> Path:
    data = {"class_path": DATA["class_path"],
            "init_args": _data_args(cache, task=task)}
    config = {
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "logger": {"class_path": "CSVLogger",
                               "init_args": {"save_dir": str(tmp / "runs"), "name": name}},
                    **trainer},
        "model": model,
        "data": data,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_from_printed_config_then_finetune_and_retrieval(tmp_path: Path, cache: str, capsys):
    media = {"class_path": "TripletMediaLogger", "init_args": {"max_samples": 2, "max_frames": 8}}
    model = {"class_path": "DSMLightningModule", "init_args": {**TINY, "queue_size": 32}}
    source = _config(tmp_path, "pre", model, "pretrain", cache, max_steps=2,
                     callbacks=[media])

    # --print_config gives a complete config ...
    with pytest.raises(SystemExit) as stop:
        cli.build_cli(["fit", "--config", str(source), "--print_config"])
    assert stop.value.code == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    dumped = yaml.safe_load(printed.read_text())
    import inspect

    from dsm_lightning import ContrastiveModule, DSMLightningModule

    params: set[str] = set()  # its own arguments and those it passes on with **kwargs
    for klass in DSMLightningModule.__mro__:
        if issubclass(klass, ContrastiveModule) and "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
    assert set(dumped["model"]["init_args"]) == params - {"num_classes"}  # linked from data
    assert dumped["data"]["init_args"]["source"]["init_args"]["num_classes"] == 4

    # ... that re-runs
    assert cli.main(["fit", "--config", str(printed)]) == 0
    run = tmp_path / "runs" / "pre" / "version_0"
    assert (run / "config.yaml").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == dumped["model"]
    encoder = run / "encoder.pt"
    blob = torch.load(encoder, weights_only=True)
    assert (blob["backbone"], blob["backbone_kwargs"], blob["num_frames"]) == (
        "tiny3d", {"width": 4}, T)

    # media: one PNG grid (3 labelled rows: anchor, positive, negative) and one GIF per sample
    pngs = sorted((run / "media").glob("triplet_e000_s*.png"))
    gifs = sorted((run / "media").glob("triplet_e000_s*.gif"))
    assert [p.stem for p in pngs] == ["triplet_e000_s0", "triplet_e000_s1"]
    assert len(gifs) == 2
    with Image.open(pngs[0]) as grid:
        assert grid.height == 3 * S + 2 * 2 and grid.width > T * S + (T - 1) * 2  # + labels
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == T and gif.height == 3 * S + 2 * 2

    # fine-tuning from that encoder: weights, classes and views from the data; `dsm test`
    # refuses the classifier before it was fitted, and tests the fitted checkpoint
    finetune = {"class_path": "FinetuneModule", "init_args": {"pretrained": str(encoder)}}
    ft_config = _config(tmp_path, "ft", finetune, "classify", cache, max_steps=1,
                        limit_val_batches=0)
    capsys.readouterr()
    assert cli.main(["test", "--config", str(ft_config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "never fitted" in err[0] and "--ckpt_path" in err[0], err
    built = cli.build_cli(["--config", str(ft_config)], run=False)
    for name, value in blob["state_dict"].items():
        torch.testing.assert_close(built.model.encoder.state_dict()[name], value)
    ft = cli.build_cli(["fit", "--config", str(ft_config)])
    assert ft.model.hparams.num_classes == 4
    assert ft.model.class_names == ft.datamodule.class_names
    assert ft.model.hparams.n_clips == 2
    # the CLI keeps last.ckpt beside the epoch checkpoint (save_last by default)
    names = sorted(p.name for p in (tmp_path / "runs" / "ft").glob("version_*/checkpoints/*"))
    assert len(names) == 2 and "last.ckpt" in names, names
    (ckpt,) = (tmp_path / "runs" / "ft").glob("version_*/checkpoints/last.ckpt")
    assert cli.main(["test", "--config", str(ft_config), "--ckpt_path", str(ckpt)]) == 0

    # retrieval from the same encoder; no num_classes forced on a module without it
    out = tmp_path / "retrieval"
    retrieval = {"class_path": "RetrievalModule",
                 "init_args": {"pretrained": str(encoder), "ks": [1, 2, 4],
                               "output_dir": str(out)}}
    rt_config = _config(tmp_path, "rt", retrieval, "retrieval", cache)
    rt = cli.build_cli(["test", "--config", str(rt_config)])
    recalls = rt.model.recalls
    assert sorted(recalls) == [1, 2, 4]
    assert 0.0 <= recalls[1] <= recalls[2] <= recalls[4] <= 1.0
    assert json.loads((out / "version_0" / "recall.json").read_text())["1"] == recalls[1]
    assert "num_classes" not in rt.model.hparams
    assert "num_classes" not in rt.model.hparams_initial


def test_links_fill_model_arguments_from_the_data(tmp_path: Path, cache: str):
    model = {"class_path": "FinetuneModule", "init_args": TINY}
    path = _config(tmp_path, "links", model, "classify", cache)
    built = cli.build_cli(["--config", str(path), "--data.init_args.n_crops", "3",
                           "--data.init_args.crop_size", "24",
                           "--data.init_args.augment", "TripletBuilder"], run=False)
    assert (built.model.hparams.n_clips, built.model.hparams.n_crops) == (2, 3)
    assert built.model.hparams.num_classes == built.datamodule.num_classes == 4
    assert built.datamodule.clip_spec.crop_size == 24  # written once, on the data module

    pretrain = {"class_path": "DSMLightningModule", "init_args": TINY}
    path = _config(tmp_path, "links2", pretrain, "pretrain", cache)
    built = cli.build_cli(["--config", str(path)], run=False)
    for name in ("num_classes", "n_clips", "class_names"):  # pretraining takes none of them
        assert name not in built.model.hparams, name


def _bad_configs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (arguments, strings the message must name)."""
    unknown = tmp / "unknown.yaml"
    unknown.write_text("model:\n  class_path: DSMLightningModule\n  init_args:\n    lrr: 0.1\n")
    wrong = tmp / "wrong.yaml"
    wrong.write_text("model:\n  class_path: DSMLightningModule\n  init_args:\n    lr: fast\n")
    missing_pt = tmp / "ft.yaml"
    missing_pt.write_text(
        "model:\n  class_path: FinetuneModule\n  init_args:\n"
        f"    num_classes: 4\n    pretrained: {tmp / 'nowhere' / 'encoder.pt'}\n"
        f"data:\n  class_path: VideoDataModule\n  init_args:\n    cache_dir: {tmp / 'cache'}\n"
    )
    missing_root = tmp / "root.yaml"
    missing_root.write_text(
        "model:\n  class_path: FinetuneModule\n"
        "data:\n  class_path: VideoDataModule\n  init_args:\n    source: folder\n"
        f"    root: {tmp / 'no_videos'}\n"
    )
    return {
        "unknown key": (["--config", str(unknown)], ["lrr", "did you mean 'lr'"]),
        "wrong type": (["--config", str(wrong)], ["model.init_args.lr", "float", "fast"]),
        "missing config": (["--config", str(tmp / "absent.yaml")], ["absent.yaml"]),
        "missing file": (["--config", str(missing_pt)], [str(tmp / "nowhere" / "encoder.pt")]),
        "missing data": (["--config", str(missing_root)], [str(tmp / "no_videos")]),
    }


@pytest.mark.parametrize(
    "case", ["unknown key", "wrong type", "missing config", "missing file", "missing data"]
)
def test_config_errors_are_one_short_message(case: str, tmp_path: Path, capsys):
    args, names = _bad_configs(tmp_path)[case]
    assert cli.main(["fit", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[0].startswith("dsm: error: ")
    assert len(err) == 2 and len(err[0]) < 300, captured.err
    for name in names:
        assert name in err[0]
    assert "Traceback" not in captured.err and "usage:" not in captured.err


def test_dsm_debug_shows_the_traceback_of_a_config_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DSM_DEBUG", "1")
    with pytest.raises(argparse.ArgumentError, match="absent.yaml"):
        cli.main(["fit", "--config", str(tmp_path / "absent.yaml")])


def test_unsafe_checkpoint_is_one_short_message(tmp_path: Path, cache: str, capsys):
    """A checkpoint holding a pickled object is refused by weights_only loading: one line."""
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": argparse.Namespace(command="rm -rf ~")}, evil)
    model = {"class_path": "FinetuneModule", "init_args": TINY}
    config = _config(tmp_path, "evil", model, "classify", cache, max_steps=1)
    assert cli.main(["fit", "--config", str(config), "--ckpt_path", str(evil)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("dsm: error: "), captured.err
    assert str(evil) in err[0] and "argparse.Namespace" in err[0] and "weights_only" in err[0]
    assert "Traceback" not in captured.err


def test_user_module_by_class_path(tmp_path: Path, cache: str):
    """`backbone` takes a registry name or any nn.Module given by class_path in YAML."""
    from dsm_lightning.models import BackboneWrapper

    user = {"class_path": "torch.nn.Conv3d",
            "init_args": {"in_channels": 3, "out_channels": 5, "kernel_size": 1}}
    for name, module in (("FinetuneModule", {}), ("RetrievalModule", {})):
        model = {"class_path": name, "init_args": {"backbone": user, **module}}
        task = "classify" if name == "FinetuneModule" else "retrieval"
        path = _config(tmp_path, name, model, task, cache)
        built = cli.build_cli(["--config", str(path)], run=False)
        assert isinstance(built.model.encoder, BackboneWrapper)
        assert isinstance(built.model.encoder.model, torch.nn.Conv3d)
        assert built.model.encoder.feature_dim == 5


USER_MODULE = """
from pathlib import Path

import pytorch_lightning as pl

from dsm_lightning import DSMLightningModule


class Marker(pl.Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_start(self, trainer, pl_module) -> None:
        Path(self.path).write_text(type(pl_module).__name__)


class Exploding(DSMLightningModule):
    def training_step(self, batch, batch_idx):
        raise ValueError("exploded in training_step")
"""


def _user_config(tmp: Path, cache: str, module: str, model: str) -> Path:
    """A one-step fit of ``<module>.<model>`` (or a short name) with ``<module>.Marker``."""
    path = _config(tmp, "user", {"class_path": model, "init_args": {**TINY, "queue_size": 32}},
                   "pretrain", cache, max_steps=1, limit_val_batches=0,
                   callbacks=[{"class_path": f"{module}.Marker",
                               "init_args": {"path": str(tmp / "marker.txt")}}])
    return path


def test_console_script_imports_a_module_of_the_working_directory(tmp_path: Path, cache: str):
    """`dsm fit` run where mymod.py lies finds `class_path: mymod.X`, as `python -m` would,
    with no PYTHONPATH."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mymod.py").write_text(USER_MODULE)
    config = _user_config(tmp_path, cache, "mymod", "DSMLightningModule")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dsm = Path(sys.executable).parent / "dsm"
    res = subprocess.run([str(dsm), "fit", "--config", str(config)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "marker.txt").read_text() == "DSMLightningModule"
    elsewhere = subprocess.run([str(dsm), "fit", "--config", str(config)], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=300)
    assert elsewhere.returncode == 2 and "mymod" in elsewhere.stderr  # not importable there


def test_errors_while_running_keep_their_traceback(tmp_path: Path, cache: str, monkeypatch,
                                                   capsys):
    """A ValueError from a training step is a bug to debug, not a configuration error: main
    lets it through; the classes were built (the marker callback ran)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dsm_user_exploding.py").write_text(USER_MODULE)
    monkeypatch.delenv("DSM_DEBUG", raising=False)
    config = _user_config(tmp_path, cache, "dsm_user_exploding", "dsm_user_exploding.Exploding")
    with pytest.raises(ValueError, match="exploded in training_step"):
        cli.main(["fit", "--config", str(config)])
    assert (tmp_path / "marker.txt").read_text() == "Exploding"
    assert "dsm: error" not in capsys.readouterr().err
    assert str(tmp_path) not in sys.path  # the working directory was on it for the command only


def test_format_error_reads_the_structure_of_a_message():
    """Nested report -> key path + first most indented problem + class; flat messages whole;
    a wrapped constructor error stands for itself; long lines are cut."""
    nested = ('Parser key "data":\n  Errors:\n    - Problem with given class_path '
              "'dsm_lightning.VideoDataModule':\n        Parser key \"source\":\n          "
              "- Problem with given class_path 'dsm_lightning.data.SyntheticSource':\n"
              "              Option 'num_clases' is not accepted\n    - Expected a <class "
              "'NoneType'>\n  Given value: {'class_path': 'VideoDataModule'}")
    assert cli.format_error(nested) == (
        "data.init_args.source: Option 'num_clases' is not accepted (did you mean "
        "'num_classes'?) [SyntheticSource]")
    unimportable = ('Parser key "model":\n  Errors:\n    - Problem with given class_path '
                    "'dsm_lightning.FinetuneModule':\n        Parser key \"backbone\":\n"
                    "          - Problem with given class_path 'mymod.MyNet':\n"
                    "              No module named 'mymod'")
    assert cli.format_error(unimportable) == (  # no suggestion from the outer class
        "model.init_args.backbone: No module named 'mymod' [MyNet]")
    assert cli.format_error('Parser key "trainer.max_epochs":\n  Errors:\n    - Expected a '
                            "<class 'int'>") == "trainer.max_epochs: Expected a int"
    assert cli.format_error("Subcommand 'fit' does not accept option 'trainer.max_epoch'") == (
        "Subcommand 'fit' does not accept option 'trainer.max_epoch' (did you mean "
        "'max_epochs'?)")
    try:
        try:
            raise FileNotFoundError("encoder file not found: /x/encoder.pt")
        except FileNotFoundError as inner:
            raise ValueError("Does not validate\nErrors:\n  - encoder file not found: "
                             "/x/encoder.pt\n  - Expected None") from inner
    except ValueError as wrapped:
        assert cli.format_error(wrapped) == (
            "FileNotFoundError: encoder file not found: /x/encoder.pt")
    flat = cli.format_error(ValueError("first line;\n  more: " + "x" * 400))
    assert flat.startswith("first line; more: x") and flat.endswith("...")
    assert len(flat) == cli.MAX_ERROR_CHARS


# ------------------------------------------------------------------------------------ help

FAST_HELP = """
import sys
from dsm_lightning.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning",
                                                             "lightning", "jsonargparse"))
print("HEAVY", heavy, "CODE", code)
"""


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_top_level_help_imports_no_torch(args: list[str]):
    res = subprocess.run([sys.executable, "-c", FAST_HELP, *args], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"HEAVY [] CODE {0 if args else 2}" in res.stdout
    text = res.stdout if args else res.stderr
    for name in cli.SUBCOMMANDS:
        assert f"  {name} " in text
    assert "dsm fit --config" in text


def test_fast_help_lists_every_subcommand_of_the_parser():
    from dsm_lightning.cli_parser import DSMCLI

    assert list(cli.SUBCOMMANDS) == list(DSMCLI.subcommands())


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.build_cli(list(args))
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_subcommand_help_is_short_and_names_what_a_user_sets(capsys, monkeypatch):
    """Measured before: `dsm fit --help` 499 lines, `--model.help DSMLightningModule` 807
    (every torch.nn class listed under an nn.Module argument); now both < 150."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("DSM_FULL_HELP", raising=False)
    fit = _help(capsys, "fit", "--help")
    assert len(fit.splitlines()) < 150
    for option in ("--config", "--print_config", "--trainer.max_epochs", "--trainer.devices",
                   "--trainer.logger", "--model", "--data", "--ckpt_path", "DSM_FULL_HELP=1"):
        assert option in fit, option
    assert "--trainer.gradient_clip_val GRADIENT_CLIP_VAL" not in fit  # accepted, not listed
    assert len(_help(capsys, "test", "--help").splitlines()) < 150
    for model in ("DSMLightningModule", "FinetuneModule", "RetrievalModule"):
        text = _help(capsys, "fit", "--model.help", model)
        assert len(text.splitlines()) < 150, model
        assert "torch.nn.modules" not in text and "Conv3d" not in text, model
    finetune = _help(capsys, "fit", "--model.help", "FinetuneModule")
    assert "any subclass by class_path" in " ".join(finetune.split())  # backbone: nn.Module

    monkeypatch.setenv("DSM_FULL_HELP", "1")
    full = _help(capsys, "fit", "--help")
    assert "--trainer.gradient_clip_val GRADIENT_CLIP_VAL" in full
    assert len(full.splitlines()) > 400


def test_media_logger_rejects_bad_arguments():
    for kwargs in ({"every_n_epochs": 0}, {"max_samples": 0}, {"max_frames": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            TripletMediaLogger(**kwargs)


def test_wandb_offline_from_the_shipped_config(tmp_path: Path, cache: str):
    """demo_dsm_wandb.yaml logs metrics and triplet media offline, with no login."""
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(yaml.safe_dump({
        "trainer": {"max_steps": 2, "max_epochs": 1, "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "logger": {"class_path": "pytorch_lightning.loggers.WandbLogger",
                               "init_args": {"save_dir": str(tmp_path / "wb")}},
                    "callbacks": [{"class_path": "TripletMediaLogger",
                                   "init_args": {"max_samples": 1}}]},
        "model": {"init_args": {**TINY, "queue_size": 32}},
        "data": {"init_args": _data_args(cache)},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wb"), HOME=str(tmp_path),
               WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    (tmp_path / "wb").mkdir()
    config = ROOT / "examples" / "configs" / "demo_dsm_wandb.yaml"
    res = subprocess.run([*DSM, "fit", "--config", str(config), "--config", str(overrides)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    media = runs[0] / "files" / "media"
    assert list(media.glob("images/**/*.png")) and list(media.glob("videos/**/*.gif"))
