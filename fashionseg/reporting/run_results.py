"""Write a scored run's outputs: the IoU table, ``metrics.json`` and the confusion PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fashionseg.files import write_json, write_text
from fashionseg.metrics import format_table, save_confusion_png
from fashionseg.tasks import Task


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
