"""Instance AP (COCO): mask and box AP of Mask R-CNN detections, by torchmetrics'
``MeanAveragePrecision`` over faster-coco-eval (or pycocotools); ground-truth instances
come from the label maps as training makes them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

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
