"""The scene-bias study on features: a motion encoder and a scene encoder are told apart."""

from __future__ import annotations

import sys

import pytest
import torch

from dsm_lightning.evaluation.study import (
    OOC_ROWS,
    STUDY_ROWS,
    StudySplits,
    evaluate_features,
    format_study_table,
    study_features,
)

K = 4


def _clips(n: int, balanced: bool, swapped: bool, seed: int) -> dict[str, torch.Tensor]:
    """Clips (n, 1, T=4, 2, 2): channel value = scene, frame-to-frame step = motion class."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % K
    if balanced:
        scene = torch.randint(0, K, (n,), generator=g)
    elif swapped:
        scene = (label + 1 + torch.randint(0, K - 1, (n,), generator=g)) % K
    else:  # biased: the class's own scene 90% of the time
        other = torch.randint(0, K, (n,), generator=g)
        scene = torch.where(torch.rand(n, generator=g) < 0.9, label, other)
    t = torch.arange(4, dtype=torch.float32)
    video = scene[:, None].float() * 10 + (label[:, None] + 1).float() * t[None, :]
    video = video[:, None, :, None, None].expand(n, 1, 4, 2, 2).clone()
    return {"video": video, "label": label, "index": torch.arange(n)}


SPLITS = {"train": (96, False, False), "test": (48, False, False),
          "balanced_train": (96, True, False), "balanced_test": (48, True, False),
          "swapped_test": (48, False, True)}
DATA = {name: _clips(n, b, s, i) for i, (name, (n, b, s)) in enumerate(SPLITS.items())}


def batches_of(split: str):
    data = DATA[split]
    return [{k: v[i:i + 16] for k, v in data.items()} for i in range(0, len(data["label"]), 16)]


class Motion(torch.nn.Module):
    """Features = one-hot of the frame-to-frame step (motion class; 0 when static)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, video):
        step = (video[:, 0, 1] - video[:, 0, 0]).mean((-1, -2)).round().long()  # 0..K
        return torch.nn.functional.one_hot(step.clamp(0, K), K + 1).float() + 1e-3


