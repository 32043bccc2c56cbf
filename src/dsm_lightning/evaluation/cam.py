"""Class activation maps (Grad-CAM on the last 3-D feature map): "where the model looks".

The paper's qualitative figure shows that after DSM the activation follows the moving
region rather than the scene. Plain torch + matplotlib (Agg), no Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def last_feature_map_layer(model: nn.Module, video: Tensor) -> nn.Module:
    """Find the module that produces the last 5-D (B, D, T', H', W') output in a forward.

    Args:
        model: the classifier (or backbone).
        video: a (B, C, T, H, W) sample input used for one traced forward (no gradient).

    Returns:
        The module (for :func:`grad_cam`'s ``layer``).

    Raises:
        ValueError: when no module outputs a 5-D tensor.
    """
    found: list[nn.Module] = []

    def hook(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor) and output.dim() == 5:
            found.append(module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(video[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise ValueError("no submodule outputs a 5-D feature map (B, D, T, H, W)")
    return found[-1]


def grad_cam(
    model: nn.Module,
    video: Tensor,
    target: Tensor | None = None,
    layer: nn.Module | None = None,
) -> tuple[Tensor, Tensor]:
    """Grad-CAM of a video classifier for a target class, upsampled to the clip.

    The map is ``ReLU(sum_d alpha_d A_d)`` with ``A`` the feature map of ``layer`` and
    ``alpha_d`` the gradient of the target logit averaged over (T', H', W'); it is then
    trilinearly resized to (T, H, W) and scaled to [0, 1] per clip. Works with frozen
    encoders (the input is made to require a gradient).

    Args:
        model: maps (B, C, T, H, W) clips to (B, K) logits; put in eval mode here.
        video: (B, C, T, H, W) normalised clips.
        target: (B,) classes to explain; ``None`` uses the predicted class.
        layer: the module whose 5-D output is explained; ``None``: the last one
            (:func:`last_feature_map_layer`).

    Returns:
        ``(cam, target)``: (B, T, H, W) maps in [0, 1] and the (B,) explained classes.
    """
    model.eval()
    layer = layer if layer is not None else last_feature_map_layer(model, video)
    activations: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: activations.append(out))
    try:
        with torch.enable_grad():
            video = video.detach().requires_grad_(True)
            logits = model(video)
            if target is None:
                target = logits.argmax(dim=1)
            target = target.to(logits.device).long()
            score = logits.gather(1, target[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations[-1])
    finally:
        handle.remove()
    feature_map = activations[-1].detach()
    alpha = grads.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((alpha * feature_map).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=video.shape[2:], mode="trilinear", align_corners=False)[:, 0]
    low = cam.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
    high = cam.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return (cam - low) / (high - low).clamp_min(1e-8), target.detach()


def save_cam_grid(
    video: Tensor,
    cam: Tensor,
    path: str | Path,
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
    n_frames: int = 4,
    titles: Sequence[str] | None = None,
) -> Path:
    """Save frames of each clip with its activation map overlaid (rows: clips).

    Args:
        video: (B, C, T, H, W) normalised clips (RGB).
        cam: (B, T, H, W) maps in [0, 1] from :func:`grad_cam`.
        path: the .png file; parent folders are created.
        mean: normalisation mean used on ``video`` (undone for display).
        std: normalisation std used on ``video``.
        n_frames: frames shown per clip, evenly spaced.
        titles: one row label per clip (e.g. "true / predicted").

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch, _, frames = video.shape[:3]
    shown = torch.linspace(0, frames - 1, min(n_frames, frames)).round().long()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)
    rgb = (video.detach().float().cpu() * std_t + mean_t).clamp(0, 1)
    fig, axes = plt.subplots(
        batch, len(shown), figsize=(2 * len(shown), 2 * batch), squeeze=False
    )
    for b in range(batch):
        for j, t in enumerate(shown.tolist()):
            ax = axes[b, j]
            ax.imshow(rgb[b, :, t].permute(1, 2, 0).numpy())
            ax.imshow(cam[b, t].detach().cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0 and titles is not None:
                ax.set_ylabel(titles[b], fontsize=8)
            if b == 0:
                ax.set_title(f"t={t}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
