"""Label map -> Mask R-CNN targets (one binary mask, box and label per object)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import masks_to_boxes

INSTANCE_MODES = ("class", "components")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def boxes_of(masks: torch.Tensor) -> torch.Tensor:
    """Tight pixel-edge boxes (x1, y1, x2, y2) of N x H x W binary masks; N x 4 float32."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    boxes = masks_to_boxes(masks).to(torch.float32)
    boxes[:, 2:] += 1
    return boxes


def mask_to_target(
    mask: np.ndarray | torch.Tensor,
    num_classes: int,
    instances: str = "class",
    min_area: int = 0,
) -> dict[str, torch.Tensor]:
    """Objects of a class-id label map, in the format torchvision's Mask R-CNN trains on.

    ``instances="class"``: one object per class present (the seed report's choice), in
    increasing class id. ``"components"``: one object per 8-connected component of each
    class with at least ``min_area`` pixels, ordered by class, then component label (scan
    order). Boxes are ``x1, y1, x2, y2`` in pixel-edge coordinates: the tight box of pixels
``x1 .. x2 - 1`` (``masks_to_boxes`` maxima + 1), so a one-pixel-wide object still has a
positive width, as Mask R-CNN's training requires.
    Background (id 0) is never an object; with no objects, ``masks`` is 0 x H x W and
    ``boxes`` is 0 x 4.
    """
    if instances not in INSTANCE_MODES:
        raise ValueError(
            f"unknown instances mode {instances!r}: choose one of {', '.join(INSTANCE_MODES)}"
        )
    ids = np.asarray(mask)
    objects: list[np.ndarray] = []
    labels: list[int] = []
    for cls in range(1, num_classes):
        binary = ids == cls
        if not binary.any():
            continue
        if instances == "class":
            if binary.sum() >= min_area:
                objects.append(binary)
                labels.append(cls)
            continue
        components, count = ndimage.label(binary, structure=_EIGHT_CONNECTED)
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for comp in range(1, count + 1):
            if areas[comp] >= max(min_area, 1):
                objects.append(components == comp)
                labels.append(cls)
    height, width = ids.shape
    if not objects:
        return {
            "masks": torch.zeros((0, height, width), dtype=torch.uint8),
            "boxes": torch.zeros((0, 4), dtype=torch.float32),
            "labels": torch.zeros((0,), dtype=torch.int64),
        }
    masks = torch.from_numpy(np.stack(objects).astype(np.uint8))
    return {
        "masks": masks,
        "boxes": boxes_of(masks),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
