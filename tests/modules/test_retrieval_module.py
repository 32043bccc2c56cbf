"""RetrievalModule: trainer.test end to end equals the plain functions, versioned result
files, k beyond the gallery, user modules, DDP gather."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers.user_backbone import MyNet
from torch.utils.data import DataLoader, Dataset

from dsm_lightning.evaluation import evaluate_retrieval, recall_at_k
from dsm_lightning.models import BackboneWrapper, EncoderLoadError, create_backbone, save_encoder
from dsm_lightning.modules.retrieval import RetrievalModule, next_version_dir

TINY = {"width": 2}
KS = (1, 2, 5, 10, 50)


class DictDataset(Dataset):
    def __init__(self, video: torch.Tensor, label: torch.Tensor):
        self.video, self.label = video, label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"video": self.video[i], "label": self.label[i], "index": torch.tensor(i)}


def clips(n: int, seed: int, views: int = 2) -> DictDataset:
    """Videos whose class (0-2) sets a colour bias, so retrieval is better than chance."""
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 3, (n,), generator=gen)
    video = torch.randn(n, views, 3, 4, 16, 16, generator=gen)
    video[:, :, 0] += label.float().view(n, 1, 1, 1, 1)
    return DictDataset(video, label)


class RetrievalData(pl.LightningDataModule):
    """``test_dataloader`` = [gallery (train split), queries (test split)]."""

    def __init__(self, n_gallery: int = 13, n_query: int = 7, batch_size: int = 4):
        super().__init__()
        self.gallery, self.query = clips(n_gallery, 0), clips(n_query, 1)
        self.batch_size = batch_size

    def test_dataloader(self):
        return [
            DataLoader(self.gallery, batch_size=self.batch_size),
            DataLoader(self.query, batch_size=self.batch_size),
        ]


def encoder_file(tmp_path):
    torch.manual_seed(0)
    encoder = create_backbone("tiny3d", **TINY)
    return save_encoder(tmp_path / "encoder.pt", encoder, "tiny3d", TINY), encoder.eval()


def brute_force(encoder, data: RetrievalData, ks):
    """Features by hand (per view, normalise, mean, renormalise) and a loop over queries."""

    def features(dataset):
        with torch.no_grad():
            out = torch.stack([
                F.normalize(F.normalize(encoder(v), dim=1).mean(0), dim=0) for v in dataset.video
            ])
        return out, dataset.label

    gallery, gallery_labels = features(data.gallery)
    query, query_labels = features(data.query)
    sims = query @ gallery.T
    recalls = {}
    for k in ks:
        hits = 0
        for i in range(len(query)):
            top = sims[i].argsort(descending=True)[:k]
            hits += bool((gallery_labels[top] == query_labels[i]).any())
        recalls[k] = hits / len(query)
    return recalls, (query, query_labels, gallery, gallery_labels)


def assert_recalls(recalls: dict[int, float], expected: dict[int, float], gallery: int) -> None:
    """Equal to the brute force for k < gallery size, NaN from there on."""
    assert list(recalls) == list(expected)
    for k, value in recalls.items():
        if k >= gallery:
            assert math.isnan(value), k
        else:
            assert value == pytest.approx(expected[k]), k


def test_trainer_test_matches_brute_force_and_writes_files(tmp_path):
    path, encoder = encoder_file(tmp_path)
    data = RetrievalData()
    module = RetrievalModule(pretrained=str(path), ks=KS, output_dir=str(tmp_path / "out"))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"k = 50 is reported as NaN.*gallery size \(13"):
        results = trainer.test(module, data, verbose=False)
    expected, (query, query_labels, gallery, gallery_labels) = brute_force(encoder, data, KS)
    assert_recalls(module.recalls, expected, gallery=13)
    logged = {key.split("/dataloader_idx")[0]: value for key, value in results[0].items()}
    assert_recalls({k: logged[f"test/recall@{k}"] for k in KS}, expected, gallery=13)

    out = tmp_path / "out" / "version_0"
    assert module.results_dir == out
    assert sorted(p.name for p in out.iterdir()) == ["features.pt", "neighbours.json",
                                                     "recall.json"]
    saved = torch.load(out / "features.pt", weights_only=True)
    torch.testing.assert_close(saved["gallery"]["features"], gallery, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(saved["query"]["features"], query, atol=1e-5, rtol=1e-5)
    assert saved["gallery"]["index"].tolist() == list(range(13))
    neighbours = json.loads((out / "neighbours.json").read_text())
    assert len(neighbours) == 7 and len(neighbours[0]["neighbours"]) == 13
    top1 = (query @ gallery.T).argmax(1)
    assert [row["neighbours"][0] for row in neighbours] == top1.tolist()
    recall_file = json.loads((out / "recall.json").read_text())
    assert recall_file == {str(k): None if k >= 13 else expected[k] for k in KS}

    # a rerun writes version_1 and leaves version_0 alone; the warning is not repeated
    before = (out / "recall.json").stat().st_mtime_ns
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.test(module, data, verbose=False)
    assert not [w for w in record if "reported as NaN" in str(w.message)]
    assert module.results_dir == tmp_path / "out" / "version_1"
    assert (module.results_dir / "recall.json").is_file()
    assert (out / "recall.json").stat().st_mtime_ns == before

    # the plain function API (no Trainer) gives the same numbers (it clamps k instead)
    loaders = data.test_dataloader()
    assert evaluate_retrieval(module.encoder, loaders[0], loaders[1], KS) == expected
    assert recall_at_k(query, query_labels, gallery, gallery_labels, KS) == expected
    assert expected[50] == 1.0  # why k >= the gallery size is meaningless


def test_next_version_dir(tmp_path):
    assert next_version_dir(tmp_path / "absent") == tmp_path / "absent" / "version_0"
    for name in ("version_0", "version_3", "version_x", "other"):
        (tmp_path / name).mkdir()
    assert next_version_dir(tmp_path) == tmp_path / "version_4"


def test_no_output_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = RetrievalModule(backbone="tiny3d", backbone_kwargs=TINY, ks=(1, 2))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(module, RetrievalData(), verbose=False)
    assert sorted(module.recalls) == [1, 2] and module.results_dir is None
    assert list(tmp_path.iterdir()) == []


def test_bare_user_module_loads_an_encoder_pt_of_a_wrapped_one(tmp_path):
    torch.manual_seed(0)
    trained = BackboneWrapper(MyNet())
    path = save_encoder(tmp_path / "encoder.pt", trained, None)
    module = RetrievalModule(pretrained=str(path), backbone=MyNet())
    assert isinstance(module.encoder, BackboneWrapper) and "backbone" not in module.hparams
    video = torch.randn(2, 3, 4, 16, 16)
    torch.testing.assert_close(module.encoder.eval()(video), trained.eval()(video))
    assert RetrievalModule(backbone=MyNet()).encoder.feature_dim == 6


def test_first_view_reduction_and_random_init():
    module = RetrievalModule(backbone="tiny3d", backbone_kwargs=TINY, clip_reduction="first")
    video = torch.randn(2, 3, 3, 4, 16, 16)
    module.eval()
    expected = F.normalize(module.encoder(video[:, 0]), dim=1)
    torch.testing.assert_close(module(video), expected)
    assert not any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize(
    "kwargs, word",
    [({"ks": (0, 5)}, "ks"), ({"clip_reduction": "max"}, "clip_reduction"),
     ({"chunk_size": 0}, "chunk_size")],
)
def test_invalid_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RetrievalModule(backbone="tiny3d", backbone_kwargs=TINY, **kwargs)


def test_mismatched_file(tmp_path):
    path, _ = encoder_file(tmp_path)
    with pytest.raises(EncoderLoadError, match="c3d"):
        RetrievalModule(pretrained=str(path), backbone="c3d", backbone_kwargs={})


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    """Gallery of 13 on 2 ranks: the sampler pads a duplicate; the gather drops it."""
    path, encoder = encoder_file(tmp_path)
    data = RetrievalData()
    expected, _ = brute_force(encoder, data, KS)
    module = RetrievalModule(pretrained=str(path), ks=KS, output_dir=str(tmp_path / "ddp"))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                         enable_progress_bar=False, default_root_dir=tmp_path)
    results = trainer.test(module, data, verbose=False)
    logged = {key.split("/dataloader_idx")[0]: value for key, value in results[0].items()}
    assert_recalls({k: logged[f"test/recall@{k}"] for k in KS}, expected, gallery=13)
    out = tmp_path / "ddp" / "version_0"
    saved = torch.load(out / "features.pt", weights_only=True)
    assert saved["gallery"]["index"].tolist() == list(range(13))
    assert saved["query"]["index"].tolist() == list(range(7))
    recall_file = json.loads((out / "recall.json").read_text())
    assert recall_file == {str(k): None if k >= 13 else expected[k] for k in KS}
