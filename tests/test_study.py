"""The scene-bias study on features: a motion encoder and a scene encoder are told apart."""

from __future__ import annotations

import pytest
import torch

from dsm_lightning.evaluation.study import (
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
