"""Panoptic FPN: a semantic head on the Mask R-CNN's FPN, trained with the instance heads.

:class:`SemanticFPNHead` is Panoptic FPN's semantic branch (Kirillov et al., 2019;
detectron2's ``SemSegFPNHead``): every FPN level goes through ``log2(stride / finest
stride)`` stages of 3x3 conv + GroupNorm + ReLU + 2x bilinear upsampling (one stage
without upsampling for the finest level), the levels are summed at the finest level's
resolution (1/4 of the input for the ResNet FPNs; 1/32 for torchvision's MobileNetV3 FPN,
1/8 when it reads ``returned_layers=[2, 3, 4, 5]``), and a
1x1 convolution classifies every pixel over the task's classes (background included).
The levels and their strides are read off the backbone's own outputs (a probe at
construction), so every FPN backbone works; the max-pooled extra level (``pool``) is
left out as in the paper.

:class:`PanopticMaskRCNN` is a torchvision :class:`~torchvision.models.detection.MaskRCNN`
that runs the head beside the RPN and RoI heads on the same features. Images go through
the detector's own resize/normalise/pad transform; in training the ``semantic`` label
map of each target is resized the same way (nearest) and padded with
:data:`~fashionseg.data.targets.IGNORE_INDEX`, and cross-entropy (ignoring that value,
times ``semantic_loss_weight``) joins the five Mask R-CNN losses as ``loss_semantic``.
In evaluation every detection dict gains ``sem_probs``: ``[C, H, W]`` class
probabilities at the photo's own size (padding cropped away, then bilinear resize);
with ``tta_hflip`` the head's logits are averaged with those of the mirror image (the
backbone and head run once more; the instances come from the photo alone; see
:mod:`fashionseg.model.tta` for how a padded batch is mirrored); with ``tta_scales`` the
backbone and head also run on the photos resized by each scale times the detector's own
resize, and ``sem_probs`` is the mean of the scales' probabilities
(:func:`fashionseg.model.tta.scale_average`; the instances still come from scale 1).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList

from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.model.tta import check_scales, mirror_average, scale_average
from fashionseg.postprocess import semantic_probs

# FPN outputs that are not semantic-head inputs (torchvision's LastLevelMaxPool level)
EXTRA_LEVELS = ("pool",)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer when ``channels`` is not a multiple of 32)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class SemanticFPNHead(nn.Module):
    """Panoptic FPN's semantic branch over FPN levels of known strides.

    Args:
        in_channels: channels of every FPN level (256 for torchvision's FPNs).
        strides: ``{level name: stride}`` of the levels to use (e.g. ``{"0": 4, ...}``).
        num_classes: output classes, background included.
        channels: width of the conv stages (detectron2's 128).
    """

    def __init__(
        self, in_channels: int, strides: dict[str, int], num_classes: int, channels: int = 128
    ) -> None:
        super().__init__()
        if not strides:
            raise ValueError("the semantic head needs at least one FPN level")
        self.levels = list(strides)
        self.common_stride = min(strides.values())
        self.finest = min(strides, key=strides.__getitem__)
        self.stages = nn.ModuleDict()
        for name, stride in strides.items():
            ups = round(math.log2(stride / self.common_stride))
            if 2**ups * self.common_stride != stride:
                raise ValueError(
                    f"FPN level {name!r} has stride {stride}, not a power-of-two multiple "
                    f"of the finest stride {self.common_stride}"
                )
            layers: list[nn.Module] = []
            for k in range(max(1, ups)):
                layers += [
                    nn.Conv2d(in_channels if k == 0 else channels, channels, 3, padding=1),
                    _group_norm(channels),
                    nn.ReLU(inplace=True),
                ]
                if ups > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.stages[name] = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(channels, num_classes, 1)
        for module in self.stages.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        # small initial logits: the loss starts near log(num_classes)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Logits ``[B, C, h, w]`` at the finest level's resolution."""
        finest = features[self.finest].shape[-2:]
        total = None
        for name in self.levels:
            x = self.stages[name](features[name])
            if x.shape[-2:] != finest:  # inputs whose sides are not multiples of the strides
                x = F.interpolate(x, size=finest, mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return self.predictor(total)


@torch.no_grad()
def fpn_strides(backbone: nn.Module, probe: int = 128) -> tuple[int, dict[str, int]]:
    """``(channels, {level: stride})`` of a detection backbone's FPN outputs, found by
    running it once on a ``probe`` x ``probe`` image (the training mode is restored)."""
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters())
        features = backbone(torch.zeros(1, 3, probe, probe, device=param.device))
    finally:
        backbone.train(was_training)
    strides = {
        name: round(probe / feat.shape[-1])
        for name, feat in features.items()
        if name not in EXTRA_LEVELS
    }
    return int(backbone.out_channels), strides


def resize_semantic(label: Tensor, size: tuple[int, int]) -> Tensor:
    """A ``[H, W]`` label map resized to ``size`` with nearest-neighbour sampling."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label.long()
    out = F.interpolate(label[None, None].float(), size=size, mode="nearest")
    return out[0, 0].long()


class PanopticMaskRCNN(MaskRCNN):
    """A Mask R-CNN with a semantic FPN head (see the module docstring).

    Built from an existing detector, whose transform, backbone, RPN and RoI heads it
    takes over (their weights and state-dict keys unchanged); the head is always new.
    """

    def __init__(
        self,
        detector: MaskRCNN,
        num_classes: int,
        loss_weight: float = 1.0,
        channels: int = 128,
        tta_hflip: bool = False,
        tta_scales: Sequence[float] = (1.0,),
    ) -> None:
        GeneralizedRCNN.__init__(
            self, detector.backbone, detector.rpn, detector.roi_heads, detector.transform
        )
        in_channels, strides = fpn_strides(self.backbone)
        self.semantic_head = SemanticFPNHead(in_channels, strides, num_classes, channels)
        self.semantic_loss_weight = float(loss_weight)
        self.num_classes = num_classes
        self.tta_hflip = bool(tta_hflip)
        self.tta_scales = check_scales(tta_scales)

    def semantic_logits(self, features: dict[str, Tensor], padded: tuple[int, int]) -> Tensor:
        """Head logits ``[B, C, H, W]`` at the padded batch's size."""
        logits = self.semantic_head(features)
        return F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)

    def forward(  # type: ignore[override]
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses (training; every target needs ``semantic``) or detections with
        ``sem_probs`` (evaluation)."""
        semantic = None
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            if any("semantic" not in t for t in targets):
                raise ValueError("training the semantic head needs each target's 'semantic' map")
            # targets keep ``semantic``: the RoI heads leave its ignored pixels out
            semantic = [t["semantic"] for t in targets]
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets = self.transform(images, targets)
        if targets is not None:
            for index, target in enumerate(targets):
                boxes = target["boxes"]
                degenerate = boxes[:, 2:] <= boxes[:, :2]
                if degenerate.any():
                    bad = boxes[torch.where(degenerate.any(dim=1))[0][0]].tolist()
                    raise ValueError(
                        f"All bounding boxes should have positive height and width. "
                        f"Found invalid box {bad} for target at index {index}."
                    )
        features = self.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(image_list, features, targets)
        detections, detector_losses = self.roi_heads(
            features, proposals, image_list.image_sizes, targets
        )
        logits = self.semantic_outputs(features, image_list)
        padded = tuple(logits.shape[-2:])
        if self.training:
            label = torch.full(
                (len(images), *padded), IGNORE_INDEX, dtype=torch.long, device=logits.device
            )
            for i, (h, w) in enumerate(image_list.image_sizes):
                label[i, :h, :w] = resize_semantic(semantic[i].to(logits.device), (h, w))
            loss = F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)
            if not bool((label != IGNORE_INDEX).any()):
                loss = logits.sum() * 0.0  # every pixel ignored: no signal, but a graph
            return {
                **detector_losses,
                **proposal_losses,
                "loss_semantic": loss * self.semantic_loss_weight,
            }
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        probs = self.semantic_probabilities(images, image_list, logits, original_sizes)
        for i, sem_probs in enumerate(probs):
            detections[i]["sem_probs"] = sem_probs
        return detections

    def semantic_probabilities(
        self,
        images: Sequence[Tensor],
        image_list: ImageList,
        logits: Tensor,
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[Tensor]:
        """Each photo's ``[C, H, W]`` class probabilities at its original size: from
        ``logits`` (:meth:`semantic_outputs` of ``image_list``, the batch at the detector's
        own resize), averaged over ``tta_scales`` outside training (the backbone and head
        run again on ``images`` at each other scale)."""

        def at(scale: float) -> list[Tensor]:
            batch, out = image_list, logits
            if scale != 1.0:
                transform = copy.copy(self.transform)
                transform.min_size = tuple(float(m) * scale for m in self.transform.min_size)
                transform.max_size = float(self.transform.max_size) * scale
                batch, _ = transform(list(images))
                features = self.backbone(batch.tensors)
                if isinstance(features, Tensor):
                    features = OrderedDict([("0", features)])
                out = self.semantic_outputs(features, batch)
            return [
                semantic_probs(out[i : i + 1], image_size, size)[0]
                for i, (image_size, size) in enumerate(
                    zip(batch.image_sizes, original_sizes, strict=True)
                )
            ]

        return scale_average(at, (1.0,) if self.training else self.tta_scales)

    def semantic_outputs(self, features: dict[str, Tensor], image_list: ImageList) -> Tensor:
        """The head's ``[B, C, Hp, Wp]`` logits at the padded batch's size (averaged with
        the mirror image's with ``tta_hflip`` in evaluation)."""
        padded = tuple(image_list.tensors.shape[-2:])
        logits = self.semantic_logits(features, padded)
        if self.tta_hflip and not self.training:
            logits = mirror_average(
                logits,
                lambda batch: self.semantic_logits(self.backbone(batch), padded),
                image_list.tensors,
                image_list.image_sizes,
            )
        return logits
