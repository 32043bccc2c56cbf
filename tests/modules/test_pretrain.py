"""Pretraining methods on one base: DSM (paper), the intra-video variant, DSM-triplet, MoCo.

EMA after the optimizer step, gradient paths, learning, exact resume, encoder export."""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from helpers.pretrain_data import TripletDataModule, make_triplets

from dsm_lightning.callbacks.export import EncoderExport
from dsm_lightning.models import load_encoder
from dsm_lightning.modules.base import ContrastiveModule
from dsm_lightning.modules.dsm import DSMLightningModule
from dsm_lightning.modules.dsm_intra import DSMIntraModule
from dsm_lightning.modules.dsm_triplet import DSMTripletModule
from dsm_lightning.modules.moco import MoCoModule

METHODS = (MoCoModule, DSMLightningModule, DSMIntraModule, DSMTripletModule)


def _module(cls: type[ContrastiveModule] = DSMLightningModule, **kwargs) -> ContrastiveModule:
    settings = dict(backbone="tiny3d", backbone_kwargs={"width": 4})
    if cls is not DSMTripletModule:
        settings["queue_size"] = 64
    settings.update(kwargs)
    return cls(**settings)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=str(tmp_path), deterministic=True)
    settings.update(kwargs)
    return pl.Trainer(**settings)


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.loss: list[float] = []
        self.hn_acc: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss.append(float(outputs["loss"]))
        if "train/hn_acc_step" in trainer.callback_metrics:
            self.hn_acc.append(float(trainer.callback_metrics["train/hn_acc_step"]))


