"""Training augmentation on ``torchvision.transforms.v2`` with ``tv_tensors``.

The transforms take and return ``(image, target)``: ``image`` a
:class:`~torchvision.tv_tensors.Image` (3 x H x W, uint8 or float in [0, 1]) and
``target`` a dict whose :class:`~torchvision.tv_tensors.Mask` entries (``semantic``, the
H x W class-id label map) move with the photo: flips, crops and rescaling apply to both,
masks always by nearest neighbour, so class ids and the ignore value
(:data:`fashionseg.data.targets.IGNORE_INDEX`) survive exactly; colour jitter leaves masks
alone. :func:`augment` wraps plain tensors, runs the transforms and unwraps the result.

:class:`~fashionseg.data.dataset.FashionDataset` runs them on the uint8 photo and the label
map alone and derives the instances (masks, boxes, labels) afterwards: the cheapest order,
one box computation and no per-instance resizing. Random draws come from torch's global
RNG (``torch.manual_seed``; each DataLoader worker has its own seed), as in every v2
transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from fashionseg.data.io import planar

Target = dict[str, Any]
PairTransform = Callable[[Tensor, Target], tuple[Tensor, Target]]


def augment(transforms: PairTransform, image: Tensor, semantic: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``transforms`` on a photo (3 x H x W) and its label map (H x W) together.

    Both are wrapped as ``tv_tensors`` (Image, Mask) on the way in, so the label map moves
    with the photo, and come back as plain tensors.
    """
    image, target = transforms(tv_tensors.Image(image), {"semantic": tv_tensors.Mask(semantic)})
    return image.as_subclass(Tensor), target["semantic"].as_subclass(Tensor)


def _uniform(low: float, high: float) -> float:
    """A float drawn from ``[low, high]`` with torch's global RNG (as v2 transforms draw)."""
    return float(torch.empty(1).uniform_(low, high))


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    """Height and width of the first image or mask among a transform's inputs."""
    spatial = next(x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask)))
    height, width = F.get_size(spatial)
    return height, width


class RandomScale(v2.Transform):
    """Rescale by a factor drawn from ``[min_scale, max_scale]`` (scale jitter).

    Sides become ``round(side * factor)`` (at least 1); the photo is resized bilinearly
    (antialiased when shrinking), masks by nearest neighbour.
    """

    def __init__(self, min_scale: float = 0.75, max_scale: float = 1.25) -> None:
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"scale jitter needs 0 < min <= max, got [{min_scale}, {max_scale}]")
        self.min_scale, self.max_scale = min_scale, max_scale

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        scale = _uniform(self.min_scale, self.max_scale)
        height, width = _size(flat_inputs)
        size = [max(round(height * scale), 1), max(round(width * scale), 1)]
        return {"size": size, "antialias": scale < 1}  # antialiasing only matters when shrinking

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            F.resize,
            inpt,
            params["size"],
            InterpolationMode.BILINEAR,
            antialias=params["antialias"],
        )

    def extra_repr(self) -> str:
        return f"{self.min_scale}, {self.max_scale}"


class RandomCrop(v2.Transform):
    """Cut a random window whose sides are a fraction of the photo's, drawn from
    ``[min_frac, max_frac]`` (the same fraction for height and width, so the aspect ratio
    is kept), at a uniformly random position.

    Unlike ``v2.RandomResizedCrop`` (area fraction and aspect ratio drawn, then resized) or
    ``v2.RandomCrop`` (a fixed size), the window is not resized: both models resize every
    photo to a fixed size (``min_size`` / ``max_size``), which undoes :class:`RandomScale`;
    a crop survives that resize as a zoom-in of up to ``1 / min_frac`` and also moves the
    figure in the frame.
    """

    def __init__(self, min_frac: float = 0.6, max_frac: float = 1.0) -> None:
        super().__init__()
        if not 0 < min_frac <= max_frac <= 1:
            raise ValueError(f"crop needs 0 < min <= max <= 1, got [{min_frac}, {max_frac}]")
        self.min_frac, self.max_frac = min_frac, max_frac

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        frac = _uniform(self.min_frac, self.max_frac)
        height, width = _size(flat_inputs)
        h, w = max(round(height * frac), 1), max(round(width * frac), 1)
        top = int(torch.randint(0, height - h + 1, ()))
        left = int(torch.randint(0, width - w + 1, ()))
        return {"top": top, "left": left, "height": h, "width": w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)

    def extra_repr(self) -> str:
        return f"{self.min_frac}, {self.max_frac}"


class ContiguousPlanes(v2.Transform):
    """Lay the photo out as one contiguous plane per channel (masks pass through).

    :class:`~fashionseg.data.dataset.FashionDataset` hands the geometric steps its decoded
    photo as a 3 x H x W view of H x W x 3 memory: torch's uint8 bilinear resize runs
    2-3x faster on that layout (the same values). This step ends the geometric part, so
    that colour jitter and the model get the layout they always had (and the same sums).
    """

    _transformed_types = (tv_tensors.Image,)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tv_tensors.wrap(planar(inpt.as_subclass(Tensor)), like=inpt)


def build_train_transforms(
    hflip: float = 0.0,
    scale_jitter: Sequence[float] | None = None,
    color_jitter: float = 0.0,
    hue_jitter: float = 0.0,
    crop: Sequence[float] | None = None,
) -> v2.Compose | None:
    """The training augmentation from config values as a ``v2.Compose`` (None when none).

    Order: random crop (side fraction ``[min, max]``), scale jitter (``[min, max]``),
    horizontal flip (probability ``hflip``), :class:`ContiguousPlanes`, colour jitter:
    the photo becomes float in [0, 1] (``v2.ToDtype``, so the ops do not round to uint8
    one after another), then ``v2.ColorJitter`` draws brightness, contrast and saturation
    factors from ``[1 - color_jitter, 1 + color_jitter]`` and a hue shift from
    ``[-hue_jitter, hue_jitter]`` and applies them in random order, each clamped to [0, 1].
    A zero or ``None`` setting leaves that step out; either jitter alone jitters. Hue is off
    by default: its RGB -> HSV round trip costs about 30 ms per 600x400 photo on one core.
    """
    transforms: list[v2.Transform] = []
    if crop:
        transforms.append(RandomCrop(*crop))
    if scale_jitter:
        transforms.append(RandomScale(*scale_jitter))
    if hflip > 0:
        transforms.append(v2.RandomHorizontalFlip(hflip))
    transforms.append(ContiguousPlanes())
    if color_jitter > 0 or hue_jitter > 0:
        s = color_jitter
        transforms.append(v2.ToDtype(torch.float32, scale=True))
        transforms.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=hue_jitter))
    return v2.Compose(transforms) if len(transforms) > 1 else None
