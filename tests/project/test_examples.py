"""Every script in examples/ runs with ``--fast`` (= ``DSM_SMOKE=1``) and does what its
docstring says (tests/project/test_walk.py runs each with its defaults and checks what it printed).

The scripts run in-process (their ``main(argv)`` returns what they computed); the custom
objective also runs through the real ``dsm`` console script with
``examples/custom_objective.yaml``, as documented.
"""

from __future__ import annotations

import csv
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dsm_lightning import DSMLightningModule, TripletBuilder
from dsm_lightning.disturb import temporal
from dsm_lightning.disturb.temporal import frame_kinds, negative_kinds, register_frame_kind

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCRIPTS = ["custom_disturbance", "custom_method", "custom_source", "finetune_from_checkpoint",
           "pretrain_custom_backbone", "retrieval", "temporal_order"]
# Tiny synthetic data for the CLI run (the --fast settings of the scripts).
FAST_DATA = {"source.init_args.num_classes": 4, "source.init_args.videos_per_class": 4,
             "source.init_args.eval_videos_per_class": 2, "source.init_args.num_frames": 16,
             "source.init_args.size": 32, "frame_size": 32, "crop_size": 32, "num_frames": 4,
             "stride": 2, "batch_size": 4, "num_workers": 0}


def _metrics_rows(run: Path) -> list[dict[str, str]]:
    """Rows of a CSVLogger run's metrics.csv."""
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(autouse=True)
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """One synthetic-video cache for the whole session (the notebooks' tests use the same)."""
    cache = tmp_path_factory.getbasetemp() / "dsm_synthetic_cache"
    monkeypatch.setenv("DSM_LIGHTNING_CACHE", str(cache))
    return cache


@pytest.fixture
def examples_importable(monkeypatch) -> None:
    """``import examples.<name>`` as from the repository root."""
    monkeypatch.syspath_prepend(str(ROOT))
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)


def _script(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def _run_fast(name: str, out: Path, *extra: str) -> dict:
    return _script(name)["main"](["--fast", "--out-dir", str(out), *extra])


def _uint8_batch(batch: int = 3, frames: int = 6, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, frames, size, size, generator=g) * 255).to(torch.uint8)


def test_every_example_script_is_tested_and_documents_its_command():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")) == SCRIPTS
    for name in SCRIPTS:
        doc = (EXAMPLES / f"{name}.py").read_text()
        assert f"DSM_SMOKE=1 python examples/{name}.py" in doc  # the smoke run, same paths
        assert f"outputs/examples/{name}/" in doc  # where it writes
        assert "common.print_outputs(" in doc  # and says so when it ran


# ------------------------------------------------------------------ custom backbone
def test_pretrain_custom_backbone_trains_the_user_module_and_reloads_it(tmp_path):
    result = _run_fast("pretrain_custom_backbone", tmp_path)
    model = result["model"]
    assert type(model.encoder.model).__name__ == "SeparableNet"
    assert model.hparams.backbone is None
    assert math.isfinite(result["metrics"]["train/loss_epoch"])
    assert result["meta"]["backbone"] is None and result["meta"]["feature_dim"] == 16
    assert result["features_match"]  # encoder.pt reloads into a fresh SeparableNet exactly


# ------------------------------------------------------------------ fine-tuning
def test_finetune_loads_the_same_encoder_from_ckpt_and_encoder_pt(tmp_path):
    result = _run_fast("finetune_from_checkpoint", tmp_path)
    assert result["encoders_match"]
    assert result["checkpoint"].is_file() and result["encoder"].is_file()
    results = result["results"]
    assert set(results) == {"from .ckpt", "from encoder.pt", "random init"}
    for metrics in results.values():
        assert 0.0 <= metrics["test/acc_top1"] <= 1.0
        assert 0.0 <= metrics["test/clip_acc_top1"] <= 1.0
    # same weights and seed: the two pretrained runs are the same run
    assert results["from .ckpt"] == results["from encoder.pt"]


# ------------------------------------------------------------------ retrieval
def test_retrieval_reports_recall_and_writes_neighbour_lists(tmp_path):
    result = _run_fast("retrieval", tmp_path)
    for recalls in result["recalls"].values():
        assert list(recalls) == [1, 5, 10]
        values = list(recalls.values())
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    out = tmp_path / "pretrained" / "version_0"
    assert result["results_dir"] == out
    saved = json.loads((out / "recall.json").read_text())
    assert {int(k): v for k, v in saved.items()} == result["recalls"]["pretrained"]
    neighbours = json.loads((out / "neighbours.json").read_text())
    assert len(neighbours) == 4 * 2  # every test video (4 classes x 2) is a query
    assert all(len(row["neighbours"]) == 10 for row in neighbours)