@pytest.mark.parametrize(("cls", "bad"), [
    (MoCoModule, {"momentum": 1.5}), (MoCoModule, {"temperature": 0.0}),
    (MoCoModule, {"optimizer": "adam"}), (MoCoModule, {"query_view": "key"}),
    (MoCoModule, {"queue_size": 0}), (MoCoModule, {"lr_schedule": "step"}),
    (MoCoModule, {"momentum_schedule": "linear"}), (MoCoModule, {"lr_milestones": (-1,)}),
    (DSMLightningModule, {"hard_negative_weight": 0.0}), (DSMIntraModule, {"intra_weight": 0.0}),
    (DSMTripletModule, {"margin": -1.0}), (DSMTripletModule, {"backbone": None}),
])
def test_invalid_arguments_raise_naming_the_value(cls, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        _module(cls, **bad)


def test_the_paper_module_is_the_public_name_and_each_method_names_itself():
    import dsm_lightning

    assert dsm_lightning.DSMLightningModule is DSMLightningModule
    names = {cls.method_name for cls in METHODS}
    assert names == {"moco", "dsm", "dsm_intra", "dsm_triplet"}
    for cls in METHODS:  # every method is a subclass of the one base
        assert issubclass(cls, ContrastiveModule)


@pytest.mark.parametrize("cls", METHODS)
def test_state_dict_prefixes_follow_the_contract(cls):
    prefixes = {key.split(".")[0] for key in _module(cls).state_dict()}
    if cls is DSMTripletModule:
        assert prefixes == {"encoder", "projector"}
    else:
        assert prefixes == {"encoder", "projector", "momentum_encoder", "momentum_projector",
                            "queue"}


@pytest.mark.parametrize("cls", [DSMLightningModule, DSMIntraModule, DSMTripletModule])
def test_dsm_without_negative_in_batch_names_the_triplet_builder(cls):
    batch = make_triplets(2)
    del batch["negative"]
    with pytest.raises(ValueError, match="TripletBuilder"):
        _module(cls).training_step(batch, 0)


def test_one_training_step_applies_ema_after_the_optimizer_step(tmp_path):
    torch.manual_seed(0)
    model = _module(momentum=0.8, lr=0.1)
    theta0 = [p.detach().clone() for p in model.encoder.parameters()]
    _trainer(tmp_path, max_steps=1).fit(model, TripletDataModule(n=8, batch_size=4))
    theta1 = list(model.encoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(theta0, theta1))
    for ema, old, new in zip(model.momentum_encoder.parameters(), theta0, theta1):
        torch.testing.assert_close(ema, 0.8 * old + 0.2 * new.detach(), rtol=0, atol=1e-6)
    assert int(model.queue.ptr) == 4 and int(model.queue.filled) == 4


def test_multistep_schedule_multiplies_the_rate_at_each_milestone_epoch(tmp_path):
    class _LR(pl.Callback):
        def __init__(self):
            self.lr = []

        def on_train_batch_start(self, trainer, *args):
            self.lr.append(trainer.optimizers[0].param_groups[0]["lr"])

    record = _LR()
    model = _module(MoCoModule, lr=0.1, lr_schedule="multistep", lr_milestones=(1, 2))
    _trainer(tmp_path, max_epochs=3, callbacks=[record]).fit(
        model, TripletDataModule(n=8, batch_size=4, drop_negative=True))
    assert record.lr == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_paper_dsm_hard_negative_goes_through_the_query_encoder_never_the_ema():
    torch.manual_seed(0)
    model = _module()
    model.queue.enqueue(torch.nn.functional.normalize(torch.randn(16, 128), dim=1))
    batch = make_triplets(4)
    for key in ("anchor", "positive", "negative"):
        batch[key].requires_grad_(True)
    views = model.unpack_batch(batch)
    loss, stats = model.compute_loss(views, model.forward_views(views))
    loss.backward()
    assert batch["negative"].grad.abs().sum() > 0  # the hard-negative column reaches f
    assert batch["positive"].grad.abs().sum() > 0  # query view (query_view="positive")
    assert batch["anchor"].grad is None  # key view goes through the EMA encoder only
    for _, ema in model.momentum_pairs():
        assert all(not p.requires_grad and p.grad is None for p in ema.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    # with an empty queue the only negative column is the hard negative: the loss still
    # has a gradient with respect to the negative's embedding
    model.zero_grad()
    model.queue.filled.zero_()
    views = model.unpack_batch(make_triplets(4))
    outputs = model.forward_views(views)
    loss, _ = model.compute_loss(views, outputs)
    grads = torch.autograd.grad(loss, outputs["negative"], retain_graph=True)[0]
    assert grads.abs().sum() > 0


#: docs/method-fidelity.md, "Optimisation and loss": the public code's values.
PAPER_OPTIMISATION = {"proj_dim": 128, "proj_hidden_dim": None, "query_view": "positive",
                      "optimizer": "sgd", "lr": 0.003, "sgd_momentum": 0.9,
                      "weight_decay": 1e-4, "warmup_epochs": 0.0, "lr_schedule": "multistep",
                      "lr_milestones": (120, 160, 200), "lr_gamma": 0.1}
PAPER_QUEUE = {"temperature": 0.07, "queue_size": 3569, "momentum": 0.999,
               "momentum_schedule": "constant", "exclude_same_video": False}


@pytest.mark.parametrize(("cls", "expected"), [
    (ContrastiveModule, PAPER_OPTIMISATION),
    (MoCoModule, {**PAPER_OPTIMISATION, **PAPER_QUEUE}),
    (DSMLightningModule, {**PAPER_OPTIMISATION, **PAPER_QUEUE, "hard_negative_weight": 1.0}),
    (DSMTripletModule, {**PAPER_OPTIMISATION, "margin": 0.5, "inter_video": True,
                        "shared_pass": False}),
])
def test_paper_presets_equal_the_documented_values(cls, expected):
    assert cls.paper_settings() == expected
    if cls is ContrastiveModule:
        return
    model = cls.paper(backbone="tiny3d", backbone_kwargs={"width": 4})
    for name, value in expected.items():
        assert model.hparams[name] == value, name
    assert model.projector.hidden_dim is None and model.projector.output_dim == 128
    if cls is not DSMTripletModule:
        assert model.queue.size == 3569
    # an override wins, the rest stays the paper's
    other = cls.paper(backbone="tiny3d", backbone_kwargs={"width": 4}, lr=0.01)
    assert other.hparams.lr == 0.01 and other.hparams.optimizer == "sgd"


def test_paper_preset_step_schedule_is_constant_before_epoch_120():
    """x0.1 after epochs 120 and 160 (the public code's ``epoch > milestone``, 1-based)."""
    from dsm_lightning.schedules import lr_factor

    per_epoch = 10
    milestones = [m * per_epoch for m in PAPER_OPTIMISATION["lr_milestones"]]
    factors = [lr_factor(e * per_epoch, 2000, 0, "multistep", milestones, 0.1)
               for e in (0, 119, 120, 159, 160, 199)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_paper_dsm_loss_equals_the_slow_formula():
    """[q.k+ | q.queue | q.n] / tau with target 0, computed sample by sample."""
    torch.manual_seed(3)
    model = _module(temperature=0.2, exclude_same_video=False).eval()
    model.queue.enqueue(torch.nn.functional.normalize(torch.randn(5, 128), dim=1))
    views = model.unpack_batch(make_triplets(3))
    outputs = model.forward_views(views)
    loss, _ = model.compute_loss(views, outputs)
    q, k, n, queue = outputs["query"], outputs["key"], outputs["negative"], model.queue.keys[:5]
    expected = 0.0
    for i in range(3):
        logits = torch.cat([(q[i] * k[i]).sum()[None], queue @ q[i], (q[i] * n[i]).sum()[None]])
        expected += -torch.log_softmax(logits / 0.2, 0)[0].item() / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # the paper's negative is f(negative) in a pass of its own
    torch.testing.assert_close(n, model.encode_query(views["negative"]), rtol=0, atol=1e-6)


def test_learns_motion_loss_decreases_and_hard_negative_accuracy_rises(tmp_path):
    pl.seed_everything(0)
    # query_view="anchor": q = f(anchor) shares its scene with n, so hn_acc starts low
    model = _module(backbone_kwargs={"width": 8}, queue_size=256, optimizer="adamw", lr=1e-3,
                    momentum=0.99, query_view="anchor", lr_schedule="constant")
    record = _Record()
    _trainer(tmp_path, max_epochs=10, callbacks=[record]).fit(
        model, TripletDataModule(n=64, batch_size=16))
    assert len(record.loss) == 40 and len(record.hn_acc) == 40
    start_loss, end_loss = sum(record.loss[:4]) / 4, sum(record.loss[-8:]) / 8
    start_acc, end_acc = sum(record.hn_acc[:4]) / 4, sum(record.hn_acc[-8:]) / 8
    assert end_loss < 0.8 * start_loss, (start_loss, end_loss)
    assert start_acc < 0.5 and end_acc > start_acc + 0.4, (start_acc, end_acc)
    assert int(model.queue.filled) == 256  # the queue (bigger than the data) filled up


@pytest.mark.parametrize("cls", [MoCoModule, DSMIntraModule, DSMTripletModule])
def test_every_method_trains(tmp_path, cls):
    pl.seed_everything(0)
    model = _module(cls)
    before = copy.deepcopy(model.state_dict())
    _trainer(tmp_path, max_steps=2).fit(
        model, TripletDataModule(n=8, batch_size=4, drop_negative=cls is MoCoModule))
    after = model.state_dict()
    assert not torch.equal(before["encoder.model.features.0.weight"],
                           after["encoder.model.features.0.weight"])
    if cls is DSMTripletModule:
        assert not hasattr(model, "queue") and model.momentum_pairs() == []
    else:
        assert int(model.queue.filled) == 8
        assert not torch.equal(before["momentum_encoder.model.features.0.weight"],
                               after["momentum_encoder.model.features.0.weight"])


def test_triplet_separate_passes_like_the_public_code_or_one_shared_pass():
    torch.manual_seed(0)
    separate = _module(DSMTripletModule)
    shared = _module(DSMTripletModule, shared_pass=True)
    shared.load_state_dict(separate.state_dict())
    views = separate.unpack_batch(make_triplets(4))
    # eval mode (running BatchNorm statistics): the embeddings do not depend on the pass
    a, b = separate.eval().forward_views(views), shared.eval().forward_views(views)
    for key in ("query", "key", "negative"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    # train mode: batch statistics differ between one pass of 3B clips and three of B
    a, b = separate.train().forward_views(views), shared.train().forward_views(views)
    assert not torch.allclose(a["negative"], b["negative"], atol=1e-4)
    loss, stats = separate.compute_loss(views, a)
    assert torch.isfinite(loss) and "inter_loss" in stats


def _fit(tmp_path, ckpt_path=None, every_n_train_steps=None, repeat=1):
    pl.seed_everything(0)
    model = _module(momentum=0.9, momentum_schedule="cosine", warmup_epochs=1, lr=0.05,
                    queue_size=20)
    callbacks = []
    if every_n_train_steps is not None:  # keep every checkpoint of the run
        callbacks.append(pl.callbacks.ModelCheckpoint(
            dirpath=tmp_path, save_top_k=-1, every_n_train_steps=every_n_train_steps,
            filename="{step}"))
    trainer = _trainer(tmp_path, max_epochs=4, enable_checkpointing=bool(callbacks),
                       callbacks=callbacks)
    data = TripletDataModule(n=24 // repeat, batch_size=4, repeat=repeat)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize(("half_step", "repeat"), [(12, 1), (9, 6)],
                         ids=["epoch-boundary", "mid-epoch"])
def test_resume_is_exact(tmp_path, half_step, repeat):
    """24 steps in one run == the same run stopped at a checkpoint + resumed: same params,
    EMA weights, queue and pointer.

    The checkpoints are written by ``ModelCheckpoint`` in ``on_train_batch_end`` (before the
    module's own hook), so an EMA / enqueue done in the module's ``on_train_batch_end`` would
    be missing from them. Mid-epoch: this tensor DataModule is not resumable, so that case
    uses data whose every batch is the same (``repeat``) and checks only that the module's
    state is complete at step 9 of 6-step epochs (the real DataModule's mid-epoch resume is
    tested through ``dsm fit --ckpt_path`` in the data tests).
    """
    full = _fit(tmp_path, every_n_train_steps=half_step, repeat=repeat)
    resumed = _fit(tmp_path / "resumed", ckpt_path=str(tmp_path / f"step={half_step}.ckpt"),
                   repeat=repeat)
    assert int(full.queue.ptr) == int(resumed.queue.ptr) == (4 * 24) % 20
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for key, value in full_state.items():
        torch.testing.assert_close(resumed_state[key], value, rtol=0, atol=1e-6, msg=key)


def test_encoder_export_callback_writes_relative_to_the_working_directory(
        tmp_path, monkeypatch, capsys):
    pl.seed_everything(0)
    monkeypatch.chdir(tmp_path)
    model = _module()
    trainer = _trainer(tmp_path / "root", max_steps=2,
                       callbacks=[EncoderExport("exports/encoder.pt")])
    trainer.fit(model, TripletDataModule(n=8, batch_size=4))
    path = tmp_path / "exports" / "encoder.pt"  # where the user ran, not under the log dir
    raw = torch.load(path, weights_only=True)
    assert raw["backbone"] == "tiny3d" and raw["backbone_kwargs"] == {"width": 4}
    assert raw["method"] == "dsm" and raw["feature_dim"] == 32
    assert f"encoder  {path}" in capsys.readouterr().out  # fit says where it went
    video = make_triplets(3)["anchor"]
    expected = model.extract_features(video)
    encoder, _ = load_encoder(path)
    torch.testing.assert_close(encoder.eval()(video), expected)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    from_ckpt, meta = load_encoder(tmp_path / "model.ckpt")
    assert meta["backbone"] == "tiny3d" and meta["method"] == "dsm"
    torch.testing.assert_close(from_ckpt.eval()(video), expected)


def test_encoder_export_defaults_to_the_log_dir_and_reports_checkpoints(tmp_path, capsys):
    from pytorch_lightning.loggers import CSVLogger

    export = EncoderExport()
    checkpoint = pl.callbacks.ModelCheckpoint(save_last=True)
    trainer = _trainer(tmp_path, max_steps=2, enable_checkpointing=True,
                       logger=CSVLogger(str(tmp_path), name="run", version=""),
                       callbacks=[export, checkpoint])
    trainer.fit(_module(MoCoModule), TripletDataModule(n=8, batch_size=4, drop_negative=True))
    assert export.written == (tmp_path / "run" / "encoder.pt").resolve()
    assert torch.load(export.written, weights_only=True)["method"] == "moco"
    out = capsys.readouterr().out
    assert str(export.written) in out and "last checkpoint" in out
    assert str((tmp_path / "run" / "checkpoints" / "last.ckpt").resolve()) in out


def test_user_module_as_backbone_is_wrapped():
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 6, 3, padding=1), torch.nn.ReLU())
    model = DSMLightningModule(backbone=net, queue_size=8)
    assert model.encoder.feature_dim == 6 and model.hparams.backbone is None
    assert model.extract_features(make_triplets(2)["anchor"]).shape == (2, 6)


def test_subclass_adds_a_loss_term_without_copying_training_step():
    class WithRegulariser(DSMLightningModule):
        def compute_loss(self, views, outputs):
            loss, stats = super().compute_loss(views, outputs)
            stats["reg"] = outputs["query"].mean().detach()
            return loss + 0.0 * outputs["query"].mean(), stats

    model = WithRegulariser(backbone="tiny3d", backbone_kwargs={"width": 4}, queue_size=8)
    views = model.unpack_batch(make_triplets(2))
    loss, stats = model.compute_loss(views, model.forward_views(views))
    assert "reg" in stats and loss.requires_grad


# ----------------------------------------------------------------------------- kNN monitor


def test_weighted_knn_vote_hand_computed():
    from dsm_lightning.callbacks.knn import weighted_knn_predict

    memory = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.7, 0.72]])
    assert weighted_knn_predict(query, memory, labels, 2, k=2).tolist() == [0, 1, 1]
    # k=3 at a query between the classes: weights e^{cos/T} decide, not the majority count
    q = torch.tensor([[0.2, 1.0]])
    m = torch.tensor([[0.0, 1.0], [1.0, 0.1], [1.0, 0.2]])
    assert weighted_knn_predict(q, m, torch.tensor([1, 0, 0]), 2, k=3, temperature=0.07) == 1
    assert weighted_knn_predict(q, m, torch.tensor([1, 0, 0]), 2, k=3, temperature=100.0) == 0