class Scene(Motion):
    """Features = one-hot of the scene (first frame's value // 10)."""

    def forward(self, video):
        scene = (video[:, 0, 0].mean((-1, -2)) // 10).long()
        return torch.nn.functional.one_hot(scene.clamp(0, K - 1), K).float() + 1e-3


def _evaluate(encoder, tmp_path, splits=StudySplits()):
    feats = study_features(encoder, batches_of, splits)
    return evaluate_features(type(encoder).__name__, feats, splits,
                             [f"c{k}" for k in range(K)], out_dir=tmp_path)


def test_static_clips_repeat_one_frame_and_stay_aligned():
    seen = []

    class Spy(Motion):
        def forward(self, video):
            seen.append(video.clone())
            return super().forward(video)

    feats = study_features(Spy(), batches_of, StudySplits())
    assert set(feats) == {"train", "test", "balanced_train", "balanced_test", "swapped_test",
                          "test_static", "balanced_test_static"}
    static = feats["balanced_test_static"]
    assert torch.equal(static["index"], feats["balanced_test"]["index"])
    # the motion encoder sees no step at all in static clips
    assert torch.all(static["features"].argmax(1) == 0)
    assert any(torch.all(v == v[:, :, :1]) for v in seen)  # frames identical in time


def test_motion_encoder_beats_scene_encoder_on_the_balanced_probe(tmp_path):
    motion, scene = _evaluate(Motion(), tmp_path), _evaluate(Scene(), tmp_path)
    # right on every normal clip; static clips all map to one class: right for 1/K of them
    assert motion["balanced_probe/test"] == pytest.approx(1.0)
    assert motion["balanced_probe/contrasted"] == pytest.approx(1 - 1 / K)
    assert motion["biased_probe/swapped_test"] == pytest.approx(1.0)
    assert scene["balanced_probe/contrasted"] < 0.5  # the scene does not predict the class
    assert scene["biased_probe/test"] > 0.8  # ... except where it is tied to the class
    assert scene["biased_probe/swapped_test"] < 0.1  # and collapses when scenes are swapped
    assert scene["retrieval/swapped_test/R@1"] < motion["retrieval/swapped_test/R@1"]
    assert motion["scene_bias/gain"] == pytest.approx(1 - 1 / K)
    assert abs(scene["scene_bias/gain"]) < 0.2
    assert (tmp_path / "scene_bias_Motion.json").is_file()
    assert (tmp_path / "scene_bias_Scene.png").is_file()


def test_without_balanced_or_swapped_splits_the_biased_rows_remain(tmp_path):
    splits = StudySplits(balanced_train=None, balanced_test=None, swapped_test=None)
    res = _evaluate(Motion(), tmp_path, splits)
    assert not any(k.startswith(("balanced_probe", "retrieval")) for k in res)
    assert res["biased_probe/test"] == pytest.approx(1.0) and "scene_bias/gain" in res


def test_table_has_one_column_per_encoder_and_every_available_row(tmp_path):
    results = {"motion": _evaluate(Motion(), tmp_path), "scene": _evaluate(Scene(), tmp_path)}
    table = format_study_table(results, chance=1 / K)
    lines = table.splitlines()
    assert lines[0].split()[-2:] == ["motion", "scene"]
    assert len(lines) == 2 + len(STUDY_ROWS) + 1
    contrasted = next(line for line in lines if "contrasted acc" in line)
    assert contrasted.split()[-2] == "75.0"
    assert "chance level 25.0%" in lines[-1]


# ------------------------------------------------------------------ `dsm study` end to end

S_TINY = 32


def _study_config(tmp_path, cache, **extra) -> str:
    """A seconds-long study on a tiny synthetic source (4 classes, 32 px, 1 epoch)."""
    import yaml

    common = {"backbone": "tiny3d", "backbone_kwargs": {"width": 4}, "queue_size": 32,
              "optimizer": "adamw", "lr": 1e-3}
    moco = {"class_path": "TripletBuilder",
            "init_args": {"spatial_prob": 0.0, "negative_kinds": []}}
    config = {
        "seed_everything": 0, "out_dir": str(tmp_path / "out"), "n_clips": 1,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1,
                    "enable_model_summary": False},
        "data": {"class_path": "VideoDataModule", "init_args": {
            "task": "pretrain", "num_frames": 4, "stride": 2, "frame_size": S_TINY,
            "crop_size": S_TINY, "batch_size": 4, "num_workers": 0,
            "source": {"class_path": "SyntheticSource", "init_args": {
                "num_classes": K, "videos_per_class": 4, "eval_videos_per_class": 2,
                "num_frames": 16, "size": S_TINY, "cache_dir": cache}}}},
        "methods": {
            "be": {"model": {"class_path": "BEModule", "init_args": common},
                   "augment": {"class_path": "BackgroundErasingBuilder",
                               "init_args": {"base": moco}}},
            "fame": {"model": {"class_path": "FAMEModule", "init_args": common},
                     "augment": {"class_path": "FAMEBuilder"}},
        },
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", ["dsm"])


def _report(out) -> dict:
    import json

    return json.loads((out / "report.json").read_text())


def test_dsm_study_pretrains_the_remedies_and_reports_one_table(tmp_path, cache, capsys):
    from dsm_lightning.cli import main

    assert main(["study", "--config", _study_config(tmp_path, cache)]) == 0
    out = tmp_path / "out"
    report = _report(out)
    assert list(report["results"]) == ["random", "be", "fame"]
    assert report["methods"] == {"be": "BEModule", "fame": "FAMEModule"}
    header = report["table"].splitlines()[0].split()
    assert header[-3:] == ["random", "be", "fame"]
    for name in ("be", "fame"):
        keys = set(report["results"][name])
        synthesized = {f"ooc/{kind}/{metric}" for kind in ("other_class", "stripes")
                       for metric, _ in OOC_ROWS}
        synthesized |= {f"retrieval/ooc_{kind}/R@{k}" for kind in ("other_class", "stripes")
                        for k in (1, 5, 10)}
        assert keys == {key for key, _ in STUDY_ROWS} | synthesized  # default backgrounds
        assert report["seconds"][f"pretrain_{name}"] > 0
        assert (out / name / "encoder.pt").is_file() and (out / name / "config.yaml").is_file()
        assert (out / f"scene_bias_{name}.png").is_file()
        assert (out / f"scene_bias_{name}.json").is_file()
        from dsm_lightning.models import load_encoder

        assert load_encoder(out / name / "encoder.pt")[1]["method"] == name
    markdown = (out / "report.md").read_text()
    assert "contrasted acc" in markdown and "pretraining wall time: be " in markdown
    assert "columns: be = BEModule, fame = FAMEModule" in capsys.readouterr().out


def _ckpt(path, encoder) -> None:
    """A Lightning checkpoint as pretraining writes it (prefixed encoder keys, hyperparameters)."""
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"momentum_encoder.{k}": v + 1 for k, v in encoder.state_dict().items()})
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.0.0",
                "hyper_parameters": {"backbone": "tiny3d", "backbone_kwargs": {"width": 4}},
                "encoder_method": "moco"}, path)


