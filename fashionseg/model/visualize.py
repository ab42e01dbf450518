"""Pictures for TensorBoard: the threshold -> mIoU curve and prediction overlays."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import draw_segmentation_masks, make_grid


def threshold_curve(thresholds: Sequence[float], miou: Sequence[float], best: float) -> Figure:
    """A figure of validation mIoU against the score threshold, the best one marked."""
    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(list(thresholds), [100 * v for v in miou], marker="o", markersize=3)
    ax.axvline(best, color="tab:red", linestyle="--", label=f"best {best:.2f}")
    ax.set_xlabel("score threshold")
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def overlay(
    image: Tensor, label_map: Tensor, colors: Sequence[tuple[int, int, int]], alpha: float = 0.5
) -> Tensor:
    """``image`` (uint8 or float in [0, 1], 3 x H x W) with each class painted in its colour."""
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).to(torch.uint8)
    classes = torch.arange(1, len(colors), device=label_map.device)
    masks = label_map[None] == classes[:, None, None]
    return draw_segmentation_masks(image.cpu(), masks.cpu(), alpha=alpha, colors=list(colors[1:]))


def comparison_grid(
    images: Sequence[Tensor],
    targets: Sequence[Tensor],
    predictions: Sequence[Tensor],
    colors: Sequence[tuple[int, int, int]],
) -> Tensor:
    """One row per image: photo, ground truth overlay, prediction overlay (uint8 grid)."""
    tiles = []
    for image, target, pred in zip(images, targets, predictions, strict=True):
        photo = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
        tiles += [photo, overlay(photo, target, colors), overlay(photo, pred, colors)]
    size = max(t.shape[1] for t in tiles), max(t.shape[2] for t in tiles)
    padded = [
        torch.nn.functional.pad(t, (0, size[1] - t.shape[2], 0, size[0] - t.shape[1]))
        for t in tiles
    ]
    return make_grid(padded, nrow=3, padding=2)