class _ClipData(TripletDataModule):
    """Adds the datamodule API the kNN monitor uses: labelled uint8 clips + eval transform."""

    def views(self, batch, stage):
        assert stage == "eval"  # the monitor asks for evaluation clips, never triplets
        return dict(batch, video=(batch["video"].float() / 255 - 0.5) / 0.25)

    def __init__(self, has_val: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.has_val = has_val
        self.calls: list[str] = []

    def clip_dataloader(self, split, n_clips=1, shuffle=False, batch_size=None):
        if split == "val" and not self.has_val:
            raise ValueError("no val split")
        self.calls.append(split)
        clips = ((self.tensors["anchor"] * 0.25 + 0.5).clamp(0, 1) * 255).to(torch.uint8)
        items = [{"video": v, "label": lab} for v, lab in zip(clips, self.tensors["label"])]
        return torch.utils.data.DataLoader(items, batch_size=batch_size or 8)


def test_knn_monitor_logs_top1_equal_to_direct_computation(tmp_path):
    from dsm_lightning.callbacks.knn import KNNMonitor, weighted_knn_predict

    pl.seed_everything(0)
    model = _module()
    data = _ClipData(n=16, batch_size=8)
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[KNNMonitor(k=3)])
    trainer.fit(model, data)
    assert data.calls == ["train", "val"]
    clips = data.views(next(iter(data.clip_dataloader("val", batch_size=16))), "eval")["video"]
    features, labels = model.extract_features(clips), data.tensors["label"]
    expected = (weighted_knn_predict(features, features, labels, 4, k=3) == labels).float().mean()
    assert trainer.callback_metrics["val/knn_top1"].item() == pytest.approx(expected.item())


