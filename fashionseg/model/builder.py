"""Build torchvision Mask R-CNN models for a task's class count.

Pretrained weights go through torchvision's weights API (and so its torch hub cache,
``$TORCH_HOME/hub/checkpoints``): ``coco`` loads the full COCO detector and replaces
the box and mask predictors; ``imagenet`` loads the backbone only; ``none`` starts
from random init (BatchNorm then trains instead of being frozen); ``auto`` is ``coco``
when those weights can be loaded (cached or downloaded) and ``none``, with a warning,
when they cannot (e.g. on a machine without access to download.pytorch.org).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights, ResNet50_Weights
from torchvision.models.detection import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops

from fashionseg.model.roi_heads import IgnoreAwareRoIHeads
from fashionseg.model.tta import check_scales

WEIGHTS = ("auto", "coco", "imagenet", "none")
log = logging.getLogger(__name__)
ARCHS = (
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet18_fpn",
    "maskrcnn_mobilenet_v3_large_fpn",
)

_RESNET = {
    "maskrcnn_resnet50_fpn": (maskrcnn_resnet50_fpn, MaskRCNN_ResNet50_FPN_Weights.COCO_V1),
    "maskrcnn_resnet50_fpn_v2": (
        maskrcnn_resnet50_fpn_v2,
        MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    ),
}


def _hub_dir() -> str:
    import torch.hub

    return torch.hub.get_dir()


def resolve_auto(arch: str, coco: Any) -> str:
    """``weights=auto``: ``coco`` when ``coco`` (a torchvision weights entry) loads from
    the torch hub cache or the network, else ``none`` with a warning saying where to put it.
    """
    try:
        coco.get_state_dict(progress=False, check_hash=True)
        return "coco"
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        log.warning(
            "COCO weights for %s could not be loaded (%s): training from random init. "
            "Put %s into %s/checkpoints or set model.net.weights=none to silence this.",
            arch,
            str(err).splitlines()[0][:200],
            coco.url.rsplit("/", 1)[-1],
            _hub_dir(),
        )
        return "none"


def replace_heads(model: MaskRCNN, num_classes: int) -> MaskRCNN:
    """Give ``model`` new box and mask predictors for ``num_classes`` (background included)."""
    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, num_classes)
    mask_in = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_in, 256, num_classes)
    return model


def slim_roi_heads(
    model: MaskRCNN,
    num_classes: int,
    mask_head_channels: Sequence[int] | None = None,
    box_head_size: int | None = None,
) -> MaskRCNN:
    """Narrower RoI heads for ``model`` (new, randomly initialised layers).

    ``mask_head_channels``: the widths of the mask head's 3x3 convs (torchvision: four of
    256), its predictor's upsampling as wide as the last; ``box_head_size``: the width of
    the box head's two fully connected layers (torchvision: 1024). ``None`` keeps a head.
    On a CPU the mask head is about half of a training step's FLOPs at demo sizes.
    """
    heads = model.roi_heads
    if mask_head_channels is not None:
        widths = [int(c) for c in mask_head_channels]
        if not widths or min(widths) < 1:
            raise ValueError(f"mask_head_channels must be widths >= 1, got {mask_head_channels}")
        heads.mask_head = MaskRCNNHeads(model.backbone.out_channels, widths, 1)
        heads.mask_predictor = MaskRCNNPredictor(widths[-1], widths[-1], num_classes)
    if box_head_size is not None:
        if box_head_size < 1:
            raise ValueError(f"box_head_size must be >= 1, got {box_head_size}")
        cells = heads.box_roi_pool.output_size  # RoIAlign's (h, w); 7 x 7 in torchvision
        h, w = (cells, cells) if isinstance(cells, int) else cells
        heads.box_head = TwoMLPHead(model.backbone.out_channels * h * w, box_head_size)
        heads.box_predictor = FastRCNNPredictor(box_head_size, num_classes)
    return model


def _backbone_settings(
    arch: str, imagenet: Any, weights: str, trainable_layers: int | None, all_layers: int
) -> tuple[Any, int, type[nn.Module]]:
    """Backbone weights, trainable layer count and norm layer of a light architecture.

    Pretrained backbones freeze BatchNorm and train their top 3 layers by default; from
    random init every layer trains with ordinary BatchNorm.
    """
    if weights == "coco":
        raise ValueError(
            f"model.net.arch={arch} has no COCO Mask R-CNN weights in torchvision: "
            "use model.net.weights=imagenet or none"
        )
    backbone_weights = imagenet if weights == "imagenet" else None
    trained = backbone_weights is not None
    if trainable_layers is None:
        trainable_layers = 3 if trained else all_layers
    norm = misc_nn_ops.FrozenBatchNorm2d if trained else nn.BatchNorm2d
    return backbone_weights, trainable_layers, norm


def _light_backbone(
    arch: str,
    weights: str,
    trainable_backbone_layers: int | None,
    returned_layers: Sequence[int] | None,
) -> nn.Module:
    """The FPN backbone of a light architecture (ImageNet weights or random init)."""
    mobilenet = arch == "maskrcnn_mobilenet_v3_large_fpn"
    backbone_weights, trainable, norm = _backbone_settings(
        arch,
        MobileNet_V3_Large_Weights.IMAGENET1K_V1 if mobilenet else ResNet18_Weights.IMAGENET1K_V1,
        weights,
        trainable_backbone_layers,
        all_layers=6 if mobilenet else 5,
    )
    layers = None
    if returned_layers is not None:
        layers = [int(k) for k in returned_layers]
        first, last = (0, 5) if mobilenet else (1, 4)
        if (
            not layers
            or layers != sorted(set(layers))
            or not first <= layers[0] <= layers[-1] <= last
        ):
            raise ValueError(
                f"model.net.returned_layers={list(returned_layers)} does not fit {arch}: give "
                f"distinct stages in increasing order from {first}-{last}"
            )
    common = {"weights": backbone_weights, "trainable_layers": trainable, "norm_layer": norm}
    if mobilenet:
        return mobilenet_backbone(
            backbone_name="mobilenet_v3_large", fpn=True, returned_layers=layers, **common
        )
    return resnet_fpn_backbone(backbone_name="resnet18", returned_layers=layers, **common)


def level_layout(backbone: nn.Module) -> dict[str, Any]:
    """Anchors and RoI pools for an FPN backbone's own levels (read off a probe run).

    Every level of stride ``s`` gets anchors of sides ``4s`` and ``8s`` (three aspect
    ratios), the max-pooled extra level twice its input's; the box and mask RoIAlign pool
    from every level but that extra one, as in torchvision's ResNet FPN layout.
    """
    from fashionseg.model.panoptic import fpn_strides

    _, strides = fpn_strides(backbone)
    levels = list(strides)
    sides = [(4 * s, 8 * s) for s in strides.values()]
    sides.append((8 * max(strides.values()), 16 * max(strides.values())))  # the pool level
    return {
        "rpn_anchor_generator": AnchorGenerator(tuple(sides), ((0.5, 1.0, 2.0),) * len(sides)),
        "box_roi_pool": MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        "mask_roi_pool": MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
    }


def _light_maskrcnn(
    arch: str,
    num_classes: int,
    weights: str,
    trainable_backbone_layers: int | None,
    returned_layers: Sequence[int] | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN on a ResNet-18 FPN (the R50 layout, stride 4-32 levels, at ~1/2 the
    cost) or a MobileNetV3-Large FPN (anchors and RoI pools matched to its two levels).

    ``returned_layers`` picks the backbone stages the FPN reads (torchvision's argument;
    default ResNet ``[1, 2, 3, 4]``, strides 4-32; MobileNetV3 ``[4, 5]``, both at stride
    32). Given, anchors and RoI pools follow the levels (:func:`level_layout`); e.g.
    MobileNetV3 ``[2, 3, 4, 5]`` adds stride-8 and stride-16 levels, which Panoptic FPN's
    semantic head needs for a map finer than 1/32.
    """
    backbone = _light_backbone(arch, weights, trainable_backbone_layers, returned_layers)
    if returned_layers is not None:
        kwargs = {**level_layout(backbone), **kwargs}
    elif arch == "maskrcnn_mobilenet_v3_large_fpn":
        # The backbone returns two FPN levels ("0", "1") plus a max-pooled one ("pool").
        anchor_sizes = ((32, 64, 128, 256, 512),) * 3
        aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
        kwargs = {
            "rpn_anchor_generator": AnchorGenerator(anchor_sizes, aspect_ratios),
            "box_roi_pool": MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2),
            "mask_roi_pool": MultiScaleRoIAlign(["0", "1"], output_size=14, sampling_ratio=2),
            **kwargs,
        }
    return MaskRCNN(backbone, num_classes=num_classes, **kwargs)


def build_maskrcnn(
    arch: str = "maskrcnn_resnet50_fpn",
    num_classes: int = 2,
    semantic_head: bool = False,
    semantic_loss_weight: float = 1.0,
    semantic_channels: int = 128,
    tta_hflip: bool = False,
    tta_scales: Sequence[float] | None = None,
    **detector: Any,
) -> MaskRCNN:
    """Build a Mask R-CNN (``detector`` settings: see :func:`build_detector`), with Panoptic
    FPN's semantic head when ``semantic_head``:
    :class:`fashionseg.model.panoptic.PanopticMaskRCNN`, whose head is always newly
    initialised (whatever ``weights``), ``semantic_channels`` wide and trained with
    cross-entropy times ``semantic_loss_weight`` beside the Mask R-CNN losses; with
    ``tta_hflip`` evaluation averages its logits with the mirror image's, with
    ``tta_scales`` its probabilities over those scales of the photo. The RoI heads
    are :class:`fashionseg.model.roi_heads.IgnoreAwareRoIHeads` (targets carrying
    ``semantic`` leave its ignored pixels out of the mask loss).
    """
    if semantic_loss_weight < 0:
        raise ValueError(f"semantic_loss_weight must be >= 0, got {semantic_loss_weight}")
    if semantic_channels < 1:
        raise ValueError(f"semantic_channels must be >= 1, got {semantic_channels}")
    if tta_hflip and not semantic_head:
        raise ValueError(
            "model.net.tta_hflip averages the semantic head's logits: it needs "
            "model.net.semantic_head=true"
        )
    scales = check_scales(tta_scales or (1.0,))
    if scales != (1.0,) and not semantic_head:
        raise ValueError(
            "model.net.tta_scales averages the semantic head's probabilities: it needs "
            "model.net.semantic_head=true"
        )
    detector = build_detector(arch, num_classes, **detector)
    # the same heads and weights; only the training mask loss leaves ignored pixels out
    # (the subclass adds no state, so checkpoints are unchanged)
    detector.roi_heads.__class__ = IgnoreAwareRoIHeads
    if not semantic_head:
        return detector
    from fashionseg.model.panoptic import PanopticMaskRCNN

    return PanopticMaskRCNN(
        detector, num_classes, semantic_loss_weight, semantic_channels, tta_hflip, scales
    )


def build_detector(
    arch: str = "maskrcnn_resnet50_fpn",
    num_classes: int = 2,
    weights: str = "coco",
    trainable_backbone_layers: int | None = None,
    min_size: int = 400,
    max_size: int = 600,
    mask_roi_size: int = 14,
    mask_head_channels: Sequence[int] | None = None,
    box_head_size: int | None = None,
    returned_layers: Sequence[int] | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Build a Mask R-CNN for ``num_classes`` classes (background included).

    ``min_size``/``max_size`` set the model's resize transform: each image is scaled by
    ``min(min_size / short_side, max_size / long_side)``, so the defaults keep a 600x400
    photo at its native size (torchvision's 800/1333 would upsample it to 1200x800).
    ``mask_roi_size`` is the RoIAlign size of the mask branch; its predicted masks are twice
    that (torchvision's 14 gives 28 x 28; 28 gives 56 x 56, finer for thin structures at
    about 4x the mask head's cost per RoI). ``mask_head_channels`` and ``box_head_size``
    make the RoI heads narrower (:func:`slim_roi_heads`; new layers, also over COCO
    weights). ``returned_layers`` (light architectures only) picks the backbone stages
    the FPN reads (:func:`_light_maskrcnn`).
    Extra ``kwargs`` go to :class:`torchvision.models.detection.MaskRCNN` (e.g.
    ``rpn_post_nms_top_n_train``, ``box_batch_size_per_image``, ``box_detections_per_img``).
    """
    if weights not in WEIGHTS:
        raise ValueError(
            f"unknown model.net.weights {weights!r}: choose one of {', '.join(WEIGHTS)}"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
    kwargs = {"min_size": min_size, "max_size": max_size, **kwargs}
    if returned_layers is not None and arch not in _LIGHT:
        raise ValueError(f"model.net.returned_layers applies to {' and '.join(_LIGHT)}, not {arch}")
    if weights == "auto" and arch in _LIGHT:
        weights = "none"  # no COCO detector exists for the light backbones
    if arch in _LIGHT:
        model = _light_maskrcnn(
            arch, num_classes, weights, trainable_backbone_layers, returned_layers, **kwargs
        )
    else:
        model = _resnet_maskrcnn(arch, num_classes, weights, trainable_backbone_layers, **kwargs)
    if mask_roi_size != 14:
        heads = model.roi_heads
        heads.mask_roi_pool = MultiScaleRoIAlign(
            heads.mask_roi_pool.featmap_names, output_size=mask_roi_size, sampling_ratio=2
        )
    return slim_roi_heads(model, num_classes, mask_head_channels, box_head_size)


def _resnet_maskrcnn(
    arch: str,
    num_classes: int,
    weights: str,
    trainable_backbone_layers: int | None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN R50-FPN (v1 or v2) with COCO, ImageNet-backbone or no weights."""
    if arch not in _RESNET:
        raise ValueError(f"unknown model.net.arch {arch!r}: choose one of {', '.join(ARCHS)}")
    factory, coco = _RESNET[arch]
    if weights == "auto":
        weights = resolve_auto(arch, coco)
    if weights == "coco":
        model = factory(weights=coco, trainable_backbone_layers=trainable_backbone_layers, **kwargs)
        return replace_heads(model, num_classes)
    return factory(
        weights=None,
        weights_backbone=ResNet50_Weights.IMAGENET1K_V1 if weights == "imagenet" else None,
        num_classes=num_classes,
        trainable_backbone_layers=trainable_backbone_layers,
        **kwargs,
    )


_LIGHT = ("maskrcnn_resnet18_fpn", "maskrcnn_mobilenet_v3_large_fpn")
