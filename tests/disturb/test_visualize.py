"""Triplet pictures (dsm_lightning.disturb.visualize)."""

import numpy as np
import pytest
import torch
from PIL import Image

from dsm_lightning.disturb import (
    ClipTransform,
    TripletBuilder,
    denormalize,
    field_image,
    normalize,
    save_triplet_gif,
    save_triplet_png,
    triplet_grid,
)


def _triplet(frames: int = 6) -> dict[str, torch.Tensor]:
    video = torch.randint(0, 256, (2, 3, frames, 24, 24), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    return TripletBuilder(negative_kinds=("reverse",), seed=0)(video, transform=ClipTransform(), size=16)


def test_grid_layout_and_denormalised_pixels():
    triplet = _triplet(frames=12)
    image = triplet_grid(triplet, sample=1, max_frames=8, gap=2)
    assert image.mode == "RGB"
    assert image.size == (8 * 16 + 7 * 2, 3 * 16 + 2 * 2)
    pixels = np.asarray(image)
    expected = triplet["anchor"][1]  # first tile = anchor, frame 0
    tile = (denormalize(expected)[:, 0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.abs(pixels[:16, :16].astype(int) - tile.astype(int)).max() <= 1
    third_row = pixels[2 * 18 : 2 * 18 + 16, :16]  # negative = reversed anchor: its last frame
    last = (denormalize(triplet["anchor"][1])[:, -1].permute(1, 2, 0) * 255).round().byte()
    assert np.abs(third_row.astype(int) - last.numpy().astype(int)).max() <= 1


def test_grid_skips_missing_rows_and_rejects_empty():
    triplet = _triplet()
    image = triplet_grid({"anchor": triplet["anchor"]}, max_frames=4, gap=0)
    assert image.size == (4 * 16, 16)
    with pytest.raises(ValueError, match="anchor"):
        triplet_grid({"video": normalize(torch.zeros(1, 3, 2, 8, 8))})


def test_png_and_gif_files(tmp_path):
    triplet = _triplet(frames=5)
    png = save_triplet_png(tmp_path / "grid" / "t.png", triplet, max_frames=4)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[1] == 3 * 16 + 2 * 2
    gif = save_triplet_gif(tmp_path / "t.gif", triplet, sample=0)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 5
        assert image.size == (3 * 16 + 2 * 2, 16)


def test_field_image_encodes_direction_and_magnitude():
    field = torch.zeros(1, 8, 8, 2)
    assert np.asarray(field_image(field)).max() == 0  # no displacement -> black
    field[0, :, :4, 0] = 0.1  # left half moves right, right half moves up (negative y)
    field[0, :, 4:, 1] = -0.1
    pixels = np.asarray(field_image(field)).astype(int)
    assert pixels.shape == (8, 8, 3)
    assert pixels.max() == 255
    assert (pixels[:, 0] != pixels[:, 7]).any()  # different directions, different colours
    assert (pixels[:, 0] == pixels[0, 0]).all()  # same displacement, same colour
