"""Prediction overlays with numpy only: the photo with each class painted in its colour.

The arithmetic is torchvision's ``draw_segmentation_masks`` (``photo * (1 - alpha) +
painted * alpha`` in float32, truncated to uint8), so that predict's overlays are the same
bytes whether PyTorch or the torch-free runtime (:mod:`fashionseg.runtime`) made the
label map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlay_rgb(
    rgb: np.ndarray,
    label_map: np.ndarray,
    colors: Sequence[Sequence[int]],
    alpha: float = 0.5,
) -> np.ndarray:
    """``rgb`` (``H x W x 3`` uint8) with every pixel of class ``i >= 1`` blended with
    ``colors[i]``; background (class 0) pixels stay as they are."""
    if rgb.shape[:2] != label_map.shape:
        raise ValueError(f"photo {rgb.shape[:2]} and label map {label_map.shape} differ in size")
    table = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    painted = rgb.copy()
    classes = np.asarray(label_map)
    drawn = (classes >= 1) & (classes < len(table))
    painted[drawn] = table[classes[drawn]]
    blend = rgb.astype(np.float32) * np.float32(1 - alpha)
    blend += painted.astype(np.float32) * np.float32(alpha)
    return blend.astype(np.uint8)
