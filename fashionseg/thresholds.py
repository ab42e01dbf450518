"""Choosing score thresholds on validation data: the one place where it happens.

Validation fuses every image at each swept threshold (:class:`fashionseg.metrics.ThresholdSweep`)
and keeps what per-class thresholds need (:class:`InstanceCache`). At the end of the
epoch :func:`choose` picks

- the **global** threshold: the highest validation mIoU, ties to the lower threshold;
- with ``per_class=True``, **per-class** thresholds by coordinate ascent on the combined
  validation mIoU, starting from the global threshold: class by class, the threshold that
  maximises the mIoU of the label maps fused with every class at its current value,
  repeated until a round changes nothing. Classes without ground-truth pixels in
  validation keep the global threshold (their IoU there is 0 or undefined, which says
  nothing about the right threshold). The combination is used only where its validation
  mIoU beats the global threshold's; both figures are reported.

Validation mIoU here is the same mIoU as test, ``evaluate``, sweeps and reports
(:func:`fashionseg.metrics.miou_from_confmat`, mmsegmentation's ``IoUMetric``
convention): a class absent from the validation ground truth but predicted at a
threshold counts 0 there, as it would on test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fashionseg.fusion import argmax_best, argmax_class_sweep, fuse_sweep, semantic_labels
from fashionseg.metrics import iou_from_confmat, miou_from_confmat, present_classes

# the module buffers that keep a Mask R-CNN model's threshold choice (a checkpoint
# carries it; semantic checkpoints written while that module inherited the Mask R-CNN
# one hold them too: loading drops them there)
THRESHOLD_BUFFERS = (
    "best_threshold",
    "class_thresholds",
    "use_class_thresholds",
    "val_miou_global",
    "val_miou_per_class",
)


def best_index(values: Tensor, prefer: int | None = None) -> int:
    """Index of the highest of ``values [T]`` (NaN lowest); ties go to ``prefer`` when it
    is among them, else to the lowest index."""
    values = torch.nan_to_num(values.double().cpu(), nan=-torch.inf)
    top = values.max()
    if prefer is not None and values[prefer] == top:
        return prefer
    return int(torch.nonzero(values == top)[0])


@dataclass
class ThresholdChoice:
    """What validation chose, as stored in checkpoints and ``metrics.json``."""

    threshold: float
    class_thresholds: list[float]
    use_class_thresholds: bool
    val_miou_global: float
    val_miou_per_class: float | None = None

    @property
    def val_miou(self) -> float:
        """The validation mIoU of the setting in use."""
        if self.use_class_thresholds and self.val_miou_per_class is not None:
            return self.val_miou_per_class
        return self.val_miou_global

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThresholdChoice:
        """The inverse of :meth:`as_dict`."""
        return cls(
            threshold=d["threshold"],
            class_thresholds=list(d["class_thresholds"]),
            use_class_thresholds=d["per_class_used"],
            val_miou_global=d["val_miou_global"],
            val_miou_per_class=d["val_miou_per_class"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "class_thresholds": list(self.class_thresholds),
            "per_class_used": self.use_class_thresholds,
            "val_miou_global": self.val_miou_global,
            "val_miou_per_class": self.val_miou_per_class,
        }


def _pick(miou: Tensor, own: Tensor, current: int) -> int:
    """The best of ``miou [T]``; ties go to the best ``own`` (the moving class's IoU),
    then to ``current``, then to the lowest index (NaN counts lowest)."""
    miou = torch.nan_to_num(miou.double().cpu(), nan=-torch.inf)
    own = torch.nan_to_num(own.double().cpu(), nan=-torch.inf)
    tied = miou == miou.max()
    own = torch.where(tied, own, torch.full_like(own, -torch.inf))
    return best_index(own, prefer=current)


def coordinate_ascent(
    confmats: Callable[[int, Tensor], Tensor],
    thresholds: Sequence[float],
    start: float,
    classes: Sequence[int],
    num_classes: int,
    max_rounds: int = 5,
) -> tuple[Tensor, float]:
    """Per-class thresholds ``[C]`` maximising the combined mIoU one class at a time.

    ``confmats(cls, class_thresholds)`` returns the confusion matrices ``[T, C, C]`` of the
    label maps with class ``cls`` at each of ``thresholds`` and the others at
    ``class_thresholds``. Every class starts at ``start`` (one of ``thresholds``); only
    ``classes`` move (of ``num_classes``). A move needs a higher mIoU, or an
    equal one with a higher IoU of the moving class, so the result never scores below
    the start. Returns the thresholds and their mIoU.
    """
    values = torch.tensor([float(t) for t in thresholds], dtype=torch.float64)
    current = torch.full((num_classes,), float(start), dtype=torch.float64)
    index = {c: int(torch.argmin((values - start).abs())) for c in classes}
    best_score = float("nan")
    for _ in range(max_rounds):
        changed = False
        for cls in classes:
            cm = confmats(cls, current)
            miou = miou_from_confmat(cm)
            pick = _pick(miou, iou_from_confmat(cm)[:, cls], index[cls])
            best_score = float(miou[pick])
            if pick != index[cls]:
                index[cls], current[cls], changed = pick, values[pick], True
        if not changed:
            break
    return current, best_score


@dataclass
class CachedImage:
    """One validation image's instances above the lowest swept threshold, kept compactly
    for re-fusing at other per-class thresholds (covers cropped to their extent)."""

    target: Tensor  # uint8/int64 [H, W]
    labels: Tensor | None = None
    scores: Tensor | None = None
    crops: list[tuple[int, int, Tensor]] = field(default_factory=list)  # (y0, x0, bool crop)
    best: Tensor | None = None  # argmax: per-pixel best score * probability
    label: Tensor | None = None  # argmax: its class
    semantic: Tensor | None = None  # panoptic/semantic: the semantic head's label map

    def covers(self) -> Tensor:
        """The instances' full-size bool covers ``[N, H, W]``."""
        height, width = self.target.shape
        out = torch.zeros(len(self.crops), height, width, dtype=torch.bool)
        for i, (y0, x0, crop) in enumerate(self.crops):
            out[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        return out


def _compact(labels: Tensor) -> Tensor:
    """A label map on the CPU as uint8, or int64 when it holds ids above 255."""
    wide = labels.numel() > 0 and int(labels.max()) > 255
    return labels.to("cpu", torch.int64 if wide else torch.uint8)


class InstanceCache:
    """Validation outputs needed to score per-class threshold combinations after the epoch."""

    def __init__(self, method: str, mask_threshold: float, min_threshold: float) -> None:
        self.method = method
        self.mask_threshold = float(mask_threshold)
        self.min_threshold = float(min_threshold)
        self.images: list[CachedImage] = []

    def __len__(self) -> int:
        return len(self.images)

    def clear(self) -> None:
        self.images = []

    def add(
        self,
        labels: Tensor,
        scores: Tensor,
        masks: Tensor,
        target: Tensor,
        semantic: Tensor | None = None,
    ) -> None:
        """Keep one image (torchvision outputs and its ``[H, W]`` target), on the CPU.

        ``semantic``: the semantic head's ``[C, H, W]`` scores or ``[H, W]`` labels, which
        the ``panoptic`` and ``semantic`` methods need (kept as a label map)."""
        small = _compact(target)
        if masks.dim() == 4:
            masks = masks[:, 0]
        base = semantic_labels(semantic, self.method, tuple(masks.shape[-2:]))
        if base is not None:
            base = _compact(base)
        if self.method == "semantic":
            self.images.append(CachedImage(small, semantic=base))
            return
        if self.method == "argmax":
            best, label = argmax_best(labels, scores, masks, self.mask_threshold)
            label = label.to("cpu", torch.uint8)
            self.images.append(CachedImage(small, best=best.cpu(), label=label))
            return
        keep = scores > self.min_threshold
        labels, scores, masks = labels[keep].cpu(), scores[keep].cpu(), masks[keep]
        crops = []
        for mask in masks:
            cover = (mask > self.mask_threshold).cpu()
            rows, cols = torch.nonzero(cover.any(1)), torch.nonzero(cover.any(0))
            if len(rows) == 0:
                crops.append((0, 0, cover[:0, :0]))
                continue
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            crops.append((y0, x0, cover[y0:y1, x0:x1].clone()))
        self.images.append(
            CachedImage(small, labels=labels, scores=scores, crops=crops, semantic=base)
        )

    def class_sweep(
        self, image: CachedImage, class_thresholds: Tensor, cls: int, thresholds: Tensor
    ) -> Tensor:
        """``[T, H, W]`` maps of one cached image (see :func:`fashionseg.fusion.fuse_sweep`)."""
        if self.method == "argmax":
            return argmax_class_sweep(image.best, image.label, class_thresholds, cls, thresholds)
        if self.method == "semantic":
            count = torch.as_tensor(thresholds).numel()
            return image.semantic.to(torch.int64)[None].repeat(count, 1, 1)
        return fuse_sweep(
            image.labels,
            image.scores,
            image.covers(),
            thresholds,
            method=self.method,
            mask_threshold=0.5,
            semantic=image.semantic,
            class_thresholds=class_thresholds,
            cls=cls,
        )


def choose(
    confmat: Tensor,
    thresholds: Sequence[float],
    num_classes: int,
    per_class: bool = False,
    class_sweep_confmats: Callable[[int, Tensor], Tensor] | None = None,
) -> ThresholdChoice:
    """The global threshold from the swept ``confmat [T, C, C]`` and, with ``per_class``,
    per-class thresholds from ``class_sweep_confmats`` (see :func:`coordinate_ascent`)."""
    present = present_classes(confmat)
    curve = miou_from_confmat(confmat)
    best = best_index(curve)
    global_t = float(thresholds[best])
    choice = ThresholdChoice(
        threshold=global_t,
        class_thresholds=[global_t] * num_classes,
        use_class_thresholds=False,
        val_miou_global=float(curve[best]),
    )
    if not per_class or class_sweep_confmats is None:
        return choice
    movable = [c for c in range(1, num_classes) if bool(present[c])]
    if not movable:
        choice.val_miou_per_class = choice.val_miou_global
        return choice
    values, score = coordinate_ascent(
        class_sweep_confmats, thresholds, global_t, movable, num_classes
    )
    choice.val_miou_per_class = score
    if score > choice.val_miou_global:
        choice.class_thresholds = values.tolist()
        choice.use_class_thresholds = True
    return choice
