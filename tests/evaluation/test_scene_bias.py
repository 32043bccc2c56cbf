"""Scene-bias probe: report values, JSON/PNG outputs and the probe on a known classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from dsm_lightning.evaluation import (
    format_table,
    make_static,
    plot_per_class,
    run_scene_bias_probe,
    save_report_json,
    scene_bias_report,
)


def test_report_values_from_hand_table():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    normal = torch.tensor([0, 0, 1, 0, 2, 2])
    static = torch.tensor([0, 1, 1, 1, 0, 0])
    report = scene_bias_report(normal, static, labels, num_classes=4, class_names=list("abcd"))
    assert report.n_per_class == [2, 2, 2, 0]
    assert report.accuracy_normal == pytest.approx(5 / 6)
    assert report.accuracy_static == pytest.approx(3 / 6)
    assert report.per_class_normal[:3] == pytest.approx([1.0, 0.5, 1.0])
    assert report.per_class_static[:3] == pytest.approx([0.5, 1.0, 0.0])
    assert report.per_class_gain[:3] == pytest.approx([0.5, -0.5, 1.0])
    assert math.isnan(report.per_class_normal[3])
    # right on normal and wrong on static: rows 1, 4, 5
    assert report.contrasted_accuracy == pytest.approx(3 / 6)
    assert report.accuracy_swapped is None
    table = format_table(report)
    assert "ALL" in table and "contrasted accuracy" in table and "50.0" in table


def test_report_swapped_and_errors():
    labels = torch.tensor([0, 1])
    report = scene_bias_report(
        labels, labels, labels, pred_swapped=torch.tensor([1, 1]), labels_swapped=labels
    )
    assert report.accuracy_swapped == pytest.approx(0.5)
    assert report.per_class_swapped == pytest.approx([0.0, 1.0])
    assert "swapped" in format_table(report)
    with pytest.raises(ValueError, match="labels_swapped"):
        scene_bias_report(labels, labels, labels, pred_swapped=labels)
    with pytest.raises(ValueError, match="class names"):
        scene_bias_report(labels, labels, labels, num_classes=3, class_names=["a"])


def test_json_and_plot(tmp_path):
    labels = torch.tensor([0, 1, 1, 2])
    report = scene_bias_report(labels, torch.tensor([0, 0, 1, 1]), labels, num_classes=4)
    path = save_report_json(report, tmp_path / "sub" / "report.json")
    data = json.loads(path.read_text())
    assert data["accuracy_normal"] == 1.0 and data["per_class_normal"][3] is None
    assert data["gain"] == pytest.approx(0.5)
    png = plot_per_class(report, tmp_path / "plot.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 100


class MotionClassifier(torch.nn.Module):
    """Class 0 when the clip changes over time (motion), class 1 when it is static.

    Logits depend only on the frame-to-frame difference, so static clips always read as
    class 1.
    """

    class_names = ("moving", "still")

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, video):  # (N, C, T, H, W)
        motion = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
        return torch.stack([motion * 100 - 1, torch.zeros_like(motion)], dim=1) + self.dummy


def make_batches(views: int | None):
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(3):
        labels = torch.randint(0, 2, (4,), generator=gen)
        shape = (4, 3, 6, 8, 8) if views is None else (4, views, 3, 6, 8, 8)
        video = torch.rand(shape[:-3] + (1, 8, 8), generator=gen).expand(shape).clone()
        moving = video + torch.linspace(0, 1, 6).view(6, 1, 1)  # brightness ramp = motion
        mask = (labels == 0).view(4, *([1] * (len(shape) - 1)))
        batches.append({"video": torch.where(mask, moving, video), "label": labels})
    return batches


@pytest.mark.parametrize("views", [None, 3])
def test_probe_on_motion_classifier(tmp_path, views):
    batches = make_batches(views)
    report = run_scene_bias_probe(
        MotionClassifier(), batches, output_dir=tmp_path, swapped=batches, verbose=False
    )
    labels = torch.cat([b["label"] for b in batches])
    n_moving = int((labels == 0).sum())
    assert report.class_names == ["moving", "still"]
    assert report.accuracy_normal == 1.0
    # static clips are all "still": moving videos become wrong, still ones stay right
    assert report.per_class_static == [0.0, 1.0]
    assert report.contrasted_accuracy == pytest.approx(n_moving / labels.numel())
    assert report.accuracy_swapped == 1.0
    saved = json.loads((tmp_path / "scene_bias.json").read_text())
    assert saved["contrasted_accuracy"] == pytest.approx(report.contrasted_accuracy)
    assert (tmp_path / "scene_bias_per_class.png").stat().st_size > 1000


def test_probe_uses_datamodule_protocol():
    batches = make_batches(None)

    class FakeDataModule:
        class_names = ["a", "b"]

        def __init__(self):
            self.calls = []

        def clip_dataloader(self, split, n_clips=1, shuffle=False):
            self.calls.append((split, n_clips, shuffle))
            indexed = [{**b, "index": torch.arange(4 * i, 4 * i + 4)}
                       for i, b in enumerate(batches)]
            if split == "val_static":  # stored static clips, in another order
                indexed = [{**b, "video": make_static(b["video"])} for b in indexed[::-1]]
            if split == "other_static":
                indexed = indexed[:1]
            # uint8-like halves: the transform must be applied
            return [{**b, "video": b["video"] / 2} for b in indexed]

        def views(self, batch, stage):
            assert stage == "eval"  # evaluation clips, never training views
            return {**batch, "video": batch["video"] * 2}

    dm = FakeDataModule()
    report = run_scene_bias_probe(MotionClassifier(), dm, split="val", verbose=False)
    assert dm.calls == [("val", 1, False)]
    assert report.accuracy_normal == 1.0
    from_split = run_scene_bias_probe(
        MotionClassifier(), dm, split="val", static="val_static", swapped="val", verbose=False
    )
    assert dm.calls[1:] == [("val", 1, False), ("val_static", 1, False), ("val", 1, False)]
    assert from_split.to_dict() == report.to_dict() | {
        "accuracy_swapped": 1.0, "per_class_swapped": [1.0, 1.0]
    }
    with pytest.raises(ValueError, match="pair"):
        run_scene_bias_probe(MotionClassifier(), dm, split="val", static="other_static")

    class Logger:
        logged = {}

        def log_metrics(self, metrics):
            self.logged.update(metrics)

    logger = Logger()
    run_scene_bias_probe(MotionClassifier(), batches, logger=logger, verbose=False)
    assert logger.logged["scene_bias/acc_normal"] == 1.0


# ------------------------------------------------------------------ activation maps


class SpotClassifier(torch.nn.Module):
    """A fixed conv 'detector' of bright pixels; logit 0 = total response, logit 1 = 0."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 1, kernel_size=1)
        torch.nn.init.constant_(self.conv.weight, 1.0)
        torch.nn.init.zeros_(self.conv.bias)
        self.act = torch.nn.ReLU()

    def forward(self, video):
        response = self.act(self.conv(video)).mean(dim=(2, 3, 4))[:, 0]
        return torch.stack([response, torch.zeros_like(response)], dim=1)