def test_knn_monitor_skips_without_val_split(tmp_path):
    from dsm_lightning.callbacks.knn import KNNMonitor

    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[KNNMonitor()])
    trainer.fit(_module(), _ClipData(has_val=False, n=8, batch_size=4))
    assert "val/knn_top1" not in trainer.callback_metrics
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[KNNMonitor()])
    trainer.fit(_module(), TripletDataModule(n=8, batch_size=4))  # no clip_dataloader at all
    assert "val/knn_top1" not in trainer.callback_metrics


def test_on_the_real_synthetic_video_datamodule(tmp_path):
    """VideoDataModule(source='synthetic') + TripletBuilder + kNN monitor + encoder export."""
    from dsm_lightning.callbacks.knn import KNNMonitor
    from dsm_lightning.data.datamodule import VideoDataModule
    from dsm_lightning.data.sources import SyntheticSource

    pl.seed_everything(0)
    source = SyntheticSource(num_classes=4, videos_per_class=8, eval_videos_per_class=4,
                             num_frames=20, size=32, bias=0.75, cache_dir=str(tmp_path / "synth"))
    data = VideoDataModule(source=source, num_workers=0, batch_size=8,
                           num_frames=8, stride=2, frame_size=32, crop_size=32, val_split=0.25)
    model = _module(optimizer="adamw", lr=1e-3)
    record = _Record()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[record, KNNMonitor(k=5),
                                                           EncoderExport(str(tmp_path / "encoder.pt"))])
    trainer.fit(model, data)
    assert len(record.hn_acc) == len(record.loss) > 0
    # the logged value is the weighted kNN of the val clips against the train clips, recomputed
    # here from the final encoder with the data module's evaluation transform
    from dsm_lightning.callbacks.knn import weighted_knn_predict

    def embed(split):
        batch = next(iter(data.clip_dataloader(split, batch_size=64)))
        clips = data.views(batch, "eval")["video"]
        return model.extract_features(clips), batch["label"]

    memory, memory_labels = embed("train")
    query, query_labels = embed("val")
    expected = (weighted_knn_predict(query, memory, memory_labels, 4, k=5, temperature=0.07)
                == query_labels).float().mean()
    assert trainer.callback_metrics["val/knn_top1"].item() == pytest.approx(expected.item())
    assert int(model.queue.filled) == min(64, 8 * len(record.loss))
    _, meta = load_encoder(tmp_path / "encoder.pt")
    assert meta["normalization"]["mean"] == pytest.approx(list(data.transform.mean))
    assert meta["num_frames"] == 8 and meta["crop_size"] == 32


