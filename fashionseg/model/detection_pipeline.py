"""Mask R-CNN (and Panoptic FPN) from a uint8 photo to its label map, as one module.

:class:`DetectionPhotoToLabels` is the graph :mod:`fashionseg.export` exports for the
Mask R-CNN family: a uint8 RGB photo ``H x W x 3`` becomes a float image in [0, 1] (as
predict makes it), goes through the detector's own resize/normalise/pad transform,
backbone, RPN and RoI heads (and Panoptic FPN's semantic head, with its flip TTA where
the checkpoint uses it) by :func:`fashionseg.postprocess.raw_outputs`, and
:func:`fashionseg.postprocess.label_maps` pastes the masks batched and fuses them at the
checkpoint's validated threshold(s): the same two calls as
:meth:`fashionseg.model.module.MaskRCNNModule.predict_maps`, not a second copy.

It exports with ``torch.onnx.export(..., dynamo=False)`` (torchvision's detectors trace,
with ONNX-friendly code paths while tracing); the photo's size stays dynamic because
the post-processing reads it off the image's shape (:func:`fashionseg.postprocess.size_tensor`).

One step is replaced: torchvision's traced resize computes the resized size in float32
(``floor(97 * float32(64 / 97)) = 63``) where its eager resize uses Python floats (64),
so about half of all photo sizes would come out one pixel smaller in the graph and the
label maps would disagree. :class:`ExactResizeTransform` computes the size in float64 (the
eager arithmetic, bit for bit: eagerly it gives torchvision's size and pixels) and
resizes to it; the graph's detector uses it, the detector's other parts are shared.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fashionseg.postprocess import label_maps, raw_outputs


def exact_resized_size(height: Tensor, width: Tensor, min_size: int, max_size: int) -> Tensor:
    """``[2]`` int64: the size torchvision's eager resize gives a ``height`` x ``width``
    photo, ``floor(side * min(min_size / short, max_size / long))`` in float64."""
    side = torch.stack([height, width]).to(torch.float64)
    limits = torch.tensor([min_size, max_size], dtype=torch.float64, device=side.device)
    # a true division (a number / a tensor is a reciprocal times the number: rounds apart)
    scale = (limits / torch.stack([side.min(), side.max()])).min()
    return (side * scale).floor().to(torch.int64)


class ExactResizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform whose evaluation resize sizes photos as eager code does,
    traced or not (see the module docstring); training and fixed sizes are torchvision's."""

    @classmethod
    def like(cls, transform: GeneralizedRCNNTransform) -> ExactResizeTransform:
        """A copy of ``transform``'s settings (min/max size, mean, std, divisibility)."""
        new = cls.__new__(cls)
        new.__dict__.update(copy.copy(transform.__dict__))
        return new

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if self.training or target is not None or self.fixed_size is not None:
            return super().resize(image, target)
        shape = torch._shape_as_tensor(image)
        size = exact_resized_size(shape[-2], shape[-1], self.min_size[-1], self.max_size)
        sides = [size[0], size[1]] if torch.jit.is_tracing() else size.tolist()
        out = F.interpolate(image[None], size=sides, mode="bilinear", align_corners=False)
        return out[0], None


class DetectionPhotoToLabels(nn.Module):
    """A uint8 RGB photo ``H x W x 3`` -> its uint8 label map ``H x W`` (Mask R-CNN).

    ``net``: the torchvision Mask R-CNN (or PanopticMaskRCNN) in eval mode; ``fusion``:
    the keyword arguments of :func:`fashionseg.fusion.fuse`
    (:meth:`~fashionseg.model.module.MaskRCNNModule.fusion_settings`).
    """

    def __init__(self, net: nn.Module, fusion: Mapping[str, Any]) -> None:
        super().__init__()
        detector = copy.copy(net)  # the same parts, but its own transform
        detector._modules = dict(net._modules)
        detector.transform = ExactResizeTransform.like(net.transform)
        self.net = detector
        self.fusion = dict(fusion)

    def forward(self, photo: Tensor) -> Tensor:
        image = photo.permute(2, 0, 1).to(torch.float32) / 255
        return label_maps(raw_outputs(self.net, [image]), self.fusion)[0].to(torch.uint8)
