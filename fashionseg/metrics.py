"""Confusion-matrix metrics: per-class IoU, mIoU, pixel accuracy, threshold sweeps.

Confusion matrices are ``[C, C]`` with rows = target class and columns = predicted class.
The numbers only: their tables and plots are :mod:`fashionseg.reporting.run_results`'s,
instance AP (COCO) is :mod:`fashionseg.instance_ap`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


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
