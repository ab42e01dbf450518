"""Training augmentation on ``(image, target)`` pairs, applied consistently.

Each transform takes and returns ``(image, target)``: ``image`` 3 x H x W, uint8 or float
in [0, 1]; ``target`` with ``semantic`` (H x W int64) and, optionally, the instances
``masks`` (N x H x W uint8), ``boxes`` (N x 4) and ``labels``. Geometric transforms move
all of them together and recompute the boxes from the masks.

:class:`~fashionseg.data.dataset.FashionDataset` runs them on the uint8 photo and the label
map alone and derives the instances afterwards (the cheapest order: one box computation,
no per-instance resizing); colour jitter converts to float first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from fashionseg.data.targets import boxes_of

Target = dict[str, Any]
Pair = tuple[Tensor, Target]


def _map_target(target: Target, geometry: Callable[[Tensor], Tensor]) -> Target:
    """``target`` with ``geometry`` (on N x H x W maps) applied to the label map and masks.

    Instances whose mask no longer has a pixel are dropped; boxes come from the masks.
    """
    target = dict(target)
    target["semantic"] = geometry(target["semantic"][None])[0]
    if "masks" not in target:
        return target
    masks = geometry(target["masks"])
    keep = masks.flatten(1).amax(1) > 0
    target["masks"] = masks[keep]
    target["labels"] = target["labels"][keep]
    target["boxes"] = boxes_of(target["masks"])
    return target


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Tensor, Target], Pair]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> Pair:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomHorizontalFlip:
    """Mirror image, masks, label map and boxes with probability ``p``.

    Boxes are pixel-edge coordinates, so ``x1' = W - x2`` and ``x2' = W - x1``.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, target: Target) -> Pair:
        if random.random() >= self.p:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        target["semantic"] = target["semantic"].flip(-1)
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]  # pixel-edge coordinates
            target["boxes"] = boxes
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomScale:
    """Rescale by a factor drawn from ``[min_scale, max_scale]`` (scale jitter).

    The image is resized bilinearly, masks and label map by nearest neighbour; boxes are
    recomputed from the masks and objects that vanish are dropped.
    """

    def __init__(self, min_scale: float = 0.75, max_scale: float = 1.25) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"scale jitter needs 0 < min <= max, got [{min_scale}, {max_scale}]")
        self.min_scale, self.max_scale = min_scale, max_scale

    def __call__(self, image: Tensor, target: Target) -> Pair:
        scale = random.uniform(self.min_scale, self.max_scale)
        height, width = image.shape[-2:]
        size = [max(round(height * scale), 1), max(round(width * scale), 1)]
        # antialiasing only matters when shrinking
        image = F.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=scale < 1)
        nearest = InterpolationMode.NEAREST

        def resize(maps: Tensor) -> Tensor:
            if not maps.shape[0]:
                return maps.new_zeros((0, *size))
            return F.resize(maps, size, interpolation=nearest)

        return image, _map_target(target, resize)

    def __repr__(self) -> str:
        return f"RandomScale({self.min_scale}, {self.max_scale})"


class RandomCrop:
    """Cut a random window whose sides are a fraction of the photo's, drawn from
    ``[min_frac, max_frac]`` (the same fraction for height and width, so the aspect ratio
    is kept), at a random position.

    Both models resize every photo to a fixed size (``min_size`` / ``max_size``), which
    undoes :class:`RandomScale`; a crop survives that resize as a zoom-in of up to
    ``1 / min_frac`` and also moves the figure in the frame. Instances cut away entirely
    are dropped; boxes are recomputed from the cropped masks.
    """

    def __init__(self, min_frac: float = 0.6, max_frac: float = 1.0) -> None:
        if not 0 < min_frac <= max_frac <= 1:
            raise ValueError(f"crop needs 0 < min <= max <= 1, got [{min_frac}, {max_frac}]")
        self.min_frac, self.max_frac = min_frac, max_frac

    def __call__(self, image: Tensor, target: Target) -> Pair:
        frac = random.uniform(self.min_frac, self.max_frac)
        height, width = image.shape[-2:]
        h, w = max(round(height * frac), 1), max(round(width * frac), 1)
        top, left = random.randint(0, height - h), random.randint(0, width - w)
        window = (slice(None), slice(top, top + h), slice(left, left + w))
        return image[window], _map_target(target, lambda maps: maps[window])

    def __repr__(self) -> str:
        return f"RandomCrop({self.min_frac}, {self.max_frac})"


class ColorJitter:
    """Photometric jitter of the image only (torchvision.transforms.v2 functional ops).

    Brightness, contrast and saturation factors are drawn from ``[1 - s, 1 + s]``, the hue
    shift from ``[-hue, hue]``; the ops run in random order and the result is clamped to
    [0, 1]. The target is returned unchanged. Hue is off by default: its RGB -> HSV round
    trip costs about 30 ms per 600x400 photo on one CPU core, 40x the other three together.
    """

    def __init__(self, strength: float = 0.3, hue: float = 0.0) -> None:
        self.strength, self.hue = strength, hue

    def __call__(self, image: Tensor, target: Target) -> Pair:
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        s = self.strength
        ops = [
            (F.adjust_brightness, random.uniform(1 - s, 1 + s)),
            (F.adjust_contrast, random.uniform(1 - s, 1 + s)),
            (F.adjust_saturation, random.uniform(1 - s, 1 + s)),
        ]
        if self.hue > 0:
            ops.append((F.adjust_hue, random.uniform(-self.hue, self.hue)))
        random.shuffle(ops)
        for op, factor in ops:
            image = op(image, factor)
        return image.clamp(0, 1), target

    def __repr__(self) -> str:
        return f"ColorJitter(strength={self.strength}, hue={self.hue})"


def build_train_transforms(
    hflip: float = 0.0,
    scale_jitter: Sequence[float] | None = None,
    color_jitter: float = 0.0,
    hue_jitter: float = 0.0,
    crop: Sequence[float] | None = None,
) -> Compose:
    """The training augmentation from config values (an empty ``Compose`` when none).

    Order: random crop (side fraction ``[min, max]``), scale jitter (``[min, max]``),
    horizontal flip (probability ``hflip``), colour jitter (strength ``color_jitter``, hue
    shift ``hue_jitter``); a zero or ``None`` setting leaves that step out.
    """
    transforms: list[Callable[[Tensor, Target], Pair]] = []
    if crop:
        transforms.append(RandomCrop(*crop))
    if scale_jitter:
        transforms.append(RandomScale(*scale_jitter))
    if hflip > 0:
        transforms.append(RandomHorizontalFlip(hflip))
    if color_jitter > 0 or hue_jitter > 0:  # either alone jitters
        transforms.append(ColorJitter(color_jitter, hue_jitter))
    return Compose(transforms)
