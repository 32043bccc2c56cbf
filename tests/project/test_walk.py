"""The newcomer's walk as a test: every documented command works as written, from a fresh
working directory, and says where its output went.

Each part runs in a *checkout copy* (the repository's files a user has after cloning, less
``.git``, ``src`` and ``tests``, copied into a temporary directory, which is the working
directory), with ``DSM_SMOKE=1`` (every run shrunk to seconds; commands and output paths
unchanged), a private synthetic-video cache shared by the whole walk, the test's
interpreter directory first on ``PATH`` (``python`` and ``dsm`` are the venv's) and the
package under test importable:

(a) every ``python`` and ``bash`` block of README.md and docs/*.md, in document order; a
    block right after a line ``<!-- not run: <reason> -->`` is skipped. The Python blocks of
    one document share one interpreter (a later block may use an earlier one's names), the
    bash blocks run through ``bash`` with ``set -e -o pipefail`` (the failing line is named);
(b) every example script with its default arguments, as ``python examples/<name>.py`` runs
    it (``__main__``, no argument; the scripts share one interpreter, one after the other);
(c) every YAML config under examples/ with ``--print_config`` (``dsm study`` for study
    configs, ``dsm fit`` otherwise);
(d) ``dsm fit`` prints where its encoder and checkpoints went, and they are there (in
    this process, like (c));
(e) every ``examples/...`` file that the docs, ``dsm --help``, the package's docstrings,
    the examples and the notebooks name exists.

Everything a run prints under ``[dsm] fit outputs:`` / ``[example] outputs:`` must exist
and lie inside the working directory. Run one part: ``pytest tests/project/test_walk.py -k readme``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import helpers.walk
import pytest
import yaml
from helpers.walk import (
    BLOCK_MARK,
    CONFIGS,
    DOCS,
    EXAMPLES,
    FAIL_MARK,
    ROOT,
    TIMEOUT_S,
    assert_outputs_exist,
    checkout_copy,
    doc_blocks,
    package_dir,
    printed_outputs,
)

WALK_SCRIPT = Path(helpers.walk.__file__)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def walk_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The walk's environment: smoke mode, one private cache, the venv first on PATH."""
    cache = tmp_path_factory.getbasetemp() / "dsm_synthetic_cache"
    path = os.pathsep.join(p for p in (package_dir(), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, DSM_SMOKE="1", DSM_LIGHTNING_CACHE=str(cache), PYTHONPATH=path,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.pop("DSM_DEBUG", None)
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed in {cwd}:\n{output[-6000:]}"
    return done.stdout


# ---------------------------------------------------------------------------- the parser
def test_doc_blocks_reads_fences_languages_lines_and_not_run_reasons():
    text = "\n".join([
        "# title", "```python", "a = 1", "```", "",                       # lines 1-5
        "<!-- not run: needs UCF101 -->", "", "```bash", "dsm fit", "```",  # lines 6-10
        "```yaml", "x: 1", "```", "- item", "  ```bash", "  echo hi", "  ```",  # 11-17
    ])
    blocks = doc_blocks(text)
    assert [(b.lang, b.code, b.line, b.skip) for b in blocks] == [
        ("python", "a = 1\n", 2, None), ("bash", "dsm fit\n", 8, "needs UCF101"),
        ("bash", "echo hi\n", 15, None)]
    with pytest.raises(ValueError, match="never closed"):
        doc_blocks("```python\nx = 1\n")
    with pytest.raises(ValueError, match="not run: <reason>"):
        doc_blocks("<!-- not run -->\n```bash\nls\n```\n")


def test_printed_outputs_reads_the_report_blocks_only():
    text = ("noise\n[dsm] fit outputs:\n  encoder          /a/encoder.pt\n"
            "  last checkpoint  /a/last.ckpt\nEpoch 1\n  indented  but not a report\n"
            "[example] outputs:\n  metrics  outputs/x/metrics.csv\n")
    assert printed_outputs(text) == [("encoder", "/a/encoder.pt"),
                                     ("last checkpoint", "/a/last.ckpt"),
                                     ("metrics", "outputs/x/metrics.csv")]


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_block_runs_or_says_why_not(doc: Path):
    blocks = doc_blocks(doc.read_text())
    for block in blocks:
        assert block.skip is None or len(block.skip) > 3, f"{doc.name}:{block.line}"


# ---------------------------------------------------------------------------- the smoke switch
@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), ("TRUE", True), ("", False),
                                       ("0", False), ("false", False), ("no", False)])
