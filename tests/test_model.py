"""Model builder: architectures, resize transform, head replacement, the weights cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import (
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
)
from torchvision.ops.misc import FrozenBatchNorm2d

from fashionseg.model import builder
from fashionseg.model.builder import build_maskrcnn


def _heads(model: torch.nn.Module) -> tuple[int, int]:
    box = model.roi_heads.box_predictor.cls_score.out_features
    mask = model.roi_heads.mask_predictor.mask_fcn_logits.out_channels
    return box, mask


@pytest.mark.parametrize("num_classes", [2, 7])
def test_random_init_heads_and_native_size(num_classes: int) -> None:
    model = build_maskrcnn(num_classes=num_classes, weights="none")
    assert _heads(model) == (num_classes, num_classes)
    # random init trains BatchNorm instead of freezing it
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    model.eval()
    images, _ = model.transform([torch.rand(3, 600, 400)])
    assert images.image_sizes == [(600, 400)]  # native size, not upsampled to 1200x800


def test_mobilenet_variant_trains_on_a_tiny_batch() -> None:
    model = build_maskrcnn(
        "maskrcnn_mobilenet_v3_large_fpn", num_classes=3, weights="none", min_size=64, max_size=96
    )
    masks = torch.zeros(1, 96, 64, dtype=torch.uint8)
    masks[0, 20:60, 10:40] = 1
    target = {
        "boxes": torch.tensor([[10.0, 20.0, 39.0, 59.0]]),
        "labels": torch.tensor([2]),
        "masks": masks,
    }
    losses = model([torch.rand(3, 96, 64)], [target])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_arch_and_weights_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="unknown model.net.arch 'resnet9'"):
        build_maskrcnn("resnet9")
    with pytest.raises(ValueError, match="unknown model.net.weights 'imagenet21k'"):
        build_maskrcnn(weights="imagenet21k")
    with pytest.raises(ValueError, match="no COCO"):
        build_maskrcnn("maskrcnn_mobilenet_v3_large_fpn", weights="coco")


@pytest.fixture()
def coco_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """A TORCH_HOME whose hub cache holds a (fake) COCO Mask R-CNN under the real name."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fake = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    marker = torch.full_like(fake.backbone.body.conv1.weight, 0.0123)
    fake.backbone.body.conv1.weight.data.copy_(marker)
    url = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(fake.state_dict(), checkpoints / url.rsplit("/", 1)[-1])
    return marker


@pytest.mark.parametrize("weights", ["coco", "auto"])
def test_coco_weights_load_from_the_hub_cache(coco_cache: torch.Tensor, weights: str) -> None:
    model = build_maskrcnn(num_classes=7, weights=weights)
    assert torch.equal(model.backbone.body.conv1.weight, coco_cache)  # the cached file was loaded
    assert _heads(model) == (7, 7)  # 91-class COCO heads replaced for the task
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert model.transform.min_size == (400,) and model.transform.max_size == 600


def test_auto_falls_back_to_random_init_when_weights_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(builder.MaskRCNN_ResNet50_FPN_Weights, "get_state_dict", offline)
    model = build_maskrcnn(num_classes=2, weights="auto")
    assert _heads(model) == (2, 2)
    assert "random init" in caplog.text and "maskrcnn_resnet50_fpn_coco" in caplog.text


@pytest.mark.parametrize(
    "arch", ["maskrcnn_resnet18_fpn", "maskrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn_v2"]
)
def test_narrow_roi_heads_for_every_arch(arch: str) -> None:
    """``mask_head_channels``/``box_head_size`` give narrower heads of the asked widths
    that still train and predict (v2's conv box head and MobileNet's two levels too)."""
    model = build_maskrcnn(
        arch,
        num_classes=4,
        weights="none",
        min_size=64,
        max_size=96,
        mask_head_channels=[32, 16],
        box_head_size=48,
    )
    heads = model.roi_heads
    convs = [m for m in heads.mask_head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 16]
    assert heads.box_head.fc7.out_features == 48
    assert heads.box_predictor.cls_score.in_features == 48
    assert _heads(model) == (4, 4)
    masks = torch.zeros(1, 96, 64, dtype=torch.uint8)
    masks[0, 20:60, 10:40] = 1
    target = {"boxes": torch.tensor([[10.0, 20.0, 39.0, 59.0]]), "labels": torch.tensor([2])}
    losses = model([torch.rand(3, 96, 64)], [{**target, "masks": masks}])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    out = model([torch.rand(3, 96, 64)])[0]
    assert out["masks"].shape[1:] == (1, 96, 64)


def test_default_roi_heads_are_untouched_by_the_narrow_settings() -> None:
    """``None`` keeps torchvision's heads and draws nothing from the RNG, so runs without
    the settings build bit-identical weights."""
    torch.manual_seed(0)
    plain = build_maskrcnn("maskrcnn_resnet18_fpn", num_classes=3, weights="none")
    torch.manual_seed(0)
    same = build_maskrcnn(
        "maskrcnn_resnet18_fpn",
        num_classes=3,
        weights="none",
        mask_head_channels=None,
        box_head_size=None,
    )
    a, b = plain.state_dict(), same.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert plain.roi_heads.box_head.fc7.out_features == 1024


def test_bad_roi_head_widths_are_errors() -> None:
    with pytest.raises(ValueError, match="mask_head_channels"):
        build_maskrcnn("maskrcnn_resnet18_fpn", weights="none", mask_head_channels=[])
    with pytest.raises(ValueError, match="box_head_size"):
        build_maskrcnn("maskrcnn_resnet18_fpn", weights="none", box_head_size=0)