# ------------------------------------------------------------------ custom disturbance
@pytest.fixture(autouse=True)
def frame_kind_registry(monkeypatch) -> None:
    """Kinds registered by a test (running the example registers "speed") end with it."""
    monkeypatch.setattr(temporal, "_FRAME_BUILDERS", temporal._FRAME_BUILDERS.copy())


@pytest.fixture
def speed_script() -> dict:
    """The example run as a script (which registers "speed")."""
    assert "speed" not in frame_kinds()
    return _script("custom_disturbance")


def _speed_sources(negative: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """(B, T) anchor frame each negative frame is a copy of (asserting it is one)."""
    dist = torch.cdist(negative.transpose(1, 2).flatten(2), anchor.transpose(1, 2).flatten(2))
    assert float(dist.amin(dim=2).max()) < 1e-4
    return dist.argmin(dim=2)


def _assert_replayed_faster(source: torch.Tensor, frames: int) -> None:
    steps = (source[:, 1:] - source[:, :-1]) % frames
    assert ((steps == 2) | (steps == 3)).all() and (steps == steps[:, :1]).all()


def test_custom_disturbance_speed_indices_replay_the_clip_faster_never_in_order(speed_script):
    speed_indices = speed_script["speed_indices"]
    g = torch.Generator().manual_seed(0)
    index = speed_indices(256, 8, (2, 3), generator=g)
    steps = (index[:, 1:] - index[:, :-1]) % 8
    assert ((steps == steps[:, :1]).all(dim=1)).all()  # constant speed per clip
    assert set(steps[:, 0].tolist()) == {2, 3}
    assert not (index == torch.arange(8)).all(dim=1).any()
    with pytest.raises(ValueError, match="speeds"):
        speed_indices(2, 4, (1,))
    with pytest.raises(ValueError, match="speeds"):
        speed_indices(2, 4, (4,))


def test_custom_disturbance_registers_speed_with_speeds_below_the_clip_length(speed_script):
    assert frame_kinds()[-1] == "speed" and "speed" in negative_kinds()
    speed_kind = speed_script["speed_kind"]
    g = torch.Generator().manual_seed(0)
    index = speed_kind(64, 3, length=1, generator=g, device="cpu")  # T = 3: speed 2 only
    assert torch.equal((index[:, 1:] - index[:, :-1]) % 3, torch.full((64, 2), 2))
    with pytest.raises(ValueError, match="speeds"):
        speed_kind(2, 2, length=1, generator=g, device="cpu")
    rerun = _script("custom_disturbance")  # re-running the file registers nothing new
    assert frame_kinds().count("speed") == 1
    # the re-run's speed_kind is the same definition: registering it replaces the first
    assert register_frame_kind("speed", rerun["speed_kind"]) is rerun["speed_kind"]
    assert temporal._FRAME_BUILDERS.get("speed") is rerun["speed_kind"]
    assert frame_kinds()[-1] == "speed" and frame_kinds().count("speed") == 1


def test_custom_disturbance_speed_is_sampled_by_triplet_builder(speed_script):
    video, shift = _uint8_batch(batch=64), _uint8_batch(batch=64, seed=1)
    out = TripletBuilder(negative_kinds=("speed",), seed=3)(video, shift, size=12)
    _assert_replayed_faster(_speed_sources(out["negative"], out["anchor"]), video.shape[2])
    # mixed with other kinds, negative_probs weighs it like a built-in kind
    kinds = ("shift", "reverse", "speed")
    out = TripletBuilder(negative_kinds=kinds, negative_probs=(0, 1, 0), seed=3)(
        video, shift, size=12)
    assert torch.equal(out["negative"], out["anchor"].flip(2))
    out = TripletBuilder(negative_kinds=kinds, negative_probs=(0, 1, 1), seed=3)(
        video, shift, size=12)
    anchor, negative = out["anchor"], out["negative"]
    is_reverse = (negative == anchor.flip(2)).flatten(1).all(dim=1)
    assert 0 < int(is_reverse.sum()) < 64  # one kind per clip, both drawn
    _assert_replayed_faster(_speed_sources(negative[~is_reverse], anchor[~is_reverse]), 6)


def test_custom_disturbance_speed_is_stacked_in_all_mode(speed_script):
    video, shift = _uint8_batch(), _uint8_batch(seed=1)
    out = TripletBuilder(negative_kinds=("shift", "reverse", "speed"), negative_mode="all",
                         seed=3)(video, shift, size=12)
    anchor, negative = out["anchor"], out["negative"]
    assert negative.shape == (video.shape[0], 3, *anchor.shape[1:])  # shift, reverse, speed
    assert torch.equal(negative[:, 1], anchor.flip(2))
    _assert_replayed_faster(_speed_sources(negative[:, 2], anchor), video.shape[2])


def test_custom_disturbance_script_trains_dsm_with_the_speed_negative(tmp_path, speed_script):
    result = speed_script["main"](["--fast", "--out-dir", str(tmp_path), "--speed-prob", "1"])
    assert result["builder"].negative_kinds == ("shift", "reverse", "speed")
    assert result["builder"].temporal.probs == (0.0, 0.0, 1.0)
    assert result["png"].is_file()
    triplet = result["triplet"]
    assert set(triplet) == {"anchor", "positive", "negative", "label", "index"}  # data.views
    _assert_replayed_faster(_speed_sources(triplet["negative"], triplet["anchor"]),
                            triplet["anchor"].shape[2])
    assert 0.0 <= result["metrics"]["train/hn_acc_epoch"] <= 1.0
    with pytest.raises(ValueError, match="speed_prob"):
        speed_script["main"](["--fast", "--speed-prob", "1.5"])


def test_custom_disturbance_runs_the_dsm_command_with_the_speed_kind(tmp_path, synthetic_cache,
                                                                     monkeypatch, capsys):
    from dsm_lightning.cli import main as dsm_main

    kinds = "--data.init_args.augment.init_args.negative_kinds=[reverse, shuffle, static, speed]"
    data = [f"--data.init_args.{key}={value}" for key, value in FAST_DATA.items()]
    args = [
        "fit", "--config", str(EXAMPLES / "configs" / "synthetic_dsm_intra.yaml"), kinds,
        "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1", "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--model.init_args.backbone_kwargs.width=4", "--model.init_args.queue_size=32", *data,
    ]
    # plain `dsm` does not know the kind: one short error naming negative_kinds
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dsm"])
    assert dsm_main(args) == 2
    assert "negative_kinds" in capsys.readouterr().err
    # the documented command: the example file as entry point
    doc = (EXAMPLES / "custom_disturbance.py").read_text()
    assert "python examples/custom_disturbance.py dsm fit --config" in doc
    env = {**os.environ, "DSM_LIGHTNING_CACHE": str(synthetic_cache)}
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_disturbance.py"), "dsm", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "synthetic_dsm_intra" / "version_0"
    assert "- speed" in (run / "config.yaml").read_text()
    rows = _metrics_rows(run)
    assert any(row.get("train/hn_acc_step") for row in rows)


# ------------------------------------------------------------------ temporal-order objective
def _order_model(**kwargs):
    from examples.temporal_order import TemporalOrderDSM

    settings = dict(backbone="tiny3d", backbone_kwargs={"width": 4}, queue_size=16)
    settings.update(kwargs)
    return TemporalOrderDSM(**settings)


def test_temporal_order_overrides_only_small_extension_points(examples_importable):
    from examples.temporal_order import TemporalOrderDSM

    assert TemporalOrderDSM.training_step is DSMLightningModule.training_step
    overridden = {name for name, value in vars(TemporalOrderDSM).items() if callable(value)}
    assert overridden == {"__init__", "unpack_batch", "forward_views", "compute_loss"}
    with pytest.raises(ValueError, match="order_weight"):
        _order_model(order_weight=-1.0)


def test_temporal_order_loss_is_parent_loss_plus_weighted_order_term(examples_importable):
    torch.manual_seed(0)
    model = _order_model(order_weight=0.7)
    clips = {k: torch.randn(4, 3, 4, 16, 16) for k in ("anchor", "positive", "negative")}
    views = model.unpack_batch(clips)
    flipped = views["order_label"].bool()
    assert torch.equal(views["order_clips"][flipped], views["key"][flipped].flip(2))
    assert torch.equal(views["order_clips"][~flipped], views["key"][~flipped])
    outputs = model.forward_views(views)
    loss, stats = model.compute_loss(views, outputs)
    parent_loss, _ = DSMLightningModule.compute_loss(model, views, outputs)
    order = F.cross_entropy(outputs["order_logits"], views["order_label"])
    torch.testing.assert_close(loss, parent_loss + 0.7 * order)
    torch.testing.assert_close(stats["order_loss"], order.detach())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.order_head.parameters())


