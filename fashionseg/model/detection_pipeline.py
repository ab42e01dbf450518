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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fashionseg.postprocess import label_maps, raw_outputs


class DetectionPhotoToLabels(nn.Module):
    """A uint8 RGB photo ``H x W x 3`` -> its uint8 label map ``H x W`` (Mask R-CNN).

    ``net``: the torchvision Mask R-CNN (or PanopticMaskRCNN) in eval mode; ``fusion``:
    the keyword arguments of :func:`fashionseg.fusion.fuse`
    (:meth:`~fashionseg.model.module.MaskRCNNModule.fusion_settings`).
    """

    def __init__(self, net: nn.Module, fusion: Mapping[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.fusion = dict(fusion)

    def forward(self, photo: Tensor) -> Tensor:
        image = photo.permute(2, 0, 1).to(torch.float32) / 255
        return label_maps(raw_outputs(self.net, [image]), self.fusion)[0].to(torch.uint8)
