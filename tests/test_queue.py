"""KeyQueue: FIFO order, wrap-around, oversize batches and queues, checkpointed buffers."""

from __future__ import annotations

import pytest
import torch

from dsm_lightning.queue import KeyQueue


def _keys(start: int, n: int, dim: int = 2) -> torch.Tensor:
    """Rows whose first entry is their global sequence number."""
    return torch.arange(start, start + n, dtype=torch.float32)[:, None].repeat(1, dim)


def test_fifo_and_wrap_around():
    queue = KeyQueue(size=5, dim=2)
    assert queue.valid_keys().shape == (0, 2)
    queue.enqueue(_keys(0, 3))
    assert queue.valid_keys()[:, 0].tolist() == [0, 1, 2]
    assert int(queue.ptr) == 3 and int(queue.filled) == 3
    queue.enqueue(_keys(3, 4))  # 3, 4 fill the end, 5, 6 overwrite the oldest (0, 1)
    assert queue.keys[:, 0].tolist() == [5, 6, 2, 3, 4]
    assert int(queue.ptr) == 2 and int(queue.filled) == 5
    assert sorted(queue.valid_keys()[:, 0].tolist()) == [2, 3, 4, 5, 6]  # the 5 newest


def test_batch_larger_than_queue_keeps_newest_keys_in_fifo_positions():
    queue = KeyQueue(size=4, dim=2)
    queue.enqueue(_keys(0, 1))
    queue.enqueue(_keys(1, 10))  # keys 1..10 -> the newest four (7..10) stay
    assert sorted(queue.valid_keys()[:, 0].tolist()) == [7, 8, 9, 10]
    assert int(queue.ptr) == 11 % 4
    # the slot written last is just before ptr; the next write overwrites the oldest (7)
    assert queue.keys[(int(queue.ptr) - 1) % 4, 0] == 10
    queue.enqueue(_keys(11, 1))
    assert sorted(queue.valid_keys()[:, 0].tolist()) == [8, 9, 10, 11]


def test_queue_larger_than_data_uses_only_seen_keys():
    queue = KeyQueue(size=1000, dim=3)
    for step in range(3):
        queue.enqueue(_keys(4 * step, 4, dim=3))
    valid = queue.valid_keys()
    assert valid.shape == (12, 3)
    assert valid[:, 0].tolist() == list(range(12))


def test_buffers_are_persistent_and_restore():
    queue = KeyQueue(size=6, dim=2)
    queue.enqueue(_keys(0, 8), ids=torch.arange(8))
    state = queue.state_dict()
    assert set(state) == {"keys", "ids", "ptr", "filled"}
    other = KeyQueue(size=6, dim=2)
    other.load_state_dict(state)
    torch.testing.assert_close(other.valid_keys(), queue.valid_keys())
    assert torch.equal(other.valid_ids(), queue.valid_ids())
    assert int(other.ptr) == int(queue.ptr)


def test_validation():
    with pytest.raises(ValueError, match="size"):
        KeyQueue(size=0)
    with pytest.raises(ValueError, match="dim"):
        KeyQueue(size=4, dim=0)
    with pytest.raises(ValueError, match="shape"):
        KeyQueue(size=4, dim=2).enqueue(torch.zeros(3, 5))


def test_ids_follow_their_keys_through_wrap_around():
    queue = KeyQueue(size=4, dim=2)
    queue.enqueue(torch.ones(3, 2), ids=torch.tensor([7, 8, 9]))
    assert queue.valid_ids().tolist() == [7, 8, 9]
    queue.enqueue(torch.zeros(2, 2), ids=torch.tensor([10, 11]))  # wraps: slot 0 <- 11
    assert queue.ids.tolist() == [11, 8, 9, 10]
    queue.enqueue(torch.zeros(1, 2))  # unknown ids are stored as -1
    assert queue.ids.tolist() == [11, -1, 9, 10]
    assert "ids" in queue.state_dict()
    with pytest.raises(ValueError, match="ids"):
        queue.enqueue(torch.zeros(2, 2), ids=torch.tensor([1]))