def test_several_hard_negatives_per_sample():
    torch.manual_seed(0)
    model = _module().eval()  # running BatchNorm statistics: embeddings independent of the batch
    batch = make_triplets(3)
    batch["negative"] = torch.stack([batch["negative"], batch["anchor"].flip(2)], dim=1)
    views = model.unpack_batch(batch)
    outputs = model.forward_views(views)
    assert outputs["negative"].shape == (3, 2, 128)
    torch.testing.assert_close(outputs["negative"][:, 1],
                               model.encode_query(batch["anchor"].flip(2)), atol=1e-5, rtol=0)
    loss, stats = model.compute_loss(views, outputs)
    # slow reference: per sample -log softmax of [q.k+ | q.queue | q.n1 | q.n2] / tau at 0
    q, k, n = outputs["query"], outputs["key"], outputs["negative"]
    queue, mask = model.queue_negatives(views)
    tau, expected, beaten = model.hparams.temperature, [], 0
    for i in range(3):
        logits = [q[i] @ k[i]] + [q[i] @ queue[j] for j in range(queue.shape[0])
                                  if mask is None or not mask[i, j]]
        logits += [q[i] @ n[i, m] for m in range(2)]
        expected.append(-torch.log_softmax(torch.stack(logits) / tau, 0)[0])
        beaten += sum(int(q[i] @ k[i] > q[i] @ n[i, m]) for m in range(2))
    torch.testing.assert_close(loss, torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)
    assert stats["hard_negative_accuracy"].item() == pytest.approx(beaten / 6)


