"""Confusion-matrix metrics: per-class IoU, threshold sweeps, tables and plots.

Confusion matrices are ``[C, C]`` with rows = target class and columns = predicted class.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from fashionseg.files import atomic_path


def iou_from_confmat(cm: Tensor) -> Tensor:
    """Per-class IoU ``TP / (TP + FP + FN)`` of ``[..., C, C]``; NaN where the denominator is 0."""
    cm = cm.double()
    tp = cm.diagonal(dim1=-2, dim2=-1)
    denom = cm.sum(dim=-1) + cm.sum(dim=-2) - tp
    return torch.where(denom > 0, tp / denom.clamp_min(1), torch.nan)


def mean_iou(iou: Tensor) -> Tensor:
    """Mean over the last (class) axis ignoring NaN classes; NaN if every class is NaN."""
    return torch.nanmean(iou, dim=-1)


def miou_from_confmat(cm: Tensor) -> Tensor:
    """The project's one mIoU of ``[..., C, C]``, used by validation (threshold and
    checkpoint choice), test, ``evaluate``, sweeps and reports alike.

    Convention: mmsegmentation's ``IoUMetric`` -- per-class IoU = intersection / union,
    mIoU = the NaN-ignoring mean over the classes whose union is non-zero (background
    included). A class absent from the ground truth but predicted counts 0; a class
    neither present nor predicted does not count. Target ``[[0,0,1,1]]``, prediction
    ``[[0,0,1,2]]``, 3 classes: (1 + 0.5 + 0) / 3 = 0.50 (a mean over the classes present
    in the ground truth only, validation's figure before, gives 0.75).
    """
    return mean_iou(iou_from_confmat(cm))


def pixel_accuracy(cm: Tensor) -> Tensor:
    """Fraction of correctly labelled pixels of ``[..., C, C]``; NaN when there are no pixels."""
    cm = cm.double()
    total = cm.sum(dim=(-2, -1))
    correct = cm.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    return torch.where(total > 0, correct / total.clamp_min(1), torch.nan)


def present_classes(confmat: Tensor) -> Tensor:
    """Bool ``[C]``: the classes with ground-truth pixels in ``confmat`` ``[..., C, C]``
    (rows = target; the leading axes, e.g. thresholds, share one ground truth)."""
    return confmat.reshape(-1, *confmat.shape[-2:])[0].sum(dim=-1) > 0


def _check_class_ids(name: str, values: Tensor, num_classes: int) -> None:
    if values.numel():
        low, high = torch.aminmax(values)
        if int(low) < 0 or int(high) >= num_classes:
            raise ValueError(
                f"{name} holds class id {int(low) if int(low) < 0 else int(high)} "
                f"outside [0, {num_classes})"
            )


class ThresholdSweep(Metric):
    """Confusion matrices of fused label maps at ``T`` score thresholds at once.

    State ``confmat`` is int64 ``[T, C, C]`` summed across processes, so the result is
    DDP-correct. With one threshold it scores a fixed fusion (the test stage).

    Args:
        num_classes: number of classes C, background included.
        thresholds: ascending score thresholds, one per map of ``update``'s ``preds``.
        ignore_index: target value whose pixels are not counted.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    confmat: Tensor

    def __init__(
        self,
        num_classes: int,
        thresholds: Sequence[float],
        ignore_index: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        if num_classes < 1 or not self.thresholds:
            raise ValueError(
                f"need num_classes >= 1 and at least one threshold, got {num_classes} "
                f"and {len(self.thresholds)}"
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError(f"thresholds must be ascending, got {list(self.thresholds)}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        shape = (len(self.thresholds), num_classes, num_classes)
        self.add_state("confmat", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Count ``preds`` (``[T, H, W]`` or ``[B, T, H, W]``) against ``target`` (``[H, W]``/``[B, H, W]``).

        Counts with one ``index_add_`` over the flat index ``t*C*C + target*C + pred``.
        """
        num_t, c = len(self.thresholds), self.num_classes
        if preds.dim() == 3:
            preds = preds[None]
        if target.dim() == 2:
            target = target[None]
        batch, height, width = target.shape if target.dim() == 3 else (-1, -1, -1)
        if preds.shape != (batch, num_t, height, width):
            raise ValueError(
                f"preds {tuple(preds.shape)} must be [B, {num_t}, H, W] matching "
                f"target {tuple(target.shape)} [B, H, W]"
            )
        target = target.to(preds.device)
        if preds.device.type == "cpu":  # range checks would force a sync on accelerators
            _check_class_ids("preds", preds, c)
            valid = target if self.ignore_index is None else target[target != self.ignore_index]
            _check_class_ids("target", valid, c)
        # int32 flat index t*C*C + target*C + pred; index_add_ (unlike bincount) needs
        # no host sync on CUDA and is the faster of the two on CPU.
        # a new tensor: the caller's preds stay as they were (even when already int32)
        index = (target * c).to(torch.int32)[:, None] + preds.to(torch.int32)
        index += (torch.arange(num_t, dtype=torch.int32, device=index.device) * (c * c))[
            None, :, None, None
        ]
        if self.ignore_index is not None:
            index = index.masked_select((target != self.ignore_index)[:, None])
        flat = self.confmat.view(-1)
        flat.index_add_(
            0,
            index.flatten(),
            torch.ones((), dtype=flat.dtype, device=flat.device).expand(index.numel()),
        )

    def compute(self) -> dict[str, Any]:
        """Metrics at every threshold (choosing among them is :mod:`fashionseg.thresholds`).

        Returns a dict with ``confmat`` ``[T, C, C]``, ``iou`` ``[T, C]``, ``miou`` ``[T]``
        (:func:`miou_from_confmat`, the one mIoU convention),
        ``pixel_accuracy`` ``[T]`` and ``thresholds`` ``[T]``.
        """
        confmat = self.confmat.reshape(-1, self.num_classes, self.num_classes)
        return {
            "confmat": confmat,
            "iou": iou_from_confmat(confmat),
            "miou": miou_from_confmat(confmat),
            "pixel_accuracy": pixel_accuracy(confmat),
            "thresholds": torch.tensor(self.thresholds, dtype=torch.float64),
        }


def _optional_float(value: Tensor | float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def metrics_dict(
    cm: Tensor,
    class_names: Sequence[str],
    threshold: float | None = None,
    class_thresholds: Sequence[float] | Tensor | None = None,
    threshold_choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """JSON-ready metrics of one ``[C, C]`` confusion matrix (NaN becomes ``None``).

    ``threshold`` and ``class_thresholds`` are what the label maps were made with;
    ``threshold_choice`` what validation chose and scored (see
    :class:`fashionseg.thresholds.ThresholdChoice`)."""
    cm = torch.as_tensor(cm).cpu()
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"confusion matrix {tuple(cm.shape)} does not match {len(class_names)} class names"
        )
    iou = iou_from_confmat(cm)
    per_class = None
    if class_thresholds is not None:
        values = torch.as_tensor(class_thresholds, dtype=torch.float64).tolist()
        per_class = dict(zip(class_names, values, strict=True))
    return {
        "iou": {name: _optional_float(v) for name, v in zip(class_names, iou, strict=True)},
        "miou": _optional_float(mean_iou(iou)),  # = miou_from_confmat(cm)
        "pixel_accuracy": _optional_float(pixel_accuracy(cm)),
        "confusion_matrix": cm.to(torch.int64).tolist(),
        "class_names": list(class_names),
        "threshold": None if threshold is None else float(threshold),
        "class_thresholds": per_class,
        "threshold_choice": threshold_choice,
    }


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


# ------------------------------------------------------------------ instance AP (COCO)
# torchmetrics' MeanAveragePrecision keys -> our names (``mask_ap``, ``box_ap50``, ...)
AP_KEYS: dict[str, str] = {
    "segm_map": "mask_ap",
    "segm_map_50": "mask_ap50",
    "segm_map_75": "mask_ap75",
    "bbox_map": "box_ap",
    "bbox_map_50": "box_ap50",
    "bbox_map_75": "box_ap75",
}
AP_BACKENDS = ("faster_coco_eval", "pycocotools")


def ap_backend() -> str | None:
    """The first COCO evaluation backend that imports here (None when neither does)."""
    import importlib.util

    for name in AP_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def instance_ap_metric(max_detections: int = 100) -> Metric | None:
    """A torchmetrics ``MeanAveragePrecision`` for box and mask AP (COCO's AP over IoU
    0.50:0.95, AP50 and AP75), or None when no COCO backend is installed.

    ``max_detections`` is the largest of COCO's detection limits (100 by default).
    """
    from torchmetrics.detection import MeanAveragePrecision

    backend = ap_backend()
    if backend is None:
        return None
    limits = sorted({1, min(10, max_detections), max(1, max_detections)})
    # ranks are gathered by gather_ap_states: torchmetrics' own sync of this metric
    # breaks on ranks holding different numbers of images (a gloo size mismatch)
    return MeanAveragePrecision(
        iou_type=("bbox", "segm"),
        backend=backend,
        max_detection_thresholds=limits,
        sync_on_compute=False,
    )


def gather_ap_states(metric: Metric) -> None:
    """Give ``metric`` (from :func:`instance_ap_metric`, its states on the CPU) every
    process's images, so that ``compute`` scores the whole split on every rank; nothing
    happens outside a multi-process run.

    The images come back in the split's order: rank ``r`` scored images ``r, r + n, ...``
    (:class:`fashionseg.data.datamodule.EvalSampler`), so the lists are interleaved, and
    COCO's tie-breaking between equal scores is that of one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    for name in metric._defaults:  # the metric's state lists (boxes, RLE masks, ...)
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, list(getattr(metric, name)))
        longest = max(len(part) for part in parts)
        setattr(metric, name, [p[i] for i in range(longest) for p in parts if i < len(p)])


def gt_instances(
    semantic: Tensor, num_classes: int, instances: str = "class", min_area: int = 0
) -> dict[str, Tensor]:
    """Ground-truth instances of an ``[H, W]`` label map for AP: ``boxes`` (x1 y1 x2 y2),
    ``labels``, bool ``masks`` and ``iscrowd``, made as training makes them
    (:func:`fashionseg.data.targets.mask_to_target` with the run's ``data.instances``
    mode and ``min_area``; ignored pixels belong to no instance).

    Ignored pixels are what COCO calls crowd regions: after the instances come, one per
    foreground class, the ignored region with ``iscrowd`` 1, so that a detection lying
    on ignored pixels is neither a true nor a false positive (COCO matches it to the
    crowd region by the share of the detection inside it, and leaves it out)."""
    from fashionseg.data.targets import IGNORE_INDEX, boxes_of, mask_to_target

    target = mask_to_target(semantic.cpu().numpy(), num_classes, instances, min_area)
    masks, boxes, labels = target["masks"].bool(), target["boxes"], target["labels"]
    crowd = torch.zeros(len(labels), dtype=torch.int64)
    ignored = semantic.cpu() == IGNORE_INDEX
    if ignored.any() and num_classes > 1:
        count = num_classes - 1
        masks = torch.cat([masks, ignored[None].expand(count, -1, -1)])
        boxes = torch.cat([boxes, boxes_of(ignored[None]).expand(count, -1)])
        labels = torch.cat([labels, torch.arange(1, num_classes, dtype=labels.dtype)])
        crowd = torch.cat([crowd, torch.ones(count, dtype=torch.int64)])
    return {"boxes": boxes, "labels": labels, "masks": masks, "iscrowd": crowd}


def predicted_instances(
    output: dict[str, Tensor], mask_threshold: float = 0.5
) -> dict[str, Tensor]:
    """One image's Mask R-CNN detections in ``MeanAveragePrecision``'s format: masks are
    the pixels with probability ``> mask_threshold`` (the fusion's cover rule)."""
    masks = output["masks"]
    if masks.dim() == 4:
        masks = masks[:, 0]
    return {
        "boxes": output["boxes"].detach().float().cpu(),
        "scores": output["scores"].detach().float().cpu(),
        "labels": output["labels"].detach().long().cpu(),
        "masks": (masks.detach() > mask_threshold).cpu(),
    }


def ap_summary(result: dict[str, Tensor]) -> dict[str, float | None]:
    """``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``box_ap``, ``box_ap50``, ``box_ap75``
    (fractions) from ``MeanAveragePrecision.compute()``; None where COCO's evaluation has
    no answer (it reports -1: no ground truth and no detections)."""
    out: dict[str, float | None] = {}
    for key, name in AP_KEYS.items():
        value = float(result[key])
        out[name] = None if value < 0 or math.isnan(value) else value
    return out
