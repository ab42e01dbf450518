"""Label map -> Mask R-CNN targets (one binary mask, box and label per object)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from fashionseg.tasks import IGNORE_INDEX  # noqa: F401  (re-exported: one home, tasks)

INSTANCE_MODES = ("class", "components")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def check_instances(instances: str, name: str = "instances mode") -> str:
    """``instances`` if it is one of :data:`INSTANCE_MODES`, else a ``ValueError`` naming
    the setting (``name``) and the choices."""
    if instances not in INSTANCE_MODES:
        raise ValueError(f"unknown {name} {instances!r}: choose one of {', '.join(INSTANCE_MODES)}")
    return instances


def boxes_of(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x1, y1, x2, y2)`` of N x H x W binary masks, N x 4 float32.

    Coordinates are pixel edges: the box covers columns ``x1 .. x2 - 1`` and rows
    ``y1 .. y2 - 1`` (:func:`torchvision.ops.masks_to_boxes` maxima + 1), as torchvision's
    detection references do, so a one-pixel-wide object has width 1, not 0 (Mask R-CNN
    refuses zero-width boxes in training). Every mask must be non-empty.
    """
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    # Row/column occupancy then first/last index: the same boxes as masks_to_boxes (+1),
    # which gathers every pixel's coordinates and costs ~5x more at 600x400.
    rows = masks.any(dim=2)  # N x H
    cols = masks.any(dim=1)  # N x W
    if not bool(rows.any(dim=1).all()):
        raise ValueError("boxes_of: every mask must have at least one pixel")
    height, width = rows.shape[1], cols.shape[1]
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = height - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = width - cols.flip(1).to(torch.uint8).argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)


def empty_target(height: int, width: int) -> dict[str, torch.Tensor]:
    """A target with no objects: masks 0 x H x W, boxes 0 x 4, labels (0,)."""
    return {
        "masks": torch.zeros((0, height, width), dtype=torch.uint8),
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
    }


def mask_to_target(
    mask: np.ndarray | torch.Tensor,
    num_classes: int,
    instances: str = "class",
    min_area: int = 0,
) -> dict[str, torch.Tensor]:
    """Objects of an H x W class-id label map, in the format torchvision's Mask R-CNN takes.

    ``instances="class"``: one object per class present (the seed report's choice), in
    increasing class id; ``min_area`` is ignored. ``"components"``: one object per
    8-connected component of each class with at least ``min_area`` pixels, ordered by class,
    then by component label (:func:`scipy.ndimage.label` scan order).

    Returns ``masks`` (N x H x W uint8, 0/1), ``boxes`` (N x 4 float32, pixel-edge
    ``x1 y1 x2 y2`` from :func:`boxes_of`) and ``labels`` (N int64). Background (id 0) is
    never an object, nor are ignored pixels (:data:`IGNORE_INDEX`): instances are built
    from the other pixels only. With no objects ``masks`` is 0 x H x W and ``boxes`` 0 x 4.
    """
    check_instances(instances)
    ids = np.asarray(mask)
    if ids.ndim != 2:
        raise ValueError(f"label map must be 2-D (H x W), got shape {tuple(ids.shape)}")
    objects: list[np.ndarray] = []
    labels: list[int] = []
    for cls in range(1, num_classes):
        binary = ids == cls
        if not binary.any():
            continue
        if instances == "class":
            objects.append(binary)
            labels.append(cls)
            continue
        components, count = ndimage.label(binary, structure=_EIGHT_CONNECTED)
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for comp in range(1, count + 1):
            if areas[comp] >= min_area:
                objects.append(components == comp)
                labels.append(cls)
    if not objects:
        return empty_target(*ids.shape)
    masks = torch.from_numpy(np.stack(objects).astype(np.uint8))
    return {
        "masks": masks,
        "boxes": boxes_of(masks),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