def test_intra_variant_embeds_anchor_and_negatives_in_one_pass_of_the_query_encoder():
    torch.manual_seed(0)
    model = _module(DSMIntraModule)
    model.queue.enqueue(torch.nn.functional.normalize(torch.randn(16, 128), dim=1))
    batch = make_triplets(4)
    for key in ("anchor", "positive", "negative"):
        batch[key].requires_grad_(True)
    views = model.unpack_batch(batch)
    outputs = model.forward_views(views)
    loss, stats = model.compute_loss(views, outputs)
    loss.backward()
    # anchor and negatives go through f together: both get gradient
    assert batch["anchor"].grad.abs().sum() > 0 and batch["negative"].grad.abs().sum() > 0
    q, a, n = outputs["query"], outputs["online_key"], outputs["negative"]
    logits = torch.stack([(q * a).sum(1), (q * n).sum(1)], 1) / model.hparams.temperature
    intra = torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert stats["intra_loss"].item() == pytest.approx(intra.item(), rel=1e-5)
    assert stats["hard_negative_accuracy"].item() == ((q * a).sum(1) > (q * n).sum(1)).float().mean().item()
    with torch.no_grad():  # one pass: the same BatchNorm batch as f(cat(anchor, negative))
        joint = model.encode_query(torch.cat([batch["anchor"], batch["negative"]]))
    torch.testing.assert_close(a.detach(), joint[:4], rtol=0, atol=1e-6)


