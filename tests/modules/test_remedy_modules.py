"""BEModule and FAMEModule on the shared base: their losses against a direct computation,
queue updates, a few training steps with encoder export, and BE on top of DSM as one `dsm fit`
configuration."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from helpers.pretrain_data import TripletDataModule, make_triplets

import dsm_lightning
from dsm_lightning import cli
from dsm_lightning.callbacks.export import EncoderExport
from dsm_lightning.disturb import ClipTransform
from dsm_lightning.losses import dsm_infonce_loss
from dsm_lightning.models import load_encoder
from dsm_lightning.modules.base import ContrastiveModule
from dsm_lightning.modules.be import BEModule
from dsm_lightning.modules.fame import FAMEModule
from dsm_lightning.modules.moco import MoCoModule

TINY = {"backbone": "tiny3d", "backbone_kwargs": {"width": 4}}


def _module(cls, **kwargs):
    return cls(**{**TINY, "queue_size": 64, **kwargs})


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    return make_triplets(n, frames=4, size=16, seed=1)


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments sit in sys.argv."""
    monkeypatch.setattr(sys, "argv", ["dsm"])


def test_public_names_method_names_and_defaults():
    assert dsm_lightning.BEModule is BEModule and dsm_lightning.FAMEModule is FAMEModule
    assert dsm_lightning.BackgroundErasingBuilder.__name__ == "BackgroundErasingBuilder"
    assert dsm_lightning.FAMEBuilder.__name__ == "FAMEBuilder"
    assert (BEModule.method_name, FAMEModule.method_name) == ("be", "fame")
    for cls in (BEModule, FAMEModule):
        assert issubclass(cls, MoCoModule) and issubclass(cls, ContrastiveModule)
        assert not cls.needs_negative
    fame = FAMEModule(**TINY)  # train.py: --moco_t 0.1, the Kinetics queue 65536
    assert (fame.hparams.temperature, fame.hparams.queue_size, fame.hparams.symmetric) == (
        0.1, 65536, True)
    be = BEModule(**TINY)  # option.py: tau 0.07, EMA 0.999
    assert (be.hparams.temperature, be.hparams.momentum) == (0.07, 0.999)


def test_be_loss_is_moco_with_the_distracting_clip_as_query_plus_an_optional_negative():
    torch.manual_seed(0)
    module = _module(BEModule)
    batch = _batch()
    module.queue.enqueue(torch.nn.functional.normalize(torch.randn(8, 128), dim=1))
    views = module.unpack_batch({k: v for k, v in batch.items() if k != "negative"})
    assert torch.equal(views["query"], batch["positive"])  # the BE clip is the query
    outputs = module.forward_views(views)
    assert "negative" not in outputs
    loss, _ = module.compute_loss(views, outputs)
    q = module.encode_query(batch["positive"])
    k = module.encode_key(batch["anchor"])
    queue, mask = module.queue_negatives(views)
    expected, _ = dsm_infonce_loss(q, k, queue, None, temperature=0.07, queue_mask=mask)
    assert torch.allclose(loss, expected, atol=1e-6)
    # with a hard negative in the batch (BE on DSM): one more column [q.k+ | q.queue | q.n]
    views = module.unpack_batch(batch)
    outputs = module.forward_views(views)
    loss_n, stats = module.compute_loss(views, outputs)
    n = module.encode_query(batch["negative"])
    expected_n, _ = dsm_infonce_loss(q, k, queue, n, temperature=0.07, queue_mask=mask)
    assert torch.allclose(loss_n, expected_n, atol=1e-6) and loss_n > loss
    assert "hard_negative_accuracy" in stats