def test_dsm_study_scores_encoder_files_and_a_users_module_on_the_splits_given(
        tmp_path, cache, monkeypatch):
    """No pretraining: an encoder.pt, a .ckpt and a user's network (by class_path), scored on
    biased splits only (the data has no balanced or swapped split here): the table keeps the
    rows it can compute."""
    import shutil
    from pathlib import Path

    import helpers.user_backbone
    from helpers.user_backbone import MyNet

    from dsm_lightning.cli import main
    from dsm_lightning.models import create_backbone, save_encoder
    from dsm_lightning.models.backbones import as_backbone

    work = tmp_path / "work"  # `dsm study` runs where the user's module lies
    work.mkdir()
    shutil.copy(Path(helpers.user_backbone.__file__), work / "user_backbone.py")
    monkeypatch.chdir(work)
    monkeypatch.delitem(sys.modules, "user_backbone", raising=False)
    torch.manual_seed(1)
    tiny = create_backbone("tiny3d", width=4)
    save_encoder(tmp_path / "tiny.pt", tiny, "tiny3d", {"width": 4}, method="dsm",
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # its own normalisation
    _ckpt(tmp_path / "last.ckpt", create_backbone("tiny3d", width=4))
    mine = as_backbone(MyNet())
    save_encoder(tmp_path / "mine.pt", mine, None, method="mine")
    encoders = {
        "file": str(tmp_path / "tiny.pt"),
        "ckpt": str(tmp_path / "last.ckpt"),
        "mine": {"path": str(tmp_path / "mine.pt"),
                 "backbone": {"class_path": "user_backbone.MyNet"}},
    }
    splits = {"biased_train": "train", "biased_test": "test", "balanced_train": None,
              "balanced_test": None, "swapped_test": None}
    config = _study_config(tmp_path, cache, methods={}, encoders=encoders, splits=splits)
    assert main(["study", "--config", config]) == 0
    report = _report(tmp_path / "out")
    assert list(report["results"]) == ["random", "file", "ckpt", "mine"]
    assert report["pretraining"] == {}
    rows = {"biased_probe/test", "biased_probe/test_static", "scene_bias/gain"}
    rows |= {f"ooc/{kind}/{metric}" for kind in ("other_class", "stripes")
             for metric, _ in OOC_ROWS}  # synthesized from the test split: any labelled data
    rows |= {f"retrieval/ooc_{kind}/R@{k}" for kind in ("other_class", "stripes")
             for k in (1, 5, 10)}
    for name, result in report["results"].items():
        assert set(result) == rows, name
    table = report["table"].splitlines()
    assert len(table) == 2 + len(rows) + 1
    assert not any(line.startswith(("balanced", "biased probe: top-1 swapped",
                                    "retrieval swapped-scene")) for line in table)
    assert "mine = " in (tmp_path / "out" / "report.md").read_text()


def test_dsm_study_rejects_missing_splits_and_user_files_without_their_class(
        tmp_path, cache, capsys):
    from dsm_lightning.cli import main
    from dsm_lightning.models import save_encoder
    from dsm_lightning.models.backbones import as_backbone

    splits = {"biased_train": "train", "biased_test": "nope", "balanced_train": None,
              "balanced_test": None, "swapped_test": None}
    assert main(["study", "--config", _study_config(tmp_path, cache, splits=splits)]) == 2
    err = capsys.readouterr().err
    assert "['nope']" in err and "available" in err and "balanced_train" in err
    assert not (tmp_path / "out" / "be").exists()  # checked before any pretraining
    save_encoder(tmp_path / "user.pt", as_backbone(torch.nn.Conv3d(3, 4, 1)), None)
    config = _study_config(tmp_path, cache, methods={}, encoders={"u": str(tmp_path / "user.pt")})
    assert main(["study", "--config", config]) == 2
    assert "encoders.u" in capsys.readouterr().err


def test_encoders_are_fed_clips_in_their_own_normalisation():
    from dsm_lightning.study.encoders import renormalize as _renormalize

    raw = torch.rand(2, 3, 4, 5, 5)

    def data_transform(batch):  # the data section's transform: mean 0.5, std 0.25
        return dict(batch, video=(batch["video"] - 0.5) / 0.25)

    same = _renormalize(data_transform, ((0.5,) * 3, (0.25,) * 3),
                        {"normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    assert same is data_transform
    own = _renormalize(data_transform, ((0.5,) * 3, (0.25,) * 3),
                       {"normalization": {"mean": [0.0, 0.1, 0.2], "std": [1.0, 2.0, 0.5]}})
    expected = (raw - torch.tensor([0.0, 0.1, 0.2]).view(3, 1, 1, 1)) / torch.tensor(
        [1.0, 2.0, 0.5]).view(3, 1, 1, 1)
    assert torch.allclose(own({"video": raw})["video"], expected, atol=1e-5)


# ------------------------------------------------------------ issue: the synthesized rows
def _ooc_features(kind: str, motion: bool, n: int = 48) -> dict[str, dict[str, torch.Tensor]]:
    """Features of synthesized tests as a motion or a scene encoder sees them: the swap clip
    keeps the class's motion on another scene, its static copy has no motion, the conflict
    clip holds a still foreground of another class."""
    labels = torch.arange(n) % K
    other = (labels + 1) % K  # the background's / the still foreground's class
    one_hot = lambda c: torch.nn.functional.one_hot(c, K + 1).float() + 1e-3  # noqa: E731
    static = torch.zeros_like(labels)  # no step at all (the motion features' 0)
    clips = {"swap": labels + 1 if motion else other + 1,
             "static": static if motion else other + 1,
             "conflict": labels + 1 if motion else other + 1}
    return {f"ooc/{kind}/{test}": {"features": one_hot(c), "labels": labels,
                                   "index": torch.arange(n)}
            for test, c in clips.items()}, other


def test_synthesized_rows_tell_a_motion_encoder_from_a_scene_encoder():
    from dsm_lightning.evaluation.probe import fit_linear_probe
    from dsm_lightning.evaluation.study import evaluate_out_of_context

    n = 48
    labels = torch.arange(n) % K
    train = torch.nn.functional.one_hot(labels + 1, K + 1).float() + 1e-3
    probe = fit_linear_probe(train, labels, num_classes=K)
    for motion in (True, False):
        feats, still = _ooc_features("stripes", motion)
        res = evaluate_out_of_context(feats, probe, (train, labels), {"stripes": still})
        if motion:  # right on the swap clip; static copies all fall in one class (right for
            # 1/K of them, as for the real static clips); the moving label wins the conflict
            assert res["ooc/stripes/swap"] == 1.0
            assert res["ooc/stripes/contrasted"] == pytest.approx(1 - 1 / K)
            assert res["ooc/stripes/conflict_moving_beats_still"] == 1.0
            assert res["retrieval/ooc_stripes/R@1"] == 1.0
        else:  # the scene (or the still foreground) answers
            assert res["ooc/stripes/swap"] == res["ooc/stripes/contrasted"] == 0.0
            assert res["ooc/stripes/conflict_still"] == 1.0
            assert res["ooc/stripes/conflict_moving_beats_still"] == 0.0


def _encoder_file(path) -> str:
    from dsm_lightning.models import create_backbone, save_encoder

    torch.manual_seed(0)
    save_encoder(path, create_backbone("tiny3d", width=4), "tiny3d", {"width": 4},
                 method="moco")
    return str(path)


def test_seeds_and_sources_give_mean_and_spread_and_the_suite_verdicts(tmp_path, cache):
    """Two sources x two seeds, encoder files only (no pretraining): one run per source and
    seed, their reports, the mean ± spread per source, the suite's verdicts."""
    from dsm_lightning.cli import main

    small = {"num_classes": K, "videos_per_class": 4, "eval_videos_per_class": 2,
             "num_frames": 16, "size": S_TINY}
    sources = {"photo": {"class_path": "SyntheticSource", "init_args": small},
               "clutter": {"class_path": "ClutterSyntheticSource", "init_args": small}}
    encoders = {"moco": _encoder_file(tmp_path / "a.pt"), "other": _encoder_file(tmp_path / "b.pt")}
    config = _study_config(tmp_path, cache, methods={}, encoders=encoders, seeds=[0, 1],
                           sources=sources, random_baseline=False,
                           out_of_context={"backgrounds": ["noise"], "masks": "source"})
    assert main(["study", "--config", config]) == 0
    out = tmp_path / "out"
    for source in sources:
        for seed in (0, 1):
            run = _report(out / source / f"seed{seed}")
            assert run["seed"] == seed and set(run["results"]) == {"moco", "other"}
            assert "ooc/noise/contrasted" in run["results"]["moco"]
            assert 0.0 < run["notes"]["mask_iou"] < 1.0  # these sources know their masks
            assert (out / source / f"seed{seed}" / "out_of_context"
                    / f"test_noise_seed{seed}.pt").is_file()
        aggregated = (out / source / "report.md").read_text()
        assert "Seeds 0, 1: mean ± sample standard deviation" in aggregated
        assert " ± " in aggregated and "Findings" in aggregated
    suite = (out / "report.md").read_text()
    assert "Sources: photo, clutter; seeds 0, 1 each" in suite
    assert "## `ooc/noise/contrasted`" in suite and "| other |" in suite
    assert "foreground estimate" in (out / "photo" / "seed0" / "report.md").read_text().lower()


def test_a_finished_run_of_the_same_configuration_is_read_back(tmp_path, cache):
    from dsm_lightning.cli import main

    config = _study_config(tmp_path, cache, out_of_context={"backgrounds": []},
                           methods={"be": yaml_method("be")})
    assert main(["study", "--config", config]) == 0
    first = _report(tmp_path / "out")["pretraining"]["be"]
    assert first["reused"] is False
    encoder = tmp_path / "out" / "be" / "encoder.pt"
    stamp = encoder.stat().st_mtime_ns
    assert main(["study", "--config", config]) == 0
    again = _report(tmp_path / "out")["pretraining"]["be"]
    assert again["reused"] is True and again["seconds"] == first["seconds"]
    assert encoder.stat().st_mtime_ns == stamp  # not trained again
    assert main(["study", "--config", config, "--reuse", "false"]) == 0
    assert _report(tmp_path / "out")["pretraining"]["be"]["reused"] is False


def yaml_method(name: str) -> dict:
    common = {"backbone": "tiny3d", "backbone_kwargs": {"width": 4}, "queue_size": 32,
              "optimizer": "adamw", "lr": 1e-3}
    return {"model": {"class_path": "BEModule", "init_args": common},
            "augment": {"class_path": "BackgroundErasingBuilder"}}


def test_dsm_study_on_a_ucf101_tree_with_only_train_and_test_lists(tmp_path, cache):
    """Any labelled set: an UCF101 layout (classInd, trainlist01, testlist01) of generated
    videos, scored through the CLI: the synthesized rows are there (no balanced or swapped
    split exists), with the per-class plot."""
    import numpy as np
    from helpers.video_fixtures import encode_video

    from dsm_lightning.cli import main

    root, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    classes = ["Walk", "Jump", "Swim"]
    rng = np.random.default_rng(0)
    train, test = [], []
    for c, name in enumerate(classes):
        for g in range(4):
            frames = np.repeat((rng.random((1, 32, 32, 3)) * 200).astype(np.uint8), 12, axis=0)
            for t in range(12):  # a bright square moving in the class's direction
                x = 4 + 2 * t if c != 1 else 12
                y = 12 if c != 1 else 4 + 2 * t
                frames[t, y:y + 6, x:x + 6] = 250 if c != 2 else 20
            rel = f"{name}/v_{name}_g{g + 1:02d}_c01.avi"
            encode_video(str(root / rel), frames, codec="mpeg4")
            (train if g < 3 else test).append((rel, c + 1))
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {c}\n" for r, c in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    config = _study_config(
        tmp_path, cache, methods={}, encoders={"mine": _encoder_file(tmp_path / "e.pt")},
        splits={"biased_train": "train", "biased_test": "test", "balanced_train": None,
                "balanced_test": None, "swapped_test": None},
        data={"class_path": "VideoDataModule", "init_args": {
            "source": "ucf101", "root": str(root), "annotations": str(lists), "split": 1,
            "task": "pretrain", "num_frames": 4, "stride": 2, "frame_size": S_TINY,
            "crop_size": S_TINY, "batch_size": 4, "num_workers": 0}},
        out_of_context={"backgrounds": ["other_class", "stripes"], "chunk": 16})
    assert main(["study", "--config", config]) == 0
    report = _report(tmp_path / "out")
    table = report["table"]
    for label in ("synthesized (other_class): contrasted acc", "synthesized (stripes): top-1 "
                  "background-swapped", "conflict: moving label scores higher",
                  "retrieval swap (other_class) queries R@1", "biased probe: top-1 static"):
        assert label in table, label
    assert report["notes"]["mask_iou"] is None  # UCF101 knows no masks
    assert (tmp_path / "out" / "scene_bias_mine.png").is_file()


def test_the_configuration_in_docs_study_md_parses_and_its_methods_build(tmp_path):
    """docs/study.md's configuration: `dsm study`'s parser accepts it, its splits and
    out-of-context settings build, and each method merges into a `dsm fit` configuration."""
    import re
    from pathlib import Path

    import yaml

    from dsm_lightning.cli_parser import parse_config
    from dsm_lightning.evaluation.synthesized import OutOfContextTests
    from dsm_lightning.study import study_parser
    from dsm_lightning.study.runs import fit_config

    text = (Path(__file__).resolve().parents[1] / "docs" / "study.md").read_text()
    (block,) = re.findall(r"## The configuration.*?```yaml\n(.*?)```", text, re.S)
    path = tmp_path / "my_study.yaml"
    path.write_text(block)
    cfg = study_parser().parse_args(["--config", str(path)]).as_dict()
    assert cfg["splits"]["balanced_train"] is None and cfg["n_clips"] == 2
    StudySplits(**cfg["splits"])
    assert OutOfContextTests(**cfg["out_of_context"]).backgrounds == ("other_class", "stripes")
    section = yaml.safe_load(block)
    for name, method in section["methods"].items():
        merged = fit_config(0, section["trainer"], section["data"], method, tmp_path, name)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(merged))
        parsed = parse_config(["--config", str(tmp_path / f"{name}.yaml")])  # dsm fit's check
        assert parsed.model.class_path.endswith(method["model"]["class_path"])