def test_grad_cam_follows_the_evidence(tmp_path):
    from dsm_lightning.evaluation import grad_cam, last_feature_map_layer, save_cam_grid

    video = torch.zeros(2, 3, 4, 8, 8)
    video[0, :, :, 1, 2] = 1.0  # a bright spot that moves nowhere
    video[1, :, :, 6, 5] = 1.0
    model = SpotClassifier()
    assert last_feature_map_layer(model, video) is model.act
    cam, target = grad_cam(model, video, target=torch.tensor([0, 0]))
    assert cam.shape == (2, 4, 8, 8) and target.tolist() == [0, 0]
    assert cam.min() >= 0 and cam.max() <= 1
    peaks = [divmod(int(cam[b, 0].argmax()), 8) for b in range(2)]
    assert peaks == [(1, 2), (6, 5)]
    png = save_cam_grid(video, cam, tmp_path / "cam.png", titles=["a", "b"])
    assert png.stat().st_size > 1000


def test_grad_cam_through_frozen_linear_probe(tmp_path):
    from dsm_lightning.evaluation import grad_cam
    from dsm_lightning.modules.finetune import FinetuneModule

    model = FinetuneModule(num_classes=3, backbone="tiny3d", backbone_kwargs={"width": 2},
                           mode="linear")
    cam, target = grad_cam(model, torch.randn(2, 3, 8, 32, 32))
    assert cam.shape == (2, 8, 32, 32) and target.shape == (2,)
    assert torch.isfinite(cam).all()
