"""Mask R-CNN's RoI heads with a mask loss that leaves ignored pixels out.

torchvision's mask loss has no ignore label: pixels of ``data.ignore_index`` inside a
box belong to no instance mask, so they would be learnt as "not this object". Here each
RoI's binary cross-entropy is weighted per pixel by the share of it that is not ignored
(the valid map projected onto the RoI exactly as the instance masks are), and averaged
over the weights. Without ignored pixels the loss is torchvision's ``maskrcnn_loss``.

:class:`IgnoreAwareRoIHeads` overrides only the training forward's mask branch; the box
branch, sampling and inference are torchvision's own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes

from fashionseg.data.targets import IGNORE_INDEX


def weighted_mask_loss(
    mask_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    gt_valid: list[Tensor],
    gt_labels: list[Tensor],
    matched_idxs: list[Tensor],
) -> Tensor:
    """torchvision's ``maskrcnn_loss`` with per-pixel weights from ``gt_valid`` (one bool
    ``[H, W]`` map per image: the pixels that are not ignored)."""
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched_idxs, strict=True)])
    targets = [
        project_masks_on_boxes(m, p, i, size)
        for m, p, i in zip(gt_masks, proposals, matched_idxs, strict=True)
    ]
    weights = [
        project_masks_on_boxes(v[None], p, torch.zeros_like(i), size)
        for v, p, i in zip(gt_valid, proposals, matched_idxs, strict=True)
    ]
    if labels.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    weight = torch.cat(weights)
    loss = F.binary_cross_entropy_with_logits(
        logits, torch.cat(targets), weight=weight, reduction="sum"
    )
    total = weight.sum()
    return torch.where(total > 0, loss / total.clamp_min(1e-12), loss * 0)


def valid_pixels(target: dict[str, Tensor]) -> Tensor:
    """A target's not-ignored pixels at its (resized) masks' size: ``semantic`` resized the
    way torchvision resizes the masks (nearest); all pixels without ``semantic``."""
    size = target["masks"].shape[-2:]
    semantic = target.get("semantic")
    if semantic is None:
        return torch.ones(size, dtype=torch.uint8, device=target["masks"].device)
    valid = (semantic != IGNORE_INDEX).to(torch.float32)[None, None]
    return F.interpolate(valid, size=tuple(size))[0, 0].to(torch.uint8)


class IgnoreAwareRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` whose training mask loss is :func:`weighted_mask_loss`."""

    def select_training_samples(self, proposals: Any, targets: Any) -> Any:
        sampled = super().select_training_samples(proposals, targets)
        self._sampled = sampled  # the mask branch below needs the same samples
        return sampled

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not (self.training and self.has_mask()):
            return super().forward(features, proposals, image_shapes, targets)
        pool = self.mask_roi_pool
        self.mask_roi_pool = None  # torchvision's forward: the box branch alone
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            self.mask_roi_pool = pool
        proposals, matched_idxs, labels, _ = self._sampled
        del self._sampled
        # as torchvision's mask branch: the positive proposals only
        positive = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [p[pos] for p, pos in zip(proposals, positive, strict=True)]
        pos_matched = [m[pos] for m, pos in zip(matched_idxs, positive, strict=True)]
        mask_features = self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
        mask_logits = self.mask_predictor(mask_features)
        assert targets is not None
        losses["loss_mask"] = weighted_mask_loss(
            mask_logits,
            mask_proposals,
            [t["masks"] for t in targets],
            [valid_pixels(t) for t in targets],
            [t["labels"] for t in targets],
            pos_matched,
        )
        return result, losses
