"""TripletMediaLogger pictures: every clip a labelled row, stacked negatives included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dsm_lightning.callbacks.media import TripletMediaLogger, triplet_rows
from dsm_lightning.data.datamodule import ClipSpec
from dsm_lightning.disturb import TripletBuilder

B, T, S = 2, 3, 24
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
KINDS = ("shift", "reverse")


def solid_clips(values: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, S, S) normalised clips, frame t of sample b one grey level ``values[b, t]``/255."""
    pixels = (values.float() / 255).view(B, 1, T, 1, 1).expand(B, 3, T, S, S)
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)


def batch_with_all_negatives() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A DSM batch with negative_mode="all" ((B, M, 3, T, S, S)) and its grey levels."""
    levels = {name: torch.arange(B * T).view(B, T) * 10 + 40 * i
              for i, name in enumerate(["anchor", "positive", "negative: shift",
                                        "negative: reverse"])}
    batch = {
        "anchor": solid_clips(levels["anchor"]),
        "positive": solid_clips(levels["positive"]),
        "negative": torch.stack([solid_clips(levels["negative: shift"]),
                                 solid_clips(levels["negative: reverse"])], dim=1),
        "label": torch.zeros(B, dtype=torch.long),
    }
    return batch, levels


def fake_trainer(tmp_path: Path, kinds=KINDS) -> SimpleNamespace:
    datamodule = SimpleNamespace(augment=TripletBuilder(negative_kinds=kinds),
                                 clip_spec=ClipSpec(mean=MEAN, std=STD))
    return SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path),
                           current_epoch=0, global_step=0, loggers=[], datamodule=datamodule)


def test_rows_name_every_negative_kind():
    batch, _ = batch_with_all_negatives()
    rows = triplet_rows(batch, KINDS)
    assert [label for label, _ in rows] == ["anchor", "positive", "negative: shift",
                                            "negative: reverse"]
    assert all(clips.shape == (B, 3, T, S, S) for _, clips in rows)
    torch.testing.assert_close(rows[3][1], batch["negative"][:, 1])
    # the builder drops "shift" without a shifted clip: the names follow
    one = dict(batch, negative=batch["negative"][:, 1:])
    assert triplet_rows(one, KINDS)[-1][0] == "negative: reverse"
    assert [lab for lab, _ in triplet_rows(batch, ())][2:] == ["negative: 1", "negative: 2"]
    sampled = dict(batch, negative=batch["negative"][:, 0])  # negative_mode="sample"
    assert triplet_rows(sampled, KINDS)[-1][0] == "negative"
    assert triplet_rows(sampled, ("shift",))[-1][0] == "negative: shift"
    with pytest.raises(ValueError, match="negative"):
        triplet_rows(dict(batch, negative=batch["negative"][0, 0]), KINDS)


def _label_width(image: Image.Image, columns: int) -> int:
    return image.width - (columns * (S + 2) - 2)


def test_png_and_gif_show_every_row_labelled(tmp_path: Path):
    batch, levels = batch_with_all_negatives()
    logger = TripletMediaLogger(max_samples=2, max_frames=8)
    files = logger.log_triplet(fake_trainer(tmp_path), batch)
    media = tmp_path / "media"
    assert files == [media / "triplet_e000_s0.png", media / "triplet_e000_s1.png",
                     media / "triplet_e000_s0.gif", media / "triplet_e000_s1.gif"]
    names = list(levels)
    for sample in range(B):
        grid = np.asarray(Image.open(media / f"triplet_e000_s{sample}.png").convert("RGB"))
        assert grid.shape[0] == 4 * S + 3 * 2  # four rows: the two negatives included
        left = _label_width(Image.fromarray(grid), T)
        assert left > 20  # room for the labels
        labels = []
        for r, name in enumerate(names):
            y = r * (S + 2)
            for t in range(T):
                x = left + t * (S + 2)
                tile = grid[y : y + S, x : x + S].astype(int)
                assert np.abs(tile - int(levels[name][sample, t])).max() <= 1, (name, t)
            label = grid[y : y + S, :left]
            assert (label < 128).any(), f"row {name!r} has no label"
            labels.append(label)
        assert not np.array_equal(labels[2], labels[3])  # "negative: shift" != ": reverse"

        with Image.open(media / f"triplet_e000_s{sample}.gif") as gif:
            assert gif.n_frames == T
            for t in range(T):
                gif.seek(t)
                frame = np.asarray(gif.convert("RGB")).astype(int)
                assert frame.shape[0] == 4 * S + 3 * 2
                left = frame.shape[1] - S
                for r, name in enumerate(names):
                    tile = frame[r * (S + 2) : r * (S + 2) + S, left:]
                    assert np.abs(tile - int(levels[name][sample, t])).max() <= 2, (name, t)
                    assert (frame[r * (S + 2) : r * (S + 2) + S, :left] < 128).any()


def test_batches_without_anchor_are_skipped(tmp_path: Path):
    logger = TripletMediaLogger()
    logger.on_train_batch_start(SimpleNamespace(current_epoch=0, is_global_zero=True), None,
                                {"video": torch.zeros(1, 3, 2, 4, 4)}, 0)
    assert logger.saved == [] and not (tmp_path / "media").exists()
