"""Temporal Local Disturbance: frame re-indexing (dsm_lightning.disturb.temporal)."""

import pytest
import torch

from dsm_lightning.disturb.temporal import (
    FRAME_KINDS,
    insert_indices,
    local_length,
    reorder_frames,
    reverse_indices,
    sample_frame_indices,
    shuffle_indices,
    static_indices,
    swap_indices,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _build(kind: str, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    length = local_length(frames, 0.1)
    g = _gen(seed)
    return {
        "swap": lambda: swap_indices(batch, frames, length, generator=g),
        "insert": lambda: insert_indices(batch, frames, length, generator=g),
        "shuffle": lambda: shuffle_indices(batch, frames, generator=g),
        "reverse": lambda: reverse_indices(batch, frames),
        "static": lambda: static_indices(batch, frames, generator=g),
    }[kind]()


@pytest.mark.parametrize("frames", [2, 3, 8, 16, 33])
@pytest.mark.parametrize("kind", FRAME_KINDS)
def test_indices_use_only_clip_frames_and_never_keep_the_order(kind, frames):
    index = _build(kind, 256, frames)
    assert index.shape == (256, frames) and index.dtype == torch.int64
    assert index.min() >= 0 and index.max() < frames
    identity = torch.arange(frames)
    assert not (index == identity).all(dim=1).any()  # never the anchor's order
    if kind == "static":
        assert (index == index[:, :1]).all()
    else:  # a permutation: every frame exactly once
        assert (index.sort(dim=1).values == identity).all()


def test_swap_and_insert_move_local_segments():
    frames, length = 20, 2
    swap = swap_indices(512, frames, length, generator=_gen(1))
    moved = (swap != torch.arange(frames)).sum(dim=1)
    assert (moved == 2 * length).all()  # exactly two segments of L frames trade places
    insert = insert_indices(512, frames, length, generator=_gen(2))
    # a moved segment keeps its internal order: L consecutive source frames appear together
    starts = (insert[:, 1:] - insert[:, :-1] != 1).sum(dim=1)
    assert (starts >= 1).all() and (starts <= 3).all()


def test_draws_cover_positions_and_are_deterministic():
    a = shuffle_indices(64, 8, generator=_gen(5))
    b = shuffle_indices(64, 8, generator=_gen(5))
    assert torch.equal(a, b)
    static = static_indices(512, 8, generator=_gen(6))[:, 0]
    assert set(static.tolist()) == set(range(8))
    swaps = swap_indices(512, 10, 1, generator=_gen(7))
    assert len({tuple(r) for r in swaps.tolist()}) > 20


def test_local_length():
    assert local_length(16, 0.1) == 2
    assert local_length(4, 0.1) == 1
    assert local_length(4, 0.5) == 2
    assert local_length(3, 0.5) == 1  # two disjoint segments must fit


def test_sample_frame_indices_selects_kinds_by_probability():
    index, kind = sample_frame_indices(
        400, 8, kinds=("reverse", "static"), probs=(0.25, 0.75), generator=_gen(3)
    )
    is_static = (index == index[:, :1]).all(dim=1)
    assert torch.equal(is_static, kind == 1)
    assert torch.equal(index[kind == 0], reverse_indices(int((kind == 0).sum()), 8))
    assert 0.65 < is_static.float().mean() < 0.85
    with pytest.raises(ValueError, match="kinds"):
        sample_frame_indices(2, 8, kinds=("shift",))
    with pytest.raises(ValueError, match="frames"):
        sample_frame_indices(2, 1, kinds=("reverse",))
    with pytest.raises(ValueError, match="probs"):
        sample_frame_indices(2, 8, kinds=("reverse",), probs=(-1.0,))


def test_reorder_frames_gathers_per_sample():
    video = torch.rand(3, 2, 5, 4, 4, generator=_gen(4))
    index = torch.tensor([[4, 3, 2, 1, 0], [1, 1, 1, 1, 1], [0, 2, 1, 3, 4]])
    out = reorder_frames(video, index)
    for b in range(3):
        for t in range(5):
            assert torch.equal(out[b, :, t], video[b, :, index[b, t]])
    static = reorder_frames(video, static_indices(3, 5, generator=_gen(0)))
    assert (static[:, :, 1:] - static[:, :, :-1]).abs().max() == 0


def test_registered_frame_kind_is_usable_by_the_triplet_builder():
    """A user kind (every other frame, looped) plugs into negative_kinds by name."""
    from dsm_lightning.disturb import (
        TripletBuilder,
        frame_kinds,
        register_frame_kind,
    )
    from dsm_lightning.disturb.temporal import _FRAME_BUILDERS

    def other_speed(batch, frames, *, length, generator, device):
        return ((torch.arange(frames, device=device) * 3) % frames).expand(batch, frames)

    def double_speed(batch, frames, *, length, generator, device):
        return ((torch.arange(frames, device=device) * 2) % frames).expand(batch, frames)

    register_frame_kind("double_speed", double_speed)
    try:
        assert "double_speed" in frame_kinds()
        with pytest.raises(ValueError, match="already registered"):  # another builder
            register_frame_kind("double_speed", other_speed)
        assert register_frame_kind("double_speed", double_speed) is double_speed  # the same
        assert frame_kinds().count("double_speed") == 1
        builder = TripletBuilder(negative_kinds=("double_speed",), seed=0)
        video = torch.arange(8, dtype=torch.uint8).view(1, 1, 8, 1, 1).expand(2, 3, 8, 8, 8) * 30
        out = builder(video.contiguous())
        expected = out["anchor"][:, :, (torch.arange(8) * 2) % 8]
        torch.testing.assert_close(out["negative"], expected)
        register_frame_kind("identity", lambda b, t, **_: torch.arange(t).expand(b, t))
        with pytest.raises(ValueError, match="identity row"):
            TripletBuilder(negative_kinds=("identity",), seed=0)(video.contiguous(), size=8)
    finally:
        _FRAME_BUILDERS.unregister("double_speed")
        _FRAME_BUILDERS.unregister("identity")
    with pytest.raises(ValueError, match="negative_kinds"):
        TripletBuilder(negative_kinds=("double_speed",))
    with pytest.raises(ValueError, match="shift"):
        register_frame_kind("shift", double_speed)
