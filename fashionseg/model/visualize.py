"""Pictures for TensorBoard and the notebooks: the threshold -> mIoU curve, prediction
overlays, and the class colour legend (as an image strip or as matplotlib handles)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image, ImageDraw, ImageFont
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


def legend_handles(
    class_names: Sequence[str], colors: Sequence[tuple[int, int, int]], background: bool = False
) -> list[Patch]:
    """Matplotlib legend entries, one coloured patch per class (background left out
    unless ``background``): ``fig.legend(handles=legend_handles(names, colors))``."""
    patches = [
        Patch(color=[c / 255 for c in rgb], label=name)
        for name, rgb in zip(class_names, colors, strict=True)
    ]
    return patches if background else patches[1:]


def legend_strip(
    class_names: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
    width: int,
    font_size: int = 12,
) -> Tensor:
    """The class colour legend as a uint8 image ``3 x h x width``: a swatch and the name
    of every class (background included), in as many lines as ``width`` needs."""
    font = ImageFont.load_default(size=font_size)
    pad, swatch = 4, font_size
    entries = []
    for name, rgb in zip(class_names, colors, strict=True):
        text_width = int(np.ceil(font.getlength(name)))
        entries.append((name, tuple(rgb), swatch + 4 + text_width + 3 * pad))
    rows: list[list[tuple[str, tuple, int]]] = [[]]
    used = pad
    for entry in entries:
        if rows[-1] and used + entry[2] > width:
            rows.append([])
            used = pad
        rows[-1].append(entry)
        used += entry[2]
    line = font_size + 2 * pad
    image = Image.new("RGB", (max(width, 1), line * len(rows) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * line
        for name, rgb, step in row:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=rgb, outline=(96, 96, 96))
            draw.text((x + swatch + 4, y), name, fill=(0, 0, 0), font=font)
            x += step
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def comparison_grid(
    images: Sequence[Tensor],
    targets: Sequence[Tensor],
    predictions: Sequence[Tensor],
    colors: Sequence[tuple[int, int, int]],
    class_names: Sequence[str] | None = None,
) -> Tensor:
    """One row per image: photo, ground truth overlay, prediction overlay (uint8 grid);
    with ``class_names``, the colour legend (:func:`legend_strip`, its font scaled with
    the grid's width) below the rows."""
    tiles = []
    for image, target, pred in zip(images, targets, predictions, strict=True):
        photo = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
        tiles += [photo, overlay(photo, target, colors), overlay(photo, pred, colors)]
    size = max(t.shape[1] for t in tiles), max(t.shape[2] for t in tiles)
    padded = [
        torch.nn.functional.pad(t, (0, size[1] - t.shape[2], 0, size[0] - t.shape[1]))
        for t in tiles
    ]
    grid = make_grid(padded, nrow=3, padding=2)
    if class_names is None:
        return grid
    width = int(grid.shape[2])
    # a font that stays readable when TensorBoard shrinks the grid to fit its card
    legend = legend_strip(class_names, colors, width, font_size=max(12, width // 32))
    return torch.cat([grid, legend], dim=1)
