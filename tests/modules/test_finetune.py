"""FinetuneModule: encoder loading (ckpt, encoder.pt, user modules, errors), modes, metrics,
the never-fitted warning, where the confusion matrix goes, probe margin."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.user_backbone import MyNet
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from dsm_lightning.evaluation import video_level_predictions
from dsm_lightning.models import BackboneWrapper, EncoderLoadError, create_backbone, save_encoder
from dsm_lightning.modules.finetune import (
    FinetuneModule,
    UnfittedClassifierError,
    UnfittedClassifierWarning,
)

TINY = {"width": 2}


# ------------------------------------------------------------------------------- data


def moving_square_clips(n: int, views: int | None, seed: int, frames: int = 8, side: int = 32):
    """Clips where the class (0-3) is the direction a square moves over a noise background.

    Returns ``video`` float (n, 3, T, S, S) or (n, V, 3, T, S, S) (views differ in noise)
    and ``label`` (n,). Motion is the only cue: a per-frame view shows no class.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    n_views = views or 1
    directions = torch.tensor([[0, 1], [0, -1], [1, 0], [-1, 0]])
    start = torch.randint(12, side - 12, (n, 2), generator=gen)
    t = torch.arange(frames) - frames // 2
    pos = start[:, None, :] + 2 * directions[labels][:, None, :] * t[None, :, None]  # (n, T, 2)
    grid = torch.arange(side)
    inside_y = (grid >= pos[..., :1] - 3) & (grid < pos[..., :1] + 3)  # (n, T, S)
    inside_x = (grid >= pos[..., 1:] - 3) & (grid < pos[..., 1:] + 3)
    square = (inside_y[..., :, None] & inside_x[..., None, :]).float()  # (n, T, S, S)
    noise = torch.rand(n, n_views, 3, frames, side, side, generator=gen)
    video = (noise + 0.5 * square[:, None, None] - 0.75) / 0.3
    return {"video": video if views else video[:, 0], "label": labels}


class DictDataset(Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["label"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[i] for key, value in self.tensors.items()} | {"index": torch.tensor(i)}


class ClipDataModule(pl.LightningDataModule):
    """Train/val clips (B, C, T, S, S) and multi-view test videos (B, V, C, T, S, S)."""

    def __init__(self, n_train=256, n_test=128, views=2, batch_size=32, seed=0):
        super().__init__()
        self.train = moving_square_clips(n_train, None, seed)
        self.test = moving_square_clips(n_test, views, seed + 1)
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(DictDataset(self.train), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        test = {"video": self.test["video"][:, 0], "label": self.test["label"]}
        return DataLoader(DictDataset(test), batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(DictDataset(self.test), batch_size=self.batch_size)

    predict_dataloader = test_dataloader


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**(options | kwargs))


@pytest.fixture(scope="module")
def informative_encoder(tmp_path_factory):
    """encoder.pt of a tiny3d trained (plain torch, supervised) to see the square's motion."""
    torch.manual_seed(0)
    data = moving_square_clips(512, None, seed=10)
    encoder = create_backbone("tiny3d", **TINY)
    head = torch.nn.Linear(encoder.feature_dim, 4)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        i = torch.randint(0, 512, (32,), generator=gen)
        loss = F.cross_entropy(head(encoder(data["video"][i])), data["label"][i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    save_encoder(path, encoder, "tiny3d", TINY, num_frames=8, crop_size=32, method="supervised")
    return path


def encoder_file(tmp_path, backbone="tiny3d", kwargs=TINY, seed=0):
    torch.manual_seed(seed)
    encoder = create_backbone(backbone, **kwargs)
    return save_encoder(tmp_path / f"{backbone}.pt", encoder, backbone, kwargs), encoder


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------- loading


def test_loads_encoder_pt(tmp_path):
    path, encoder = encoder_file(tmp_path)
    model = FinetuneModule(num_classes=4, pretrained=str(path))
    assert_same_weights(model.encoder, encoder)
    assert model.hparams.backbone == "tiny3d" and model.hparams.backbone_kwargs == TINY
    assert model.classifier.in_features == encoder.feature_dim


def test_loads_real_dsm_checkpoint(tmp_path):
    from dsm_lightning import DSMLightningModule, EncoderExport

    torch.manual_seed(0)
    module = DSMLightningModule(backbone="tiny3d", backbone_kwargs=TINY, queue_size=64)
    gen = torch.Generator().manual_seed(0)
    clips = {
        key: torch.randn(16, 3, 8, 32, 32, generator=gen)
        for key in ("anchor", "positive", "negative")
    }
    clips["label"] = torch.full((16,), -1)
    loader = DataLoader(DictDataset(clips), batch_size=8)
    fit = trainer(tmp_path, max_steps=2, callbacks=[EncoderExport()])
    fit.fit(module, train_dataloaders=loader)
    ckpt = tmp_path / "dsm.ckpt"
    fit.save_checkpoint(ckpt)

    model = FinetuneModule(num_classes=5, pretrained=str(ckpt))
    assert_same_weights(model.encoder, module.encoder)
    # the momentum encoder differs after 2 steps: the exact "encoder." prefix was used
    different = [
        k for k, v in module.momentum_encoder.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, module.encoder.state_dict()[k])
    ]
    assert different
    exported = tmp_path / "encoder.pt"  # written by EncoderExport at the end of fit
    from_export = FinetuneModule(num_classes=5, pretrained=str(exported))
    assert_same_weights(from_export.encoder, module.encoder)


def test_corrupted_file_raises(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(EncoderLoadError, match="broken.pt"):
        FinetuneModule(num_classes=4, pretrained=str(bad))
    with pytest.raises(FileNotFoundError):
        FinetuneModule(num_classes=4, pretrained=str(tmp_path / "missing.pt"))


def test_mismatched_backbone_error_lists_keys_and_backbones(tmp_path):
    path, _ = encoder_file(tmp_path)
    with pytest.raises(EncoderLoadError) as error:
        FinetuneModule(num_classes=4, pretrained=str(path), backbone="c3d", backbone_kwargs={})
    message = str(error.value)
    assert "tiny3d" in message and "c3d" in message
    assert "missing keys" in message and "unexpected keys" in message
    tiny_keys = set(create_backbone("tiny3d", **TINY).state_dict())
    c3d_keys = set(create_backbone("c3d").state_dict())
    listed_unexpected = message.split("unexpected keys")[1]
    assert any(key in listed_unexpected for key in sorted(tiny_keys - c3d_keys)[:10])
    assert any(key in message.split("unexpected keys")[0] for key in c3d_keys - tiny_keys)
    with pytest.raises(EncoderLoadError, match="tiny3d"):  # same keys, other shapes
        FinetuneModule(num_classes=4, pretrained=str(path), backbone_kwargs={"width": 3})


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"mode": "frozen"}, "mode"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"lr_schedule": "poly"}, "lr_schedule"),
        ({"dropout": 1.0}, "dropout"),
        ({"class_names": ["a"]}, "class_names"),
        ({"freeze_stages": 99}, "freeze_stages"),
    ],
)
def test_invalid_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        FinetuneModule(**({"num_classes": 4, "backbone": "tiny3d", "backbone_kwargs": TINY}
                          | kwargs))


