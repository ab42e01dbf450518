"""Augmentation keeps image, masks, label map and boxes consistent."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from fashionseg.data.targets import mask_to_target
from fashionseg.data.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    build_train_transforms,
)

# pixel-edge boxes: masks_to_boxes maxima + 1
EDGE = torch.tensor([0.0, 0.0, 1.0, 1.0])


def sample(instances: str = "class", seed: int = 0) -> tuple[torch.Tensor, dict]:
    """A 12x16 (H x W) blocky clothing label map with its target and a random image."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((12, 16), dtype=np.uint8)
    labels[1:5, 2:6] = 2
    labels[4:9, 3:12] = 3
    labels[9:11, 1:3] = 4
    labels[9:11, 10:13] = 4
    labels[0, 15] = 1
    target = mask_to_target(labels, 7, instances)
    target["semantic"] = torch.from_numpy(labels).long()
    image = torch.from_numpy(rng.random((3, 12, 16), dtype=np.float32))
    return image, target


def assert_consistent(image: torch.Tensor, target: dict) -> None:
    """Boxes are the masks' tight boxes; every mask lies inside its class in the label map."""
    masks, semantic = target["masks"], target["semantic"]
    assert image.shape[-2:] == semantic.shape == masks.shape[-2:]
    assert masks.shape[0] == target["boxes"].shape[0] == target["labels"].shape[0]
    if masks.shape[0]:
        assert torch.equal(target["boxes"], masks_to_boxes(masks).float() + EDGE)
        assert bool(masks.flatten(1).any(1).all())
    for mask, label in zip(masks, target["labels"], strict=True):
        assert bool((semantic[mask.bool()] == label).all())


def test_hflip_exact() -> None:
    image, target = sample()
    out_image, out = RandomHorizontalFlip(p=1.0)(image, target)
    width = image.shape[-1]
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out["masks"], target["masks"].flip(-1))
    assert torch.equal(out["semantic"], target["semantic"].flip(-1))
    x1, y1, x2, y2 = target["boxes"].unbind(1)
    expected = torch.stack([width - x2, y1, width - x1, y2], dim=1)
    assert torch.equal(out["boxes"], expected)
    assert_consistent(out_image, out)


def test_hflip_p0_is_identity() -> None:
    image, target = sample()
    out_image, out = RandomHorizontalFlip(p=0.0)(image, target)
    assert out_image is image and out is target


@pytest.mark.parametrize("instances", ["class", "components"])
@pytest.mark.parametrize("seed", range(5))
def test_scale_and_flip_stay_consistent(instances: str, seed: int) -> None:
    random.seed(seed)
    image, target = sample(instances, seed)
    transform = build_train_transforms(hflip=0.5, scale_jitter=[0.5, 1.5], color_jitter=0.3)
    out_image, out = transform(image, target)
    assert out_image.dtype == torch.float32
    assert float(out_image.min()) >= 0.0 and float(out_image.max()) <= 1.0
    assert_consistent(out_image, out)
    # Class mode: each mask is exactly its class in the label map.
    if instances == "class":
        for mask, label in zip(out["masks"], out["labels"], strict=True):
            assert torch.equal(mask.bool(), out["semantic"] == label)


def test_scale_drops_vanished_objects() -> None:
    image, target = sample()
    out_image, out = RandomScale(0.25, 0.25)(image, target)
    assert out_image.shape == (3, 3, 4)
    assert out["labels"].shape[0] < target["labels"].shape[0]
    assert_consistent(out_image, out)


def test_scale_empty_target() -> None:
    image = torch.rand(3, 12, 16)
    target = mask_to_target(np.zeros((12, 16), np.uint8), 7)
    target["semantic"] = torch.zeros(12, 16, dtype=torch.int64)
    out_image, out = RandomScale(2.0, 2.0)(image, target)
    assert out_image.shape == (3, 24, 32)
    assert out["masks"].shape == (0, 24, 32) and out["boxes"].shape == (0, 4)


