"""Mask R-CNN's mask loss leaves ignored pixels out (issue 27, item 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import maskrcnn_loss, project_masks_on_boxes

from fashionseg.data.targets import IGNORE_INDEX, mask_to_target
from fashionseg.model.builder import build_maskrcnn
from fashionseg.model.roi_heads import IgnoreAwareRoIHeads, weighted_mask_loss

M = 8  # mask head resolution; the box below is 8 x 8 pixels: one pixel per bin


def _problem() -> tuple[torch.Tensor, list, list, list, list]:
    torch.manual_seed(0)
    logits = torch.randn(1, 2, M, M)  # one RoI, classes background and person
    masks = torch.zeros(1, M, M, dtype=torch.uint8)
    masks[0, 2:6, 1:3] = 1  # the person, inside the left half
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])]
    return logits, boxes, [masks], [torch.tensor([1])], [torch.tensor([0])]


def test_without_ignored_pixels_it_is_torchvisions_loss() -> None:
    logits, boxes, masks, labels, idx = _problem()
    valid = [torch.ones(M, M, dtype=torch.uint8)]
    ours = weighted_mask_loss(logits, boxes, masks, valid, labels, idx)
    assert float(ours) == pytest.approx(float(maskrcnn_loss(logits, boxes, masks, labels, idx)))


def test_a_half_ignored_roi_scores_only_its_other_half() -> None:
    logits, boxes, masks, labels, idx = _problem()
    valid = torch.ones(M, M, dtype=torch.uint8)
    valid[:, 4:] = 0  # the right half is data.ignore_index
    ours = weighted_mask_loss(logits, boxes, masks, [valid], labels, idx)
    # the loss of the target cropped to the left half: torchvision's projection samples
    # bin i between pixels i and i + 1 (roi_align, aligned=False), so bins 0-2 are wholly
    # valid, bin 3 half (pixels 3 and 4) and bins 4-7 not at all
    target = project_masks_on_boxes(masks[0], boxes[0], idx[0], M)[0]
    bce = F.binary_cross_entropy_with_logits(logits[0, 1], target, reduction="none")
    cropped = (bce[:, :3].sum() + 0.5 * bce[:, 3].sum()) / (M * 3 + M * 0.5)
    assert float(ours) == pytest.approx(float(cropped))
    # what the ignored half's logits say does not matter ...
    changed = logits.clone()
    changed[..., 4:] = 10.0
    assert float(weighted_mask_loss(changed, boxes, masks, [valid], labels, idx)) == pytest.approx(
        float(ours)
    )
    # ... where torchvision's loss trains it as "not this object"
    assert float(maskrcnn_loss(changed, boxes, masks, labels, idx)) > float(ours) + 1.0
    # an RoI that is ignored entirely costs nothing
    nothing = [torch.zeros(M, M, dtype=torch.uint8)]
    assert float(weighted_mask_loss(logits, boxes, masks, nothing, labels, idx)) == 0.0


@pytest.mark.parametrize("semantic_head", [False, True])
def test_the_network_trains_with_the_ignore_aware_heads(semantic_head: bool) -> None:
    net = build_maskrcnn(
        "maskrcnn_mobilenet_v3_large_fpn",
        num_classes=2,
        weights="none",
        min_size=32,
        max_size=32,
        semantic_head=semantic_head,
    )
    assert type(net.roi_heads) is IgnoreAwareRoIHeads
    semantic = torch.zeros(32, 32, dtype=torch.int64)
    semantic[4:28, 6:20] = 1
    target = mask_to_target(semantic.numpy(), 2)
    target = {k: target[k] for k in ("boxes", "labels", "masks")}
    image = torch.rand(3, 32, 32)
    net.train()
    net.backbone.eval()  # BatchNorm on one photo: its statistics are not the point here

    def loss_mask(extra: dict) -> float:
        torch.manual_seed(1)  # the same proposals sampled each time
        return float(net([image], [{**target, **extra}])["loss_mask"])

    plain = loss_mask({"semantic": semantic} if semantic_head else {})
    assert loss_mask({"semantic": semantic}) == pytest.approx(plain)  # nothing ignored
    ignored = semantic.clone()
    ignored[:, 13:] = IGNORE_INDEX  # the right part of the person's box is ignored
    assert loss_mask({"semantic": ignored}) != pytest.approx(plain)