# ------------------------------------------------------------------------------ modes


def test_linear_mode_trains_only_the_classifier(tmp_path):
    path, encoder = encoder_file(tmp_path)
    model = FinetuneModule(
        num_classes=4, pretrained=str(path), mode="linear", optimizer="adamw", lr=1e-2
    )
    head_before = model.classifier.weight.detach().clone()
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, ClipDataModule(n_train=64))
    assert_same_weights(model.encoder, encoder)  # BN running stats untouched too
    assert not model.encoder.training
    assert not torch.equal(model.classifier.weight, head_before)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_finetune_mode_with_frozen_stage_and_backbone_lr(tmp_path):
    path, encoder = encoder_file(tmp_path)
    model = FinetuneModule(
        num_classes=4, pretrained=str(path), freeze_stages=1, backbone_lr=1e-2, lr=1e-1
    )
    fit = trainer(tmp_path, max_steps=3, limit_val_batches=0)
    fit.fit(model, ClipDataModule(n_train=64))
    groups = {g["name"]: g for g in fit.optimizers[0].param_groups}
    assert groups["backbone"]["initial_lr"] == 1e-2 and groups["classifier"]["initial_lr"] == 1e-1
    before, after = encoder.state_dict(), model.encoder.state_dict()
    first = "model.features.0.weight"  # the first stage (conv 1) is frozen
    torch.testing.assert_close(after[first], before[first], rtol=0, atol=0)
    assert not torch.equal(after["model.features.3.weight"], before["model.features.3.weight"])


