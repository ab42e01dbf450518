"""Write a scored run's outputs: the IoU table, ``metrics.json`` and the confusion PNG
(the table and plot of :mod:`fashionseg.metrics`' numbers)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fashionseg.files import atomic_path, write_json, write_text
from fashionseg.metrics import mean_iou
from fashionseg.tasks import Task


def format_percent(value: float | None, digits: int = 2, missing: str = "n/a") -> str:
    """A fraction as a percentage with ``digits`` decimals; ``missing`` for None or NaN."""
    if value is None or math.isnan(value):
        return missing
    return f"{100.0 * value:.{digits}f}"


def format_table(
    iou: Tensor | Sequence[float],
    class_names: Sequence[str],
    pixel_acc: float | Tensor | None = None,
    title: str | None = None,
) -> str:
    """Markdown table: each class's own IoU (%), the mean IoU, then pixel accuracy (%).

    The mean is the NaN-ignoring mean over all classes, background included; NaN
    prints ``n/a``. The pixel accuracy row is left out when ``pixel_acc`` is None.
    """
    iou = torch.as_tensor(iou, dtype=torch.float64).cpu()
    if iou.shape != (len(class_names),):
        raise ValueError(f"iou {tuple(iou.shape)} does not match {len(class_names)} class names")
    lines = [f"## {title}", ""] if title else []
    lines += ["| class | IoU (%) |", "|---|---:|"]
    lines += [
        f"| {name} | {format_percent(float(v))} |" for name, v in zip(class_names, iou, strict=True)
    ]
    lines.append(f"| **mean IoU** | {format_percent(float(mean_iou(iou)))} |")
    if pixel_acc is not None:
        lines.append(f"| pixel accuracy | {format_percent(float(pixel_acc))} |")
    return "\n".join(lines)


# the most classes whose confusion matrix prints each cell's percentage
MAX_ANNOTATED_CLASSES = 20


def save_confusion_png(
    cm: Tensor, class_names: Sequence[str], path: str | os.PathLike[str]
) -> Path:
    """Plot ``cm`` row-normalised (percent of each target class) and save it atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(torch.as_tensor(cm).cpu(), dtype=np.float64)
    c = len(class_names)
    if counts.shape != (c, c):
        raise ValueError(f"confusion matrix {counts.shape} does not match {c} class names")
    row_sums = counts.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)

    # many classes (a 59-tag label set): smaller cells and no per-cell numbers, which
    # would not fit; the colours still show where each class goes
    numbers = c <= MAX_ANNOTATED_CLASSES
    size = 1.5 + (0.8 if numbers else 0.25) * c
    fig = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, label="% of target class")
    ax.set_xticks(range(c), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(c), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    for row in range(c if numbers else 0):
        for col in range(c):
            color = "white" if percent[row, col] > 50 else "black"
            ax.text(
                col,
                row,
                f"{percent[row, col]:.1f}",
                ha="center",
                va="center",
                color=color,
                fontsize=8,
            )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_results(
    results: Mapping[str, Any], task: Task, out_dir: str | Path, title: str | None = None
) -> str:
    """Save ``metrics.json``, ``results.md`` and ``confusion_matrix.png`` into ``out_dir``.

    ``results`` is :func:`fashionseg.metrics.metrics_dict` output. Returns the table text.
    """
    out_dir = Path(out_dir)
    iou = torch.tensor([float("nan") if v is None else v for v in results["iou"].values()])
    table = format_table(iou, task.class_names, results["pixel_accuracy"], title=title)
    write_json(out_dir / "metrics.json", dict(results))
    write_text(out_dir / "results.md", table + "\n")
    save_confusion_png(
        torch.tensor(results["confusion_matrix"]),
        task.class_names,
        out_dir / "confusion_matrix.png",
    )
    return table
