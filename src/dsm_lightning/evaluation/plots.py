"""Evaluation figures (matplotlib, Agg backend) and logging them to any Lightning logger.

No Lightning import: loggers are duck-typed (``log_image`` for wandb, ``add_image`` on a
TensorBoard ``experiment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor


def plot_confusion_matrix(
    matrix: Tensor,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str = "confusion matrix",
) -> Path:
    """Save a confusion matrix (rows: true class, columns: predicted class) as a PNG.

    Args:
        matrix: (K, K) counts.
        path: the .png file; parent folders are created.
        class_names: K tick labels (shown when K <= 40).
        normalize: divide each row by its count (rows with no sample stay 0).
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = matrix.detach().float().cpu()
    if normalize:
        values = values / values.sum(dim=1, keepdim=True).clamp_min(1)
    k = values.shape[0]
    side = min(14.0, max(4.0, 0.3 * k + 2))
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if class_names is not None and k <= 40:
        ax.set_xticks(range(k), list(class_names), rotation=90, fontsize=7)
        ax.set_yticks(range(k), list(class_names), fontsize=7)
    return save_figure(fig, path)


def log_png(logger: Any, key: str, path: str | Path, step: int | None = None) -> bool:
    """Log a PNG file to a Lightning logger when it can take images.

    Args:
        logger: a Lightning logger (``WandbLogger``: ``log_image``; ``TensorBoardLogger``:
            ``experiment.add_image``); anything else is skipped.
        key: the image's name.
        path: the PNG file.
        step: global step to attach (TensorBoard).

    Returns:
        True when the image was handed to the logger.
    """
    if logger is None:
        return False
    if hasattr(logger, "log_image"):
        logger.log_image(key=key, images=[str(path)])
        return True
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "add_image"):
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        experiment.add_image(key, pixels, global_step=step or 0, dataformats="HWC")
        return True
    return False


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; return its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