@pytest.mark.parametrize("symmetric", [True, False])
def test_fame_loss_is_symmetrised_and_enqueues_both_key_sets(symmetric: bool):
    torch.manual_seed(0)
    module = _module(FAMEModule, symmetric=symmetric)
    batch = _batch()
    views = module.unpack_batch({k: v for k, v in batch.items() if k != "negative"})
    outputs = module.forward_views(views)
    loss, _ = module.compute_loss(views, outputs)
    f, g = module.encode_query, module.encode_key
    queue, mask = module.queue_negatives(views)
    one, _ = dsm_infonce_loss(f(batch["positive"]), g(batch["anchor"]), queue, None,
                              temperature=0.1, queue_mask=mask)
    two, _ = dsm_infonce_loss(f(batch["anchor"]), g(batch["positive"]), queue, None,
                              temperature=0.1, queue_mask=mask)
    assert torch.allclose(loss, (one + two) / 2 if symmetric else one, atol=1e-6)
    module.update_state(views, outputs)
    keys = 2 * len(batch["index"]) if symmetric else len(batch["index"])
    assert len(module.queue.valid_keys()) == keys
    assert torch.equal(module.queue.valid_ids(), batch["index"].repeat(keys // 4))


@pytest.mark.parametrize("cls", [BEModule, FAMEModule])
def test_training_steps_update_the_encoder_and_its_ema_and_export_the_method(cls, tmp_path):
    torch.manual_seed(0)
    module = _module(cls, optimizer="adamw", lr=1e-3)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path),
                         callbacks=[EncoderExport(str(tmp_path / "encoder.pt"), report=False)])
    trainer.fit(module, datamodule=TripletDataModule(n=16, batch_size=4, frames=4, size=16,
                                                     drop_negative=cls is FAMEModule))
    after = module.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"encoder", "momentum_encoder", "queue"} <= changed
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["train/loss"])))
    _, meta = load_encoder(tmp_path / "encoder.pt")
    assert meta["method"] == cls.method_name


def _synthetic_data(cache: str, augment: dict) -> dict:
    return {"class_path": "VideoDataModule", "init_args": {
        "task": "pretrain", "num_frames": 4, "stride": 2, "frame_size": 32, "crop_size": 32,
        "batch_size": 4, "num_workers": 0, "augment": augment,
        "source": {"class_path": "SyntheticSource", "init_args": {
            "num_classes": 4, "videos_per_class": 4, "eval_videos_per_class": 2,
            "num_frames": 16, "size": 32, "cache_dir": cache}}}}


@pytest.mark.parametrize(("model", "augment"), [
    ("DSMLightningModule", {"class_path": "BackgroundErasingBuilder", "init_args": {
        "base": {"class_path": "TripletBuilder", "init_args": {"negative_kinds": ["shift"]}}}}),
    ("FAMEModule", {"class_path": "FAMEBuilder"}),
], ids=["be_on_dsm", "fame"])
def test_one_fit_configuration_runs(model: str, augment: dict, tmp_path: Path):
    """BE on top of DSM (and FAME) as a single `dsm fit` YAML: parsed by the real parser,
    built, trained for a few steps; the batches carry the composed views."""
    config = {"seed_everything": 0,
              "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2,
                          "enable_progress_bar": False, "enable_model_summary": False,
                          "logger": False, "enable_checkpointing": False,
                          "default_root_dir": str(tmp_path)},
              "model": {"class_path": model, "init_args": {**TINY, "queue_size": 32}},
              "data": _synthetic_data(str(tmp_path / "cache"), augment)}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    built = cli.build_cli(["--config", str(path)], run=False)
    data = built.datamodule
    assert type(data.augment).__name__ == augment["class_path"]
    # one transform (the data module's, handed to every call): no builder holds its own
    assert not any(isinstance(v, ClipTransform) for m in data.augment.modules()
                   for v in vars(m).values())
    if model == "DSMLightningModule":
        assert type(data.augment.base).__name__ == "TripletBuilder"
    seen: list[set[str]] = []

    class Keys(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(set(batch))

    built.trainer.callbacks.append(Keys())
    built.trainer.fit(built.model, datamodule=data)
    assert built.trainer.global_step == 2
    expected = {"anchor", "positive"} | ({"negative"} if model == "DSMLightningModule" else set())
    assert seen and all(expected <= keys for keys in seen)
