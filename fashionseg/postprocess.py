"""From Mask R-CNN's raw outputs to label maps, batched and on the device.

torchvision's detector ends with :meth:`GeneralizedRCNNTransform.postprocess`: per photo,
boxes are scaled back to the photo's size and every 28 x 28 mask is pasted into a
full-size image one at a time (``paste_masks_in_image``: a Python loop over instances).
Here the same steps run as one set of tensor operations for a whole batch of photos of
one size: :func:`resize_boxes` scales ``[B, N, 4]`` boxes, :func:`paste_masks` pastes
``[B, N]`` masks at once as two batched matrix products (bilinear interpolation is
separable: ``rows @ mask @ columns^T``, with torchvision's box expansion, integer box
corners and ``F.interpolate``'s ``align_corners=False`` sampling; the pasted
probabilities match torchvision's to float rounding), and :func:`fashionseg.fusion.fuse`
turns them into ``[B, H, W]`` label maps. Nothing on that path loops over photos or
instances or reads a value back to the host, and it exports to ONNX
(``torch.onnx.export(..., dynamo=False)``) with a dynamic number of detections:
:func:`detections_to_label_maps` is the function to export.

:func:`raw_outputs` runs a torchvision Mask R-CNN (or
:class:`fashionseg.model.panoptic.PanopticMaskRCNN`) up to its raw detections, and
:func:`label_maps` takes it from there, grouping photos by size (one group in the usual
batch of photos of one size).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from fashionseg.fusion import fuse

DETECTION_KEYS = ("boxes", "labels", "scores", "masks")


def resize_boxes(boxes: Tensor, image_sizes: Tensor, original_size: Tensor) -> Tensor:
    """``[B, N, 4]`` boxes from the resized images' coordinates (``image_sizes [B, 2]``,
    height then width) to the photos' (``original_size [2]`` or ``[B, 2]``), with
    torchvision's float32 arithmetic."""
    ratio = original_size.to(torch.float32) / image_sizes.to(torch.float32)  # [B, 2]
    ratio_h, ratio_w = ratio[..., 0:1], ratio[..., 1:2]
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0 * ratio_w, y0 * ratio_h, x1 * ratio_w, y1 * ratio_h), dim=-1)


def _axis_weights(start: Tensor, end: Tensor, length: int, source: int) -> Tensor:
    """``[B, N, length, source]`` bilinear weights of one axis: output pixel ``p`` inside
    ``[start, end]`` samples a ``source``-pixel mask resized to ``end - start + 1``
    pixels (``F.interpolate``, ``align_corners=False``); 0 outside the box."""
    size = (end - start + 1).clamp(min=1)
    pos = torch.arange(length, device=start.device)
    local = pos - start[..., None]  # [B, N, L]
    inside = (pos >= start[..., None]) & (pos <= end[..., None])
    scale = (source / size.to(torch.float32))[..., None]
    src = (scale * (local.to(torch.float32) + 0.5) - 0.5).clamp(min=0)
    low = src.floor().clamp(max=source - 1)
    lam = (src - low).clamp(0, 1)
    low = low.to(torch.int64)
    high = low + (low < source - 1).to(torch.int64)
    cols = torch.arange(source, device=start.device)
    weights = (cols == low[..., None]) * (1 - lam)[..., None] + (cols == high[..., None]) * lam[
        ..., None
    ]
    return weights * inside[..., None]


def paste_masks(masks: Tensor, boxes: Tensor, size: tuple[int, int], padding: int = 1) -> Tensor:
    """Paste ``[B, N, 1, M, M]`` (or ``[B, N, M, M]``) mask probabilities into ``size``
    images at ``[B, N, 4]`` boxes (the photos' coordinates): ``[B, N, H, W]`` float32.

    What ``torchvision.models.detection.roi_heads.paste_masks_in_image`` does one mask at
    a time, for every mask at once: the mask padded by ``padding`` zeros, its box scaled
    to match and rounded towards zero, the mask resized bilinearly to the box and written
    inside it (clipped to the image), zeros elsewhere.
    """
    if masks.dim() == 5:
        masks = masks[:, :, 0]
    with torch.autocast(device_type=masks.device.type, enabled=False):
        masks = F.pad(masks.to(torch.float32), (padding,) * 4)
        source = masks.shape[-1]
        scale = float(source) / (source - 2 * padding)
        boxes = boxes.to(torch.float32)
        x0, y0, x1, y1 = boxes.unbind(-1)
        w_half = (x1 - x0) * 0.5 * scale
        h_half = (y1 - y0) * 0.5 * scale
        x_c = (x1 + x0) * 0.5
        y_c = (y1 + y0) * 0.5
        corners = torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), -1)
        x0, y0, x1, y1 = corners.to(torch.int64).unbind(-1)
        rows = _axis_weights(y0, y1, size[0], source)  # [B, N, H, K]
        cols = _axis_weights(x0, x1, size[1], source)  # [B, N, W, K]
        return rows @ (masks @ cols.transpose(-1, -2))