def test_test_step_is_video_level_and_writes_confusion(tmp_path):
    names = ["right", "left", "down", "up"]
    model = FinetuneModule(
        num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2, n_crops=1,
        class_names=names, require_fitted=False,  # measure the random classifier on purpose
    )
    data = ClipDataModule(n_test=24, views=2, batch_size=8)
    logger = CSVLogger(tmp_path / "runs", name="ft")
    with pytest.warns(UnfittedClassifierWarning, match="never fitted"):  # no fit here
        results = trainer(tmp_path, logger=logger).test(model, data, verbose=False)[0]
    model.eval()
    with torch.no_grad():
        video = data.test["video"]
        logits = model(video.flatten(0, 1)).view(24, 2, 4)
    probs = video_level_predictions(logits)
    expected_top1 = (probs.argmax(1) == data.test["label"]).float().mean().item()
    assert results["test/acc_top1"] == pytest.approx(expected_top1, abs=1e-6)
    clip_top1 = (logits.argmax(-1) == data.test["label"][:, None]).float().mean().item()
    assert results["test/clip_acc_top1"] == pytest.approx(clip_top1, abs=1e-6)
    confusion = model.test_results["confusion_matrix"]
    assert confusion.sum() == 24 and confusion.trace() == round(expected_top1 * 24)
    per_class = model.test_results["per_class_accuracy"]
    assert list(per_class) == names
    png = tmp_path / "runs" / "ft" / "version_0" / "confusion_matrix.png"
    assert png.stat().st_size > 1000 and model.test_results["confusion_matrix_png"] == str(png)

    with pytest.warns(UnfittedClassifierWarning):
        predictions = trainer(tmp_path).predict(model, data)
    torch.testing.assert_close(torch.cat(predictions), probs, atol=1e-5, rtol=1e-5)


def test_reload_own_checkpoint_without_pretrained_file(tmp_path):
    path, _ = encoder_file(tmp_path)
    model = FinetuneModule(num_classes=4, pretrained=str(path), mode="linear")
    fit = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    fit.fit(model, ClipDataModule(n_train=16, batch_size=8))
    fit.save_checkpoint(tmp_path / "ft.ckpt")
    path.unlink()  # the finetune checkpoint is self-contained
    loaded = FinetuneModule.load_from_checkpoint(tmp_path / "ft.ckpt")
    assert_same_weights(loaded, model)
    assert loaded.hparams.mode == "linear" and loaded.hparams.backbone == "tiny3d"


# ------------------------------------------------------------------------------ probe


def probe_accuracy(tmp_path, pretrained) -> float:
    torch.manual_seed(0)
    model = FinetuneModule(
        num_classes=4, pretrained=pretrained, backbone="tiny3d", backbone_kwargs=TINY,
        mode="linear", optimizer="adamw", lr=3e-2, weight_decay=0.0, dropout=0.0,
        lr_schedule="constant", n_clips=2, n_crops=1,
    )
    data = ClipDataModule(n_train=256, n_test=128, batch_size=32, seed=20)
    fit = trainer(tmp_path, max_epochs=6, limit_val_batches=0)
    fit.fit(model, data)
    return fit.test(model, data, verbose=False)[0]["test/acc_top1"]


def test_linear_probe_beats_random_init(tmp_path, informative_encoder):
    pretrained = probe_accuracy(tmp_path, str(informative_encoder))
    random = probe_accuracy(tmp_path, None)
    print("probe accuracy pretrained", pretrained, "random", random)
    assert pretrained >= 0.85
    assert pretrained - random >= 0.4, (pretrained, random)


# --------------------------------------------------------------- fitted or not, outputs


def _unfitted_warnings(record) -> list:
    return [w for w in record if issubclass(w.category, UnfittedClassifierWarning)]


def test_never_fitted_classifier_warns_and_a_fitted_checkpoint_does_not(tmp_path, monkeypatch):
    """test/validate warn on an untrained classifier; after fit, or from the checkpoint of
    a fit (Trainer ckpt_path or load_from_checkpoint), they do not."""
    data = ClipDataModule(n_train=16, n_test=8, batch_size=8)
    model = FinetuneModule(num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2,
                           n_crops=1, require_fitted=False)
    assert not model.classifier_fitted
    for run in (trainer(tmp_path).test, trainer(tmp_path).validate):
        with pytest.warns(UnfittedClassifierWarning, match="never fitted"):
            run(model, data, verbose=False)
    unfitted_ckpt = tmp_path / "unfitted.ckpt"
    fit = trainer(tmp_path, max_steps=0)
    fit.fit(model, data)
    fit.save_checkpoint(unfitted_ckpt)

    fit = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit.fit(model, data)  # the sanity check / validation during fit do not warn
        fit.test(model, data, verbose=False)
    assert model.classifier_fitted and not _unfitted_warnings(record)
    fitted_ckpt = tmp_path / "fitted.ckpt"
    fit.save_checkpoint(fitted_ckpt)

    fresh = FinetuneModule(num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2,
                           n_crops=1, require_fitted=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path).test(fresh, data, ckpt_path=fitted_ckpt, verbose=False)
        loaded = FinetuneModule.load_from_checkpoint(fitted_ckpt)
        trainer(tmp_path).validate(loaded, data, verbose=False)
    assert fresh.classifier_fitted and loaded.classifier_fitted
    assert not _unfitted_warnings(record)
    with pytest.warns(UnfittedClassifierWarning):
        trainer(tmp_path).test(fresh, data, ckpt_path=unfitted_ckpt, verbose=False)


def test_without_logger_the_confusion_matrix_is_not_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default root dir is the working directory
    model = FinetuneModule(num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2,
                           n_crops=1)
    model.classifier_fitted = True
    run = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False)
    run.test(model, ClipDataModule(n_train=8, n_test=8, batch_size=8), verbose=False)
    assert model.test_results["confusion_matrix"].sum() == 8
    assert "confusion_matrix_png" not in model.test_results
    assert not list(tmp_path.rglob("*.png")) and os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ user module


def _same_backbone_weights(module: torch.nn.Module, reference: BackboneWrapper) -> None:
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(module.state_dict()[key], value, rtol=0, atol=0)


def test_bare_user_module_loads_an_encoder_pt_of_a_wrapped_one(tmp_path):
    """encoder.pt written from BackboneWrapper(MyNet()) (keys model.*) -> backbone=MyNet()."""
    torch.manual_seed(0)
    trained = BackboneWrapper(MyNet())
    trained.model.norm.running_var.mul_(3.0)
    path = save_encoder(tmp_path / "encoder.pt", trained, None)
    model = FinetuneModule(num_classes=4, pretrained=str(path), backbone=MyNet())
    assert isinstance(model.encoder, BackboneWrapper) and model.classifier.in_features == 6
    _same_backbone_weights(model.encoder, trained)
    assert model.hparams.backbone is None  # a module is not a hyper-parameter
    random_init = FinetuneModule(num_classes=4, backbone=MyNet())
    assert random_init.encoder.feature_dim == 6

    fit = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    fit.fit(model, ClipDataModule(n_train=8, batch_size=8))
    fit.save_checkpoint(tmp_path / "ft.ckpt")  # reloads with the module passed again
    loaded = FinetuneModule.load_from_checkpoint(tmp_path / "ft.ckpt", backbone=MyNet())
    assert_same_weights(loaded, model)


def test_user_module_pretrained_by_dsm_loads_into_a_bare_module(tmp_path):
    """Both directions through the pretraining module: pretrain MyNet(), load into MyNet()."""
    from dsm_lightning import DSMLightningModule

    torch.manual_seed(0)
    module = DSMLightningModule(backbone=MyNet(), queue_size=16)
    gen = torch.Generator().manual_seed(0)
    clips = {key: torch.randn(8, 3, 4, 16, 16, generator=gen)
             for key in ("anchor", "positive", "negative")}
    clips["label"] = torch.full((8,), -1)
    trainer(tmp_path, max_steps=2).fit(module, train_dataloaders=DataLoader(
        DictDataset(clips), batch_size=4))
    path = save_encoder(tmp_path / "user_encoder.pt", module.encoder, None)  # what the export writes
    model = FinetuneModule(num_classes=4, pretrained=str(path), backbone=MyNet())
    _same_backbone_weights(model.encoder, module.encoder)
    video = torch.randn(2, 3, 4, 16, 16)
    torch.testing.assert_close(model.eval().features(video), module.encoder.eval()(video))


@pytest.mark.parametrize("name", ["finetune_ucf101_split1", "finetune_hmdb51_split1"])
def test_finetune_configs_hold_out_a_validation_split(name):
    """UCF101 / HMDB51 have no validation split of their own: without val_split a fit shows
    no validation curve."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "configs" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())["data"]["init_args"]
    assert 0.0 < data["val_split"] < 0.5 and data["source"] in ("ucf101", "hmdb51")


def test_require_fitted_raises_instead_of_warning(tmp_path):
    """The default, in Python as under `dsm test`: an error on every rank instead of a
    rank-zero warning; a checkpoint keeps the choice."""
    model = FinetuneModule(num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2,
                           n_crops=1)
    assert model.require_fitted and model.hparams.require_fitted
    with pytest.raises(UnfittedClassifierError, match="never fitted"):
        trainer(tmp_path).test(model, ClipDataModule(n_train=8, n_test=8, batch_size=8))
    assert issubclass(UnfittedClassifierError, ValueError)
    lenient = FinetuneModule(num_classes=4, backbone="tiny3d", backbone_kwargs=TINY, n_clips=2,
                             n_crops=1, require_fitted=False)
    trainer(tmp_path, max_steps=0).fit(lenient, ClipDataModule(n_train=8, batch_size=8))
    lenient.trainer.save_checkpoint(tmp_path / "lenient.ckpt")
    assert not FinetuneModule.load_from_checkpoint(tmp_path / "lenient.ckpt").require_fitted