def test_intra_variant_loss_is_moco_term_plus_weighted_intra_term():
    torch.manual_seed(1)
    model = _module(DSMIntraModule, intra_weight=3.0)
    views = model.unpack_batch(make_triplets(4))
    outputs = model.forward_views(views)
    loss, stats = model.compute_loss(views, outputs)
    moco, _ = MoCoModule.compute_loss(model, views, outputs)
    assert loss.item() == pytest.approx(moco.item() + 3.0 * stats["intra_loss"].item(), rel=1e-5)


def test_same_video_keys_are_masked_out_of_the_queue():
    """A queue holding an older key of the query's own video must not use it as a negative."""
    torch.manual_seed(2)
    model = _module(MoCoModule)
    batch = make_triplets(4)
    views = model.unpack_batch(batch)
    outputs = model.forward_views(views)
    model.queue.enqueue(outputs["key"], ids=views["index"])  # stale copies of the positives
    masked, _ = model.compute_loss(views, outputs)
    model.hparams.exclude_same_video = False
    unmasked, _ = model.compute_loss(views, outputs)
    # reference: each query's negatives are the keys of the *other* videos only
    q, k, tau = outputs["query"], outputs["key"], model.hparams.temperature
    expected = 0.0
    for i in range(4):
        others = torch.cat([k[:i], k[i + 1:]])
        logits = torch.cat([(q[i] * k[i]).sum()[None], others @ q[i]]) / tau
        expected += -torch.log_softmax(logits, 0)[0].item() / 4
    assert masked.item() == pytest.approx(expected, rel=1e-5)
    assert unmasked.item() > masked.item()  # the stale positives acted as false negatives


@pytest.mark.slow
def test_learns_motion_on_the_synthetic_video_source(tmp_path):
    """On the package's own synthetic videos (decoded, triplets built by TripletBuilder), DSM's
    loss falls and the hard-negative accuracy rises well above its start."""
    from dsm_lightning import TripletBuilder, VideoDataModule
    from dsm_lightning.data.sources import SyntheticSource
    from dsm_lightning.disturb import ClipTransform

    pl.seed_everything(0, verbose=False)
    data = VideoDataModule(
        source=SyntheticSource(num_classes=4, videos_per_class=6, eval_videos_per_class=2,
                               num_frames=24, size=32, cache_dir=str(tmp_path / "synthetic")),
        task="pretrain", num_frames=8, stride=2, frame_size=32, crop_size=32, batch_size=8,
        num_workers=0, transform=ClipTransform(flip_prob=0.0),
        augment=TripletBuilder(negative_mode="all",
                               negative_kinds=("reverse", "shuffle", "static")),
    )
    model = _module(DSMIntraModule, backbone_kwargs={"width": 8}, intra_weight=10.0,
                    optimizer="adamw", lr=2e-3, temperature=0.1, momentum=0.99)
    record = _Record()
    _trainer(tmp_path, max_epochs=80, callbacks=[record], deterministic=False).fit(
        model, datamodule=data)
    quarter = len(record.loss) // 4
    first_acc = sum(record.hn_acc[:quarter]) / quarter
    last_acc = sum(record.hn_acc[-quarter:]) / quarter
    assert last_acc > first_acc + 0.1, (first_acc, last_acc)
    assert sum(record.loss[-quarter:]) < 0.9 * sum(record.loss[:quarter])
