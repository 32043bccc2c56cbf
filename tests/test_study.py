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