def test_smoke_enabled_reads_dsm_smoke(value, on, monkeypatch):
    from dsm_lightning.cli_parser import smoke_enabled as former_home
    from dsm_lightning.smoke import smoke_enabled

    monkeypatch.setenv("DSM_SMOKE", value)
    assert smoke_enabled() is on and former_home() is on
    monkeypatch.delenv("DSM_SMOKE")
    assert smoke_enabled() is False


def _parsed(name: str, smoke: bool = False):
    from dsm_lightning.cli import parse_config

    return parse_config(["--config", str(ROOT / "examples" / "configs" / name)], smoke=smoke)


def _overlay(name: str) -> dict:
    from dsm_lightning.smoke import overlay_path

    return yaml.safe_load(overlay_path(name).read_text())


def test_smoke_overlays_shrink_a_synthetic_config_and_keep_its_paths(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dsm"])
    before = _parsed("synthetic_dsm_intra.yaml")
    cfg = _parsed("synthetic_dsm_intra.yaml", smoke=True)
    clips = _overlay("synthetic")["data"]["init_args"]
    source = clips.pop("source")
    trainer, data = cfg.trainer, cfg.data.init_args
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.limit_val_batches,
            trainer.limit_test_batches, trainer.log_every_n_steps) == (1, 2, 2, 2, 1)
    assert {k: trainer[k] for k in _overlay("trainer")["trainer"]} == _overlay("trainer")["trainer"]
    assert {k: data.source.init_args[k] for k in source["init_args"]} == source["init_args"]
    assert data.source.init_args.bias == before.data.init_args.source.init_args.bias
    assert {k: data[k] for k in clips} == clips
    assert (data.num_frames, data.crop_size, data.batch_size, data.num_workers) == (4, 32, 4, 0)
    assert cfg.model.init_args.backbone_kwargs == {"width": 4}
    assert cfg.trainer.logger == before.trainer.logger  # outputs go where they went
    assert cfg.trainer.callbacks == before.trainer.callbacks
    assert cfg.model.init_args.lr == before.model.init_args.lr  # what it checks is unchanged
    assert cfg.data.init_args.augment == before.data.init_args.augment
    again = _parsed("synthetic_dsm_intra.yaml", smoke=True)
    assert again == cfg  # the same every time: dsm study applies it to the study, then each fit


def test_smoke_keeps_real_data_and_other_backbones(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dsm"])
    before = _parsed("finetune_ucf101_split1.yaml")
    cfg = _parsed("finetune_ucf101_split1.yaml", smoke=True)
    assert cfg.data == before.data and cfg.model == before.model
    assert (cfg.trainer.max_epochs, cfg.trainer.limit_test_batches) == (1, 2)


def test_smoke_overlays_merge_mappings_and_replace_values():
    """A dict config (dsm study, notebooks): the trainer bounded, loops cut to two batches
    (a loop the config switched off runs its two too: an overlay sets, it does not bound),
    `source: synthetic` becomes the small SyntheticSource, other backbone_kwargs stay."""
    from dsm_lightning.smoke import apply_smoke, merge, overlays_for

    config = {"trainer": {"limit_val_batches": 0, "limit_train_batches": 1, "max_steps": 1000,
                          "val_check_interval": 500, "limit_test_batches": 1.0,
                          "logger": {"class_path": "CSVLogger"}},
              "data": {"class_path": "VideoDataModule", "init_args": {"source": "synthetic"}},
              "model": {"class_path": "DSMLightningModule", "init_args": {
                  "backbone": "tiny3d", "backbone_kwargs": {"width": 16, "norm": "group"}}}}
    assert overlays_for(config) == ["trainer", "synthetic", "tiny3d"]
    notice = apply_smoke(config)
    assert notice.startswith("[dsm] smoke mode (DSM_SMOKE=1): 1 epoch")
    assert "synthetic source" in notice and "tiny3d width 4" in notice
    assert notice.endswith("paths unchanged")
    trainer = config["trainer"]
    assert trainer["limit_test_batches"] == 2  # 1.0 = every batch, cut to two
    assert (trainer["limit_val_batches"], trainer["limit_train_batches"]) == (2, 2)
    assert (trainer["max_steps"], trainer["val_check_interval"]) == (-1, 1.0)
    assert trainer["logger"] == {"class_path": "CSVLogger"}
    source = config["data"]["init_args"]["source"]  # "synthetic" became a small SyntheticSource
    assert source["class_path"].endswith("SyntheticSource")
    assert source["init_args"]["videos_per_class"] == 4
    assert config["model"]["init_args"]["backbone_kwargs"] == {"width": 4, "norm": "group"}
    again = copy.deepcopy(config)
    assert apply_smoke(again) == notice and again == config  # dsm study: the study, then a fit
    assert merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2},
                                                                      "d": 3}
    assert merge("synthetic", {"class_path": "X"}) == {"class_path": "X"}
    real = {"data": {"class_path": "VideoDataModule", "init_args": {"source": "ucf101"}},
            "model": {"init_args": {"backbone": "r3d_18"}}}
    assert overlays_for(real) == ["trainer"]