def test_color_jitter_changes_only_the_image() -> None:
    random.seed(0)
    image, target = sample()
    out_image, out = ColorJitter(0.5)(image, target)
    assert out_image.shape == image.shape and not torch.equal(out_image, image)
    assert out is target
    grey = torch.full_like(image, 0.5)  # hue and saturation cannot change grey...
    random.seed(1)
    jittered, _ = ColorJitter(0.5, hue=0.1)(grey, target)
    spread = jittered.max(dim=0).values - jittered.min(dim=0).values
    assert torch.allclose(spread, torch.zeros_like(spread), atol=1e-6)  # ...it stays grey
    random.seed(1)
    hue_only, _ = ColorJitter(0.0, hue=0.4)(image, target)
    assert not torch.allclose(hue_only, image.clamp(0, 1), atol=1e-3)  # hue does apply


@pytest.mark.parametrize("instances", ["class", "components"])
@pytest.mark.parametrize("seed", range(5))
def test_crop_is_a_window_of_photo_and_targets(instances: str, seed: int) -> None:
    random.seed(seed)
    image, target = sample(instances, seed)
    height, width = image.shape[-2:]
    out_image, out = RandomCrop(0.5, 0.8)(image, target)
    h, w = out_image.shape[-2:]
    assert round(height * 0.5) <= h <= round(height * 0.8)
    assert abs(h / height - w / width) <= 1 / min(height, width) + 1e-9  # aspect kept
    # The window is where the photo's pixels are; the label map is cut at the same place.
    hits = [
        (top, left)
        for top in range(height - h + 1)
        for left in range(width - w + 1)
        if torch.equal(image[:, top : top + h, left : left + w], out_image)
    ]
    assert any(
        torch.equal(target["semantic"][top : top + h, left : left + w], out["semantic"])
        for top, left in hits
    )
    assert_consistent(out_image, out)


def test_crop_drops_instances_cut_away() -> None:
    image = torch.rand(3, 10, 10)
    label_map = np.zeros((10, 10), np.uint8)
    label_map[0:2, 0:2] = 3  # top-left corner only
    label_map[5:10, 5:10] = 5
    target = mask_to_target(label_map, 7)
    target["semantic"] = torch.from_numpy(label_map).long()
    random.seed(0)
    seen = set()
    for _ in range(50):
        out_image, out = RandomCrop(0.5, 0.5)(image, target)
        assert out_image.shape == (3, 5, 5)
        assert set(out["labels"].tolist()) == set(out["semantic"].unique().tolist()) - {0}
        assert_consistent(out_image, out)
        seen.add(tuple(out["labels"].tolist()))
    assert (5,) in seen  # the corner object was cut away in some crops...
    assert any(3 in labels for labels in seen)  # ...and kept in others
    with pytest.raises(ValueError, match="crop"):
        RandomCrop(0.5, 1.5)


def test_build_train_transforms() -> None:
    assert build_train_transforms().transforms == []
    steps = build_train_transforms(0.5, [0.8, 1.2], 0.2).transforms
    assert [type(t) for t in steps] == [RandomScale, RandomHorizontalFlip, ColorJitter]
    steps = build_train_transforms(0.5, None, 0.2, crop=[0.6, 1.0]).transforms
    assert [type(t) for t in steps] == [RandomCrop, RandomHorizontalFlip, ColorJitter]
    assert isinstance(build_train_transforms(0.5), Compose)
    with pytest.raises(ValueError, match="scale jitter"):
        RandomScale(1.5, 0.5)


def test_hue_jitter_alone_jitters_the_hue() -> None:
    (step,) = build_train_transforms(hue_jitter=0.2).transforms
    assert "hue=0.2" in repr(step)
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    image[0] = 200  # red: a hue shift moves it into green or blue
    random.seed(1)
    shifted, _ = step(image.clone(), {"semantic": torch.zeros(4, 4, dtype=torch.int64)})
    assert not torch.equal(shifted, image)
