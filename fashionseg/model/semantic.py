"""A semantic-segmentation baseline: torchvision LRASPP / DeepLabV3 / FCN, per-pixel loss.

Trained through the same DataModule and scored by the same metrics as the Mask R-CNN
module, so the two approaches compare in one table. There are no instances and no score
threshold: each pixel takes the class of highest probability.

Photos are resized like Mask R-CNN does (scale ``min(min_size / short side, max_size /
long side)``), normalised with ImageNet statistics, padded to a batch whose sides are
multiples of 32 (padding is ignored by the loss), and the logits are cropped and
upsampled back to each photo's own size before the argmax: all of it in
:class:`fashionseg.model.semantic_pipeline.SemanticPipeline`, the module the export
turns into an ONNX graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from kornia.losses import dice_loss
from torch import Tensor, nn
from torchvision.models import get_model, get_model_weights

from fashionseg.data.mix import class_mix
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.model.base import SegmentationBase
from fashionseg.model.builder import resolve_auto
from fashionseg.model.semantic_pipeline import MEAN, STD, SemanticPipeline, resized_size
from fashionseg.model.tta import check_scales
from fashionseg.thresholds import THRESHOLD_BUFFERS

SEMANTIC_ARCHS = (
    "lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet50",
    "fcn_resnet50",
)
SEMANTIC_WEIGHTS = ("auto", "coco", "imagenet", "none")
IGNORE = IGNORE_INDEX  # data.ignore_index pixels and the batch padding: no loss
BN_MOMENTUM = 0.1  # PyTorch's default


def _replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """New last 1x1 convolutions for ``num_classes`` (after loading 21-class weights)."""
    head = model.classifier
    if hasattr(head, "low_classifier"):  # LRASPP
        head.low_classifier = nn.Conv2d(head.low_classifier.in_channels, num_classes, 1)
        head.high_classifier = nn.Conv2d(head.high_classifier.in_channels, num_classes, 1)
    else:  # DeepLabHead / FCNHead: the last layer is the classifier
        head[-1] = nn.Conv2d(head[-1].in_channels, num_classes, 1)
    model.aux_classifier = None
    return model


def build_semantic(
    arch: str = "lraspp_mobilenet_v3_large", num_classes: int = 2, weights: str = "none"
) -> nn.Module:
    """A torchvision segmentation model for ``num_classes`` classes (background included).

    ``weights``: ``coco`` (torchvision's COCO-with-VOC-labels model, classifier replaced),
    ``imagenet`` (backbone only), ``none`` (random init) or ``auto`` (``coco`` when it
    can be loaded from the torch hub cache or downloaded, else ``none`` with a warning).
    """
    if arch not in SEMANTIC_ARCHS:
        raise ValueError(
            f"unknown model.net.arch {arch!r}: choose one of {', '.join(SEMANTIC_ARCHS)}"
        )
    if weights not in SEMANTIC_WEIGHTS:
        raise ValueError(
            f"unknown model.net.weights {weights!r}: choose one of {', '.join(SEMANTIC_WEIGHTS)}"
        )
    coco = get_model_weights(arch).DEFAULT
    if weights == "auto":
        weights = resolve_auto(arch, coco)
    if weights == "coco":
        return _replace_classifier(get_model(arch, weights=coco), num_classes)
    backbone = None
    if weights == "imagenet":
        backbone_name = "mobilenet_v3_large" if "mobilenet" in arch else "resnet50"
        backbone = get_model_weights(backbone_name).DEFAULT
    model = get_model(
        arch,
        weights=None,
        weights_backbone=backbone,
        num_classes=num_classes,
        **({} if arch.startswith("lraspp") else {"aux_loss": False}),
    )
    if backbone is None:
        # MobileNetV3's BatchNorm keeps running statistics with momentum 0.01, tuned for
        # long ImageNet schedules: from random init in a few hundred steps they lag the
        # weights so far behind that eval mode predicts background everywhere.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM
    return model


class SemanticModule(SegmentationBase):
    """Per-pixel cross-entropy (+ Dice) training of a torchvision segmentation model.

    ``net`` holds ``arch``, ``weights``, ``min_size``, ``max_size``, ``tta_hflip``
    (evaluation averages the logits of the photo and its mirror image) and ``tta_scales``
    (multi-scale TTA: :class:`SemanticPipeline`; default ``[1.0]``, none), ``dice_weight``
    (adds that times kornia's macro Dice loss, ignored pixels left out, to the
    cross-entropy; 0: cross-entropy alone) and ``class_mix`` (the probability of
    :func:`fashionseg.data.mix.class_mix` per training photo); ``optimizer``
    and ``scheduler`` are those of :class:`fashionseg.model.base.SegmentationBase`.
    Pixels take the class of highest probability: there is no score threshold.
    """

    family = "semantic"

    def build_net(self, settings: Mapping[str, Any]) -> nn.Module:
        self.register_buffer("mean", torch.tensor(MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(3, 1, 1), persistent=False)
        settings = dict(settings)
        self.min_size = int(settings.pop("min_size", 400))
        self.max_size = int(settings.pop("max_size", 600))
        self.tta_hflip = bool(settings.pop("tta_hflip", False))
        self.tta_scales = check_scales(settings.pop("tta_scales", None) or (1.0,))
        self.dice_weight = float(settings.pop("dice_weight", 0.0))
        self.class_mix = float(settings.pop("class_mix", 0.0))
        if self.dice_weight < 0 or not 0 <= self.class_mix <= 1:
            raise ValueError(
                "model.net.dice_weight must be >= 0 and model.net.class_mix in [0, 1]: got "
                f"{self.dice_weight} and {self.class_mix}"
            )
        return build_semantic(num_classes=self.task.num_classes, **settings)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written while this module inherited the Mask R-CNN one hold its
        threshold buffers: dropped, so they resume and test (strict loading)."""
        for key in THRESHOLD_BUFFERS:
            checkpoint["state_dict"].pop(key, None)

    @property
    def pipeline(self) -> SemanticPipeline:
        """The network with its pre- and post-processing (resize, normalise, pad, flip and
        multi-scale TTA, crop and upsample back) at this module's settings; what :mod:`fashionseg.export`
        exports. Made on each use from the module's network and buffers (shared, not
        copied), so that the checkpoint's keys stay those of the network."""
        pipeline = SemanticPipeline(
            self.net,
            self.min_size,
            self.max_size,
            self.tta_hflip,
            self.mean,
            self.std,
            tta_scales=self.tta_scales,
        )
        return pipeline.train(self.training)

    # ---------------------------------------------------------------- batching
    def _size(self, height: int, width: int) -> tuple[int, int]:
        return resized_size(height, width, self.min_size, self.max_size)

    def _batch(self, images: list[Tensor], labels: list[Tensor] | None = None) -> tuple:
        """Resized, normalised, padded images [B,3,H,W] (+ labels [B,H,W], padding ignored)."""
        return self.pipeline.batch(images, labels)

    # ------------------------------------------------------------------ steps
    def forward(self, images: list[Tensor]) -> list[Tensor]:
        """Class probabilities [C, H, W] at each photo's own size."""
        return self.pipeline(images)

    @torch.no_grad()
    def predict_maps(self, images: list[Tensor]) -> list[Tensor]:
        return self.pipeline.labels(images)

    def training_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        x, y, _ = self._batch(images, [t["semantic"] for t in targets])
        if self.class_mix:
            x, y = class_mix(x, y, self.class_mix, IGNORE)
        logits = self.net(x)["out"]
        losses = {"loss_ce": F.cross_entropy(logits, y, ignore_index=IGNORE)}
        if self.dice_weight:
            losses["loss_dice"] = self.dice_weight * dice_loss(
                logits, y, average="macro", ignore_index=IGNORE
            )
        loss = self._checked_total(losses, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss
