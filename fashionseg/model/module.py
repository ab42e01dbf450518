"""The Mask R-CNN LightningModule: fusion, the threshold sweep and the threshold buffers.

Batches, metrics, logging, optimizers and the NaN guard come from
:class:`fashionseg.model.base.SegmentationBase`; this module adds what instances need:
their fusion into label maps, the score-threshold sweep on validation, the choice of the
global (and per-class: :mod:`fashionseg.thresholds`) thresholds and the buffers that keep
it. Everything the module needs to rebuild itself is kept in plain Python types in its
hyper-parameters, and the chosen score threshold(s) live in buffers, so a checkpoint
loads with ``torch.load(..., weights_only=True)`` and carries its threshold along.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from fashionseg.data.targets import check_instances
from fashionseg.fusion import THRESHOLDLESS_METHODS, check_fusion_setting, fuse, fuse_sweep
from fashionseg.instance_ap import (
    AP_KEYS,
    ap_summary,
    gather_ap_states,
    gt_instances,
    instance_ap_metric,
    predicted_instances,
)
from fashionseg.metrics import ThresholdSweep
from fashionseg.model.base import Batch, NonFiniteLossError, SegmentationBase, _plain
from fashionseg.model.builder import build_maskrcnn
from fashionseg.postprocess import label_maps, raw_outputs
from fashionseg.thresholds import InstanceCache, ThresholdChoice, choose

__all__ = ["NonFiniteLossError", "SegmentationModule", "MaskRCNNModule"]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
TARGET_KEYS = ("boxes", "labels", "masks")
log = logging.getLogger(__name__)


def _rounded(values: Tensor) -> list[float]:
    """Float32 thresholds as the decimals they were chosen from (0.05, not 0.0500000007)."""
    return [round(v, 6) for v in values.tolist()]


class MaskRCNNModule(SegmentationBase):
    """Fine-tunes a torchvision Mask R-CNN and scores its fused label maps by IoU.

    Takes :class:`fashionseg.model.base.SegmentationBase`'s ``task``, ``net`` (keyword
    arguments of :func:`fashionseg.model.builder.build_maskrcnn`; ``num_classes`` comes
    from the task), ``optimizer`` and ``scheduler`` by keyword, and these settings:

    Args:
        fusion: ``method`` (seed | score_order | argmax | panoptic | semantic: see
            :mod:`fashionseg.fusion`; the last two need ``net.semantic_head``),
            ``mask_threshold`` and ``per_class_thresholds`` (search per-class thresholds
            on validation and use them where they beat the global one there:
            :mod:`fashionseg.thresholds`).
        thresholds: score thresholds swept at every validation epoch.
        threshold: a fixed score threshold overriding the one chosen on validation.
        ap: score mask and box AP (COCO, :func:`fashionseg.instance_ap.instance_ap_metric`) on
            the test split.
        instances, min_area: how AP's ground-truth instances are derived from the label
            maps (the run's ``data.instances`` and ``data.min_area``:
            :func:`fashionseg.data.targets.mask_to_target`).
    """

    family = "maskrcnn"

    def __init__(
        self,
        *,
        fusion: Mapping[str, Any] | None = None,
        thresholds: Sequence[float] | None = None,
        threshold: float | None = None,
        ap: bool = True,
        instances: str = "class",
        min_area: int = 0,
        **common: Any,
    ) -> None:
        fusion, thresholds = _plain(fusion), _plain(thresholds)
        fusion = {
            "method": "seed",
            "mask_threshold": 0.5,
            "per_class_thresholds": False,
            **(fusion or {}),
        }
        fusion.pop("thresholds", None)  # the swept list is its own argument
        net = _plain(common.get("net")) or {}
        check_fusion_setting(fusion["method"], bool(net.get("semantic_head")))
        check_instances(instances)
        thresholds = sorted(float(t) for t in (thresholds or DEFAULT_THRESHOLDS))
        super().__init__(
            **common,
            fusion=fusion,
            thresholds=thresholds,
            threshold=threshold,
            ap=bool(ap),
            instances=instances,
            min_area=int(min_area),
        )
        num_classes = self.task.num_classes
        self.register_buffer("best_threshold", torch.tensor(0.5))
        self.register_buffer("class_thresholds", torch.full((num_classes,), 0.5))
        # what validation chose and scored (kept in checkpoints, like val_miou)
        self.register_buffer("use_class_thresholds", torch.tensor(True))
        self.register_buffer("val_miou_global", torch.tensor(float("nan")))
        self.register_buffer("val_miou_per_class", torch.tensor(float("nan")))
        self.register_buffer("sweep_thresholds", torch.tensor(thresholds), persistent=False)
        self._cache = InstanceCache(fusion["method"], fusion["mask_threshold"], min(thresholds))
        self.test_ap: Any = None  # the test stage's MeanAveragePrecision (made per test)

    @property
    def uses_threshold(self) -> bool:
        """Whether label maps depend on a score threshold (swept on validation, stored,
        shown): every fusion but ``semantic``."""
        return self.hparams.fusion["method"] not in THRESHOLDLESS_METHODS

    @property
    def has_semantic_head(self) -> bool:
        """Whether the network has Panoptic FPN's semantic head (``net.semantic_head``)."""
        return bool(self.hparams.net.get("semantic_head", False))

    @property
    def tta_hflip(self) -> bool:
        """Whether the semantic head averages its logits with the mirror image's
        (``net.tta_hflip``); only a network with the semantic head has the setting."""
        if not self.has_semantic_head:
            raise AttributeError("tta_hflip needs Panoptic FPN's semantic head")
        return self.net.tta_hflip

    @tta_hflip.setter
    def tta_hflip(self, value: bool) -> None:
        if not self.has_semantic_head:
            raise AttributeError("tta_hflip needs Panoptic FPN's semantic head")
        self.net.tta_hflip = bool(value)

    @property
    def tta_scales(self) -> tuple[float, ...]:
        """The semantic head's multi-scale TTA scales (``net.tta_scales``; head only)."""
        if not self.has_semantic_head:
            raise AttributeError("tta_scales needs Panoptic FPN's semantic head")
        return self.net.tta_scales

    @tta_scales.setter
    def tta_scales(self, value: Sequence[float]) -> None:
        if not self.has_semantic_head:
            raise AttributeError("tta_scales needs Panoptic FPN's semantic head")
        from fashionseg.model.tta import check_scales

        self.net.tta_scales = check_scales(value)

    def build_net(self, settings: Mapping[str, Any]) -> torch.nn.Module:
        return build_maskrcnn(num_classes=self.task.num_classes, **settings)

    # ----------------------------------------------------------------- inference
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Raw Mask R-CNN detections for a list of images (eval mode)."""
        return self.net(images)

    def fuse_outputs(self, output: Mapping[str, Tensor]) -> Tensor:
        """One image's detections -> H x W label map at the module's threshold(s)."""
        return fuse(
            output["labels"],
            output["scores"],
            output["masks"],
            semantic=output.get("sem_probs"),
            **self.fusion_settings(),
        )

    @property
    def per_class_search(self) -> bool:
        """Whether validation searches per-class thresholds (asked for, not overridden)."""
        return (
            bool(self.hparams.fusion["per_class_thresholds"])
            and self.hparams.threshold is None
            and self.uses_threshold
        )

    @property
    def active_class_thresholds(self) -> Tensor | None:
        """The per-class thresholds in use: asked for and chosen on validation, else None."""
        if self.per_class_search and bool(self.use_class_thresholds):
            return self.class_thresholds
        return None

    def fusion_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`fashionseg.fusion.fuse` in use."""
        fusion = self.hparams.fusion
        return {
            "method": fusion["method"],
            "threshold": self.score_threshold,
            "mask_threshold": fusion["mask_threshold"],
            "class_thresholds": self.active_class_thresholds,
        }

    @torch.no_grad()
    def predict_maps(self, images: list[Tensor]) -> list[Tensor]:
        """Label maps from the network's raw outputs, post-processed and fused batched on
        the device (:mod:`fashionseg.postprocess`)."""
        return label_maps(raw_outputs(self.net, images), self.fusion_settings())

    @property
    def score_threshold(self) -> float | None:
        """The global score threshold in use: the override, else the validated one; None
        for the ``semantic`` fusion (pixels labelled by the head's argmax)."""
        if not self.uses_threshold:
            return None
        if self.hparams.threshold is not None:
            return float(self.hparams.threshold)
        return round(float(self.best_threshold), 6)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        # semantic: the ignored pixels (left out of the mask loss) and the semantic head's target
        keys = (*TARGET_KEYS, "semantic")
        losses = self.net(images, [{k: t[k] for k in keys if k in t} for t in targets])
        total = self._checked_total(losses, batch_idx)
        batch_size = len(images)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=batch_size)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        return total

    # ---------------------------------------------------------------- validation
    def validation_columns(self) -> Sequence[float]:
        """The swept score thresholds (one column for the thresholdless ``semantic``)."""
        return self.hparams.thresholds if self.uses_threshold else [0.5]

    def validation_maps(self, images: list[Tensor], targets: list[dict]) -> list[Tensor]:
        """Label maps at every swept threshold; instances kept for the per-class search."""
        if not self.uses_threshold:
            return super().validation_maps(images, targets)
        fusion = self.hparams.fusion
        maps = []
        for output, target in zip(self.net(images), targets, strict=True):
            maps.append(
                fuse_sweep(
                    output["labels"],
                    output["scores"],
                    output["masks"],
                    self.sweep_thresholds,
                    method=fusion["method"],
                    mask_threshold=fusion["mask_threshold"],
                    semantic=output.get("sem_probs"),
                )
            )
            if self.per_class_search:
                self._cache.add(
                    output["labels"],
                    output["scores"],
                    output["masks"],
                    target["semantic"],
                    output.get("sem_probs"),
                )
        return maps

    def validated_setting(self, result: dict[str, Any]) -> dict[str, Any]:
        """Choose the threshold(s) on this validation, log the sweep, keep the choice."""
        if not self.uses_threshold:
            return super().validated_setting(result)
        choice = self.choose_thresholds(result["confmat"])
        self._cache.clear()
        thresholds = self.hparams.thresholds
        for t, value in zip(thresholds, result["miou"].reshape(-1).tolist(), strict=True):
            self.log(f"val_sweep/miou@{t:.2f}", value)
        self.log("val/best_threshold", choice.threshold)
        self.log("val/miou_global", choice.val_miou_global)
        if self.per_class_search:
            self.log("val/miou_per_class", float(choice.val_miou_per_class))
            self.log("val/per_class_used", float(choice.use_class_thresholds))
        if not self.trainer.sanity_checking:
            self.store_choice(choice)
        return {
            "index": thresholds.index(choice.threshold),
            "val_miou": choice.val_miou,
            "choice": choice,
            "thresholds": list(thresholds),
        }

    def _validation_handover(self, result: dict[str, Any]) -> dict[str, Any]:
        out = super()._validation_handover(result)
        if "choice" in result:
            out["result"]["choice"] = result["choice"].as_dict()
        return out

    def take_over(self, trainer: L.Trainer) -> None:
        super().take_over(trainer)
        choice = (self.last_val_result or {}).get("choice")
        if isinstance(choice, dict):
            self.last_val_result["choice"] = ThresholdChoice.from_dict(choice)

    def choose_thresholds(self, confmat: Tensor) -> ThresholdChoice:
        """Choose the global (and, when asked, per-class) thresholds on this validation."""
        thresholds = self.hparams.thresholds
        if not self.per_class_search:
            return choose(confmat, thresholds, self.task.num_classes)
        grid = self.sweep_thresholds

        def confmats(cls: int, class_thresholds: Tensor) -> Tensor:
            metric = ThresholdSweep(
                self.task.num_classes, thresholds, ignore_index=self.val_sweep.ignore_index
            ).to(self.device)
            for image in self._cache.images:
                maps = self._cache.class_sweep(image, class_thresholds, cls, grid.cpu())
                metric.update(maps.to(self.device), image.target.to(self.device).long())
            return metric.compute()["confmat"].cpu()

        return choose(confmat, thresholds, self.task.num_classes, True, confmats)

    def store_choice(self, choice: ThresholdChoice) -> None:
        """Keep validation's choice and figures in the buffers (so in checkpoints; ``val_miou``
        is the base's)."""
        self.best_threshold.fill_(choice.threshold)
        self.class_thresholds.copy_(torch.tensor(choice.class_thresholds))
        self.use_class_thresholds.fill_(choice.use_class_thresholds)
        self.val_miou_global.fill_(choice.val_miou_global)
        per_class = choice.val_miou_per_class
        self.val_miou_per_class.fill_(float("nan") if per_class is None else per_class)

    def threshold_choice(self) -> dict[str, Any]:
        """The stored choice as JSON-ready values."""

        def number(buffer: Tensor) -> float | None:
            value = float(buffer)
            return None if value != value else value

        return {
            "threshold": round(float(self.best_threshold), 6),
            "class_thresholds": _rounded(self.class_thresholds) if self.per_class_search else None,
            "per_class_used": self.active_class_thresholds is not None,
            "val_miou_global": number(self.val_miou_global),
            "val_miou_per_class": number(self.val_miou_per_class),
            "override": self.hparams.threshold,
        }

    # ---------------------------------------------------------------------- test
    def test_settings(self) -> dict[str, Any]:
        if not self.uses_threshold:
            return {}
        class_thresholds = self.active_class_thresholds
        return {
            "threshold": self.score_threshold,
            "class_thresholds": None if class_thresholds is None else _rounded(class_thresholds),
            "threshold_choice": self.threshold_choice(),
        }

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_ap = None
        if not self.hparams.ap:
            return
        limit = int(self.hparams.net.get("box_detections_per_img", 100))
        # a plain attribute, not a submodule: it stays on the CPU (where the detections are
        # scored and gathered) and out of the module's state
        object.__setattr__(self, "test_ap", instance_ap_metric(max(100, limit)))
        if self.test_ap is None:
            log.warning(
                "no COCO evaluation backend (faster-coco-eval or pycocotools) is installed: "
                "mask and box AP are not computed (pip install faster-coco-eval)"
            )

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Score the fused label maps by IoU and, with ``ap``, the instances by AP."""
        images, targets = batch
        with torch.no_grad():
            outputs = self.net(images)
        for output, target in zip(outputs, targets, strict=True):
            self.test_scores.update(self.fuse_outputs(output)[None], target["semantic"])
        if self.test_ap is None:
            return
        hp = self.hparams
        mask_threshold = hp.fusion["mask_threshold"]
        preds = [predicted_instances(o, mask_threshold) for o in outputs]
        truth = [
            gt_instances(t["semantic"], self.task.num_classes, hp.instances, hp.min_area)
            for t in targets
        ]
        self.test_ap.update(preds, truth)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.test_ap is None:
            return
        coco_log = logging.getLogger("faster_coco_eval")
        level = coco_log.level
        coco_log.setLevel(logging.WARNING)  # its summary table at INFO: ours is logged below
        try:
            gather_ap_states(self.test_ap)
            summary = ap_summary(self.test_ap.compute())
        finally:
            coco_log.setLevel(level)
        self.test_ap = None
        if self.test_results is not None:
            self.test_results["ap"] = summary
        for name in AP_KEYS.values():
            value = summary[name]
            self.log(f"test/{name}", float("nan") if value is None else value)


# the name configs (``_target_``), checkpoints' code and the tests have always used
SegmentationModule = MaskRCNNModule