def test_temporal_order_script_logs_the_order_term(tmp_path, examples_importable):
    result = _run_fast("temporal_order", tmp_path)
    metrics = result["metrics"]
    assert math.isfinite(metrics["train/order_loss_epoch"])
    assert 0.0 <= metrics["train/order_acc_epoch"] <= 1.0
    assert (tmp_path / "encoder.pt").is_file()


def test_custom_objective_yaml_runs_with_the_dsm_command(tmp_path, synthetic_cache):
    data = [f"--data.init_args.{key}={value}" for key, value in FAST_DATA.items()]
    command = [
        str(Path(sys.executable).parent / "dsm"), "fit",
        "--config", str(EXAMPLES / "custom_objective.yaml"),
        "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--model.init_args.backbone_kwargs.width=4", "--model.init_args.queue_size=32", *data,
    ]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "DSM_LIGHTNING_CACHE": str(synthetic_cache)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "temporal_order" / "version_0"
    assert "examples.temporal_order.TemporalOrderDSM" in (run / "config.yaml").read_text()
    rows = _metrics_rows(run)
    assert any(row.get("train/order_loss_step") for row in rows)
    assert (run / "encoder.pt").is_file()


def test_custom_method_is_a_thin_subclass_that_trains_and_exports(tmp_path, examples_importable):
    """A new method (BYOL-style) written outside the library on ContrastiveModule."""
    import inspect

    from dsm_lightning import ContrastiveModule, load_encoder
    from examples.custom_method import BYOLVideo, main

    assert issubclass(BYOLVideo, ContrastiveModule)
    assert len(inspect.getsource(BYOLVideo).splitlines()) < 60  # a few dozen lines
    assert "training_step" not in BYOLVideo.__dict__  # the base's step is reused
    import pytorch_lightning as pl
    from helpers.pretrain_data import TripletDataModule

    model = BYOLVideo(backbone="tiny3d", backbone_kwargs={"width": 4}, momentum=0.5, lr=0.1)
    target_before = [p.detach().clone() for p in model.target_encoder.parameters()]
    pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False,
               default_root_dir=str(tmp_path)).fit(model, TripletDataModule(n=8, batch_size=4))
    target = list(model.target_encoder.parameters())
    online = list(model.encoder.parameters())
    # the base ran the EMA of the declared pair: the target moved, but is not a copy
    assert any(not torch.equal(a, b) for a, b in zip(target_before, target))
    assert any(not torch.equal(a, b) for a, b in zip(online, target))
    assert all(not p.requires_grad for p in target)
    result = main(["--fast", "--out-dir", str(tmp_path / "run")])
    assert math.isfinite(result["metrics"]["train/loss_epoch"])
    encoder, meta = load_encoder(tmp_path / "run" / "encoder.pt")
    assert meta["method"] == "byol" and meta["backbone"] == "tiny3d"

