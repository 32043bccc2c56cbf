"""Loaders: the one loader factory, a pass's position and the training loader's resume state."""

from __future__ import annotations

import pytest
import torch
from helpers.video_fixtures import make_known_video

from dsm_lightning.data.datasets import LabelledClipDataset, PretrainClipDataset
from dsm_lightning.data.loaders import (
    LoaderSettings,
    PassPosition,
    ResumableSampler,
    TrainingCursor,
    TrainLoader,
    VideoLoader,
    device_generator,
    loader_kwargs,
    map_loader,
    worker_init,
)
from dsm_lightning.data.sources import VideoRecord

CLIP = dict(num_frames=4, stride=2, frame_size=32)


def settings(**kwargs) -> LoaderSettings:
    return LoaderSettings(**{"batch_size": 2, "training": False, "shuffle": False, "seed": 0,
                             "num_workers": 0, **kwargs})


@pytest.mark.parametrize("given, expected", [
    (dict(num_workers=0, persistent_workers=True, prefetch_factor=4, drop_last=True),
     dict(num_workers=0, persistent_workers=False, prefetch_factor=None, drop_last=False,
          worker_init_fn=None)),
    (dict(num_workers=2, persistent_workers=True, prefetch_factor=4, drop_last=True),
     dict(num_workers=2, persistent_workers=True, prefetch_factor=4, drop_last=False,
          worker_init_fn=worker_init)),
    (dict(num_workers=2, training=True, drop_last=True, pin_memory=True),
     dict(persistent_workers=False, prefetch_factor=2, drop_last=True, pin_memory=True)),
    (dict(num_workers=0, training=True, drop_last=False), dict(drop_last=False)),
])
def test_loader_kwargs_worker_only_settings_and_drop_last(given, expected):
    kwargs = loader_kwargs(settings(**given))
    assert set(kwargs) == {"batch_size", "num_workers", "pin_memory", "persistent_workers",
                           "prefetch_factor", "drop_last", "worker_init_fn"}
    assert kwargs["batch_size"] == 2
    assert {key: kwargs[key] for key in expected} == expected


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = make_known_video(str(tmp_path_factory.mktemp("loaders") / "k.mp4"), 30)
    return [VideoRecord(path, i % 2, f"k{i}") for i in range(8)]


def test_map_loader_kinds(records):
    dataset = LabelledClipDataset(records, **CLIP)
    train = map_loader(dataset, settings(training=True, drop_last=True))
    assert isinstance(train, TrainLoader) and isinstance(train.sampler, ResumableSampler)
    assert train.drop_last and len(train) == 4
    plain = map_loader(dataset, settings())
    assert type(plain) is VideoLoader and plain.sampler.__class__.__name__ == "SequentialSampler"
    shuffled = map_loader(dataset, settings(shuffle=True))
    assert [i for i, _ in shuffled.sampler] != list(range(8))
    assert sorted(i for i, _ in shuffled.sampler) == list(range(8))


def test_pass_position_counts_and_resumes():
    position = PassPosition()
    assert position.current() is None and position.state_dict() == {"epoch": 0, "batches": 0}
    assert position.begin(None, 4) == (0, 0)  # no epoch given: the first pass is epoch 0
    assert position.current() is None  # nothing yielded yet
    position.advance()
    position.advance()
    assert position.current() == (0, 1) and position.state_dict() == {"epoch": 0, "batches": 2}
    position.end()
    assert position.current() is None
    assert position.begin(None, 4) == (1, 0)  # the pass after the last
    position.load_state_dict({"epoch": 3, "batches": 2})
    assert position.state_dict() == {"epoch": 3, "batches": 2}  # pending, before the pass
    assert position.begin(3, 4) == (3, 2)
    position.advance()
    assert position.current() == (3, 2) and position.state_dict()["batches"] == 3
    position.load_state_dict({"epoch": 3, "batches": 1})
    assert position.begin(4, 4) == (4, 0)  # a position of another epoch is dropped
    assert position.begin(4, 4) == (4, 0)  # ... and consumed
    position.load_state_dict({"epoch": 5, "batches": 4})  # an epoch that ended
    assert position.next_epoch(4) == 6 and position.begin(None, 4) == (6, 0)
    position.load_state_dict({"epoch": 5, "batches": 1})
    assert position.begin(None, 4) == (5, 1)


def test_train_loader_state_round_trip(records):
    """Outside a Trainer: a fresh loader given the state after 2 batches yields the rest of
    the same epoch (same videos, same clips), without decoding the first batches."""
    dataset = PretrainClipDataset(records, **CLIP)

    def loader() -> TrainLoader:
        built = map_loader(dataset, settings(training=True, drop_last=True, seed=3))
        built.sampler.set_epoch(1)
        return built

    whole = list(loader())
    first = loader()
    iterator = iter(first)
    head = [next(iterator) for _ in range(2)]
    assert first.state_dict() == {"epoch": 1, "batches": 2}
    assert first.position.current() == (1, 1)
    fresh = loader()
    fresh.sampler.set_epoch(0)  # the state sets the sampler's epoch back to 1
    fresh.load_state_dict(first.state_dict())
    assert fresh.sampler.epoch == 1
    tail = list(fresh)
    assert len(head) + len(tail) == len(whole) == 4
    for got, want in zip(head + tail, whole, strict=True):
        assert torch.equal(got["index"], want["index"])
        assert torch.equal(got["video"], want["video"])
    assert fresh.state_dict() == {"epoch": 1, "batches": 4} and fresh.position.current() is None


def test_cursor_hands_a_position_loaded_before_the_loader(records):
    cursor = TrainingCursor(seed=5)
    assert cursor.state_dict() == {}
    cursor.load_state_dict({"train_loader": {"epoch": 1, "batches": 3}})
    assert cursor.state_dict() == {"train_loader": {"epoch": 1, "batches": 3}}
    loader = cursor.attach(map_loader(PretrainClipDataset(records, **CLIP),
                                      settings(training=True)))
    assert loader.state_dict() == {"epoch": 1, "batches": 3} and loader.sampler.epoch == 1
    batch = next(iter(loader))  # the 4th batch of epoch 1
    assert cursor.state_dict() == {"train_loader": {"epoch": 1, "batches": 4}}
    reference = map_loader(PretrainClipDataset(records, **CLIP), settings(training=True))
    reference.sampler.set_epoch(1)
    assert torch.equal(batch["index"], list(reference)[3]["index"])
    trainer = type("T", (), {"current_epoch": 9, "global_rank": 1})()
    drawn = cursor.generator(trainer).initial_seed()
    assert drawn == device_generator(5, 1, 3, 1).initial_seed()  # the loader's batch
    list(loader)  # the pass ends: batches by hand count from 0 in the trainer's epoch
    assert cursor.generator(trainer).initial_seed() == device_generator(5, 9, 0, 1).initial_seed()
    assert cursor.generator(trainer).initial_seed() == device_generator(5, 9, 1, 1).initial_seed()