def detections_to_label_maps(
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    image_sizes: Tensor,
    original_size: tuple[int, int],
    *,
    method: str = "seed",
    threshold: float | Tensor = 0.5,
    mask_threshold: float = 0.5,
    class_thresholds: Tensor | None = None,
    semantic: Tensor | None = None,
    original_sizes: Tensor | None = None,
) -> Tensor:
    """Raw detections of a batch of photos of one size -> int64 ``[B, H, W]`` label maps.

    ``boxes [B, N, 4]`` in the resized images' coordinates (``image_sizes [B, 2]``),
    ``labels``/``scores [B, N]``, ``masks [B, N, 1, M, M]`` probabilities (pad photos
    with fewer detections with zero masks: they cover nothing); ``original_size`` is the
    photos' ``(H, W)``; ``semantic`` the head's ``[B, C, H, W]`` scores at that size. The
    fusion settings are :func:`fashionseg.fusion.fuse`'s. ``original_sizes`` (``[2]`` or
    ``[B, 2]``) gives the photos' size as a tensor too: an export whose photo size is
    dynamic passes ``torch._shape_as_tensor(image)[-2:]`` here and ``image.shape[-2:]`` as
    ``original_size`` (a traced tuple would be frozen into the box scaling).
    """
    size = original_sizes
    if size is None:
        size = torch.as_tensor(original_size, device=boxes.device)
    pasted = paste_masks(masks, resize_boxes(boxes, image_sizes, size), original_size)
    return fuse(
        labels,
        scores,
        pasted,
        method=method,
        threshold=threshold,
        mask_threshold=mask_threshold,
        class_thresholds=class_thresholds,
        semantic=semantic,
    )


def semantic_probs(logits: Tensor, image_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """The semantic head's ``[B, C, Hp, Wp]`` logits (the padded batch's size) ->
    ``[B, C, H, W]`` class probabilities at the photos' ``size``: the resized photo's
    ``image_size`` cropped out of the padding, resized bilinearly, softmax over classes."""
    crop = logits[:, :, : image_size[0], : image_size[1]]
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False).softmax(1)


@dataclass
class RawOutputs:
    """A detector's outputs before torchvision's postprocess.

    ``detections``: per photo ``boxes`` (resized image coordinates), ``labels``,
    ``scores``, ``masks [n, 1, M, M]`` probabilities; ``image_sizes``/``original_sizes``:
    the resized and the original ``(H, W)``; ``semantic_logits``: Panoptic FPN's
    ``[B, C, Hp, Wp]`` head logits (None without the head); ``semantic_probs``: with
    the head's multi-scale TTA, each photo's ``[C, H, W]`` probabilities averaged over
    the scales (used instead of the logits).
    """

    detections: list[dict[str, Tensor]]
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    semantic_logits: Tensor | None = None
    semantic_probs: list[Tensor] | None = None


def raw_outputs(net: nn.Module, images: list[Tensor]) -> RawOutputs:
    """Run a torchvision Mask R-CNN (eval mode) up to its raw detections; a network with
    a ``semantic_outputs(features, image_list)`` method (Panoptic FPN) adds its logits."""
    # the sizes as the shapes give them: ints eagerly, traced values in an ONNX export
    original_sizes = [(image.shape[-2], image.shape[-1]) for image in images]
    image_list, _ = net.transform(images)
    features = net.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = net.rpn(image_list, features)
    detections, _ = net.roi_heads(features, proposals, image_list.image_sizes)
    logits = probs = None
    if hasattr(net, "semantic_outputs"):
        logits = net.semantic_outputs(features, image_list)
        if net.tta_scales != (1.0,):
            probs = net.semantic_probabilities(images, image_list, logits, original_sizes)
    sizes = list(image_list.image_sizes)
    return RawOutputs(detections, sizes, original_sizes, logits, probs)


def size_tensor(size: tuple[Any, Any], device: torch.device) -> Tensor:
    """A ``(H, W)`` size as an int64 ``[2]`` tensor; sizes read off shapes stay traced in
    an ONNX export (``torch.tensor`` of them would freeze the traced photo's size)."""
    return torch.stack([torch.as_tensor(side, dtype=torch.int64, device=device) for side in size])


def pad_detections(detections: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Per-photo detections -> ``[B, N, ...]`` tensors, N the most any photo has (one
    ``pad_sequence`` per field; the padding's zero masks cover nothing). One photo's
    need no padding (and ONNX has no ``pad_sequence``: the exported graph takes one)."""
    if len(detections) == 1:
        return {key: detections[0][key][None] for key in DETECTION_KEYS}
    return {
        key: pad_sequence([d[key] for d in detections], batch_first=True) for key in DETECTION_KEYS
    }


def label_maps(raw: RawOutputs, fusion: Mapping[str, Any]) -> list[Tensor]:
    """Label maps of every photo of ``raw`` (each its own size), in order: one batched
    :func:`detections_to_label_maps` per group of photos of one size. ``fusion``: the
    keyword arguments of :func:`fashionseg.fusion.fuse`."""
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(raw.image_sizes, raw.original_sizes, strict=True)):
        groups.setdefault(key, []).append(i)
    maps: list[Tensor | None] = [None] * len(raw.detections)
    for (image_size, original_size), members in groups.items():
        padded = pad_detections([raw.detections[i] for i in members])
        semantic = None
        if raw.semantic_probs is not None and fusion.get("method") in ("panoptic", "semantic"):
            semantic = torch.stack([raw.semantic_probs[i] for i in members])
        elif raw.semantic_logits is not None and fusion.get("method") in ("panoptic", "semantic"):
            logits = raw.semantic_logits[members] if len(groups) > 1 else raw.semantic_logits
            semantic = semantic_probs(logits, image_size, original_size)
        device = padded["boxes"].device
        sizes = size_tensor(image_size, device)[None].expand(len(members), 2)
        out = detections_to_label_maps(
            padded["boxes"],
            padded["labels"],
            padded["scores"],
            padded["masks"],
            sizes,
            original_size,
            semantic=semantic,
            original_sizes=size_tensor(original_size, device),
            **fusion,
        )
        for i, label_map in zip(members, out.unbind(0), strict=True):
            maps[i] = label_map
    return maps