# ------------------------------------------------------------------ custom source
@pytest.fixture
def csv_paths_free():
    """The example registers "csv_paths" on every run: start and end without it."""
    from dsm_lightning.data.sources import base

    base._SOURCES.unregister("csv_paths")
    yield
    base._SOURCES.unregister("csv_paths")


def test_custom_source_trains_on_a_user_layout(tmp_path, csv_paths_free):
    from dsm_lightning.data.sources import create_source, list_sources

    script = _script("custom_source")
    result = script["main"](["--fast", "--out-dir", str(tmp_path)])
    data, table = result["data"], result["csv"]
    assert "csv_paths" in list_sources()
    assert isinstance(data.source, script["CSVPathsSource"]) and data.hparams.source == "csv_paths"
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert data.class_names == sorted({row["label"] for row in rows})
    assert result["sizes"] == {split: sum(row["split"] == split for row in rows)
                               for split in ("train", "val", "test")}
    assert [r.video_id for r in data.records("test")] == [
        row["path"] for row in rows if row["split"] == "test"]
    assert result["trainer"].global_step > 0
    assert math.isfinite(result["metrics"]["train/loss_epoch"])
    again = create_source("csv_paths", root=data.source.root, annotations=str(table))
    assert again.read().class_names == data.class_names
    with pytest.raises(ValueError, match="does not accept test_root"):
        create_source("csv_paths", root=".", annotations="x.csv", test_root=".")


def test_custom_source_class_path_parses_with_the_dsm_parser(tmp_path, examples_importable,
                                                             csv_paths_free, monkeypatch):
    from dsm_lightning import cli

    monkeypatch.setattr(sys, "argv", ["dsm"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "model:\n  class_path: DSMLightningModule\n"
        "data:\n  class_path: VideoDataModule\n  init_args:\n    source:\n"
        "      class_path: examples.custom_source.CSVPathsSource\n"
        "      init_args: {root: /data/clips, annotations: /data/clips/videos.csv}\n")
    source = cli.parse_config(["--config", str(config)]).data.init_args.source
    assert source.class_path == "examples.custom_source.CSVPathsSource"
    assert source.init_args.annotations == "/data/clips/videos.csv"
    config.write_text(config.read_text().replace("examples.custom_source.CSVPathsSource",
                                                 "examples.custom_source.Missing"))
    with pytest.raises(Exception, match="Missing"):
        cli.parse_config(["--config", str(config)])