def test_smoke_shrinks_every_method_of_a_study_config():
    from dsm_lightning.smoke import apply_smoke

    study = yaml.safe_load((ROOT / "examples" / "configs" / "study_synthetic.yaml").read_text())
    study["trainer"] = None
    apply_smoke(study)
    assert study["trainer"]["max_epochs"] == 1 and study["n_clips"] == 2
    for method in study["methods"].values():
        assert method["model"]["init_args"]["backbone_kwargs"] == {"width": 4}
    assert study["data"]["init_args"]["source"]["init_args"]["num_classes"] == 4
    assert study["data"]["init_args"]["source"]["init_args"]["bias"] == 0.9


def test_examples_take_smoke_sizes_from_the_overlays(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from examples import _common as common

    monkeypatch.setenv("DSM_SMOKE", "1")
    args = common.example_parser("x", "outputs/examples/x").parse_args([])
    assert args.fast and args.out_dir == "outputs/examples/x"
    clips = _overlay("synthetic")["data"]["init_args"]
    s = common.settings(args.fast)  # one synthetic cache for the examples and the CLI
    source = clips["source"]["init_args"]
    assert (s["synthetic_classes"], s["synthetic_videos"], s["synthetic_eval_videos"],
            s["synthetic_frames"], s["synthetic_size"]) == (
        source["num_classes"], source["videos_per_class"], source["eval_videos_per_class"],
        source["num_frames"], source["size"])
    assert (s["num_frames"], s["stride"], s["crop_size"], s["batch_size"]) == (
        clips["num_frames"], clips["stride"], clips["crop_size"], clips["batch_size"])
    assert s["width"] == _overlay("tiny3d")["model"]["init_args"]["backbone_kwargs"]["width"]
    assert s["epochs"] == _overlay("trainer")["trainer"]["max_epochs"]
    monkeypatch.delenv("DSM_SMOKE")
    assert not common.example_parser("x", "y").parse_args([]).fast


# ---------------------------------------------------------------------------- (a) the docs
@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_documented_blocks_run_as_written(doc: Path, tmp_path: Path, walk_env):
    blocks = [b for b in doc_blocks(doc.read_text()) if b.skip is None]
    if not blocks:
        pytest.skip(f"{doc.name} has no block to run")
    cwd = checkout_copy(tmp_path / "clone")
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps({"doc": str(doc.relative_to(ROOT)),
                                "blocks": [asdict(b) for b in blocks]}))
    done = subprocess.run([sys.executable, str(WALK_SCRIPT), str(spec)], cwd=cwd, env=walk_env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    assert done.stdout.count(BLOCK_MARK) == len(blocks)
    assert_outputs_exist(done.stdout, cwd)


# ---------------------------------------------------------------------------- (b) examples
@pytest.fixture(scope="module")
def examples_run(tmp_path_factory: pytest.TempPathFactory, walk_env) -> tuple[Path, dict]:
    """Every example run with its defaults in one checkout copy: (cwd, name -> stdout)."""
    cwd = checkout_copy(tmp_path_factory.mktemp("walk_examples") / "clone")
    done = subprocess.run([sys.executable, str(WALK_SCRIPT), "--examples", *EXAMPLES], cwd=cwd,
                          env=walk_env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    parts = done.stdout.split(f"{BLOCK_MARK} examples/")[1:]
    return cwd, {part.split(".py", 1)[0]: part for part in parts}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_with_its_defaults_and_writes_what_it_prints(name, examples_run):
    cwd, printed = examples_run
    stdout = printed[name]
    assert FAIL_MARK not in stdout, stdout[-6000:]
    outputs = assert_outputs_exist(stdout, cwd)
    assert outputs, f"examples/{name}.py printed no '[example] outputs:' block"
    relative = [path for label, path in outputs if not Path(path).is_absolute()]
    assert relative and all(p.startswith(f"outputs/examples/{name}/") for p in relative), (
        relative)  # the default --out-dir, relative to where it runs


# ---------------------------------------------------------------------------- (c) configs
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_prints_its_complete_config(config: Path, tmp_path, monkeypatch, capsys):
    from dsm_lightning.cli import main

    cwd = tmp_path / "clone"
    shutil.copytree(ROOT / "examples", cwd / "examples", ignore=shutil.ignore_patterns(
        "__pycache__"))
    monkeypatch.chdir(cwd)  # class_path: examples.<module>.<Class>, found in the cwd by dsm
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)  # not the repository's copy, imported before
    monkeypatch.setattr(sys, "argv", ["dsm"])
    relative = str(config.relative_to(ROOT))
    command = "study" if config.stem.startswith("study_") else "fit"
    with pytest.raises(SystemExit) as done:
        main([command, "--config", relative, "--print_config"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    full = yaml.safe_load(printed)
    assert ("methods" in full) if command == "study" else {"model", "data", "trainer"} <= set(full)
    assert not list(cwd.glob("runs")) and not list(cwd.glob("outputs"))  # nothing was run


# ---------------------------------------------------------------------------- (e) named files
def test_every_example_file_the_docs_and_the_help_name_exists():
    from dsm_lightning.cli import top_level_help

    texts = {path.relative_to(ROOT).as_posix(): path.read_text() for path in [
        *DOCS, *(ROOT / "src" / "dsm_lightning").rglob("*.py"), *(ROOT / "examples").rglob("*"),
        *(ROOT / "notebooks").glob("*.ipynb")] if path.is_file() and path.suffix != ".pyc"}
    texts["dsm --help"] = top_level_help()
    named = {(where, name) for where, text in texts.items()
             for name in re.findall(r"examples/[\w/.-]+\.(?:py|yaml)", text)}
    assert len(named) > 20
    missing = sorted(f"{name} (in {where})" for where, name in named if not (ROOT / name).is_file())
    assert not missing, missing


# ---------------------------------------------------------------------------- (d) fit says
@pytest.mark.slow
def test_dsm_fit_prints_where_its_encoder_and_checkpoints_went(tmp_path, walk_env, monkeypatch,
                                                              capsys):
    from dsm_lightning import smoke
    from dsm_lightning.cli import main

    cwd = checkout_copy(tmp_path / "clone")
    monkeypatch.chdir(cwd)
    for key in ("DSM_SMOKE", "DSM_LIGHTNING_CACHE"):
        monkeypatch.setenv(key, walk_env[key])
    monkeypatch.setattr(smoke, "_PRINTED", set())
    monkeypatch.setattr(sys, "argv", ["dsm"])
    assert main(["fit", "--config", "examples/configs/synthetic_dsm_intra.yaml"]) == 0
    stdout = capsys.readouterr().out
    assert "[dsm] smoke mode (DSM_SMOKE=1)" in stdout
    outputs = dict(assert_outputs_exist(stdout, cwd))
    run = (cwd / "runs" / "synthetic_dsm_intra" / "version_0").resolve()
    assert Path(outputs["encoder"]) == run / "encoder.pt"
    assert Path(outputs["last checkpoint"]) == run / "checkpoints" / "last.ckpt"
    assert Path(outputs["log dir"]) == run and (run / "metrics.csv").is_file()
    import torch

    encoder = torch.load(run / "encoder.pt", weights_only=True)
    assert encoder["backbone_kwargs"] == {"width": 4}  # smoke: the tiny3d width shrunk
    assert encoder["crop_size"] == 32 and encoder["num_frames"] == 4


