"""Label maps -> Mask R-CNN targets, pinned on a hand-made 8x6 example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionseg.data.dataset import FashionDataset
from fashionseg.data.targets import boxes_of, mask_to_target

# Clothing label map of image "a" (H=6, W=8). Class 6 is two diagonal pixels: one
# 8-connected component. Class 4 and 5 have two components each.
LABELS_A = np.array(
    [
        [0, 0, 2, 2, 0, 0, 6, 0],
        [0, 0, 2, 2, 0, 0, 0, 6],
        [0, 3, 3, 3, 3, 0, 0, 0],
        [0, 3, 3, 3, 3, 0, 1, 0],
        [0, 5, 0, 0, 5, 0, 0, 0],
        [4, 4, 0, 0, 4, 4, 0, 0],
    ],
    dtype=np.uint8,
)


def grid(*rows: str) -> list[list[int]]:
    """A literal binary mask from rows of 0/1 characters."""
    return [[int(c) for c in row] for row in rows]


MASK_1 = grid("00000000", "00000000", "00000000", "00000010", "00000000", "00000000")
MASK_2 = grid("00110000", "00110000", "00000000", "00000000", "00000000", "00000000")
MASK_3 = grid("00000000", "00000000", "01111000", "01111000", "00000000", "00000000")
MASK_4 = grid("00000000", "00000000", "00000000", "00000000", "00000000", "11001100")
MASK_4A = grid("00000000", "00000000", "00000000", "00000000", "00000000", "11000000")
MASK_4B = grid("00000000", "00000000", "00000000", "00000000", "00000000", "00001100")
MASK_5 = grid("00000000", "00000000", "00000000", "00000000", "01001000", "00000000")
MASK_5A = grid("00000000", "00000000", "00000000", "00000000", "01000000", "00000000")
MASK_5B = grid("00000000", "00000000", "00000000", "00000000", "00001000", "00000000")
MASK_6 = grid("00000010", "00000001", "00000000", "00000000", "00000000", "00000000")

CLASS_MODE = {
    "labels": torch.tensor([1, 2, 3, 4, 5, 6]),
    "boxes": torch.tensor(
        [
            [6.0, 3.0, 7.0, 4.0],
            [2.0, 0.0, 4.0, 2.0],
            [1.0, 2.0, 5.0, 4.0],
            [0.0, 5.0, 6.0, 6.0],
            [1.0, 4.0, 5.0, 5.0],
            [6.0, 0.0, 8.0, 2.0],
        ]
    ),
    "masks": torch.tensor([MASK_1, MASK_2, MASK_3, MASK_4, MASK_5, MASK_6], dtype=torch.uint8),
}
COMPONENTS_MODE = {
    "labels": torch.tensor([1, 2, 3, 4, 4, 5, 5, 6]),
    "boxes": torch.tensor(
        [
            [6.0, 3.0, 7.0, 4.0],
            [2.0, 0.0, 4.0, 2.0],
            [1.0, 2.0, 5.0, 4.0],
            [0.0, 5.0, 2.0, 6.0],
            [4.0, 5.0, 6.0, 6.0],
            [1.0, 4.0, 2.0, 5.0],
            [4.0, 4.0, 5.0, 5.0],
            [6.0, 0.0, 8.0, 2.0],
        ]
    ),
    "masks": torch.tensor(
        [MASK_1, MASK_2, MASK_3, MASK_4A, MASK_4B, MASK_5A, MASK_5B, MASK_6], dtype=torch.uint8
    ),
}


def assert_target(target: dict, expected: dict) -> None:
    assert target["labels"].dtype == torch.int64
    assert target["boxes"].dtype == torch.float32
    assert target["masks"].dtype == torch.uint8
    assert torch.equal(target["labels"], expected["labels"])
    assert torch.equal(target["boxes"], expected["boxes"])
    assert torch.equal(target["masks"], expected["masks"])


@pytest.mark.parametrize(
    ("instances", "expected"), [("class", CLASS_MODE), ("components", COMPONENTS_MODE)]
)
def test_mask_to_target_pinned(instances: str, expected: dict) -> None:
    assert_target(mask_to_target(LABELS_A, 7, instances), expected)


def test_components_min_area_drops_small_ones() -> None:
    target = mask_to_target(LABELS_A, 7, "components", min_area=2)
    assert target["labels"].tolist() == [2, 3, 4, 4, 6]
    assert target["boxes"].tolist() == [
        [2.0, 0.0, 4.0, 2.0],
        [1.0, 2.0, 5.0, 4.0],
        [0.0, 5.0, 2.0, 6.0],
        [4.0, 5.0, 6.0, 6.0],
        [6.0, 0.0, 8.0, 2.0],
    ]


def test_empty_label_map_gives_empty_target() -> None:
    target = mask_to_target(np.zeros((6, 8), np.uint8), 7, "components")
    assert target["masks"].shape == (0, 6, 8)
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,)


def test_unknown_instances_mode() -> None:
    with pytest.raises(ValueError, match="'blobs'"):
        mask_to_target(LABELS_A, 7, "blobs")


@pytest.fixture
def pinned_dataset(tmp_path: Path) -> Path:
    """Images "a" (LABELS_A) and "b" (all background), 8x6, RGB PNG photos."""
    root = tmp_path / "data"
    for sub in ("images", "person", "clothes"):
        (root / sub).mkdir(parents=True)
    photo = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    for stem, labels in (("a", LABELS_A), ("b", np.zeros_like(LABELS_A))):
        Image.fromarray(photo).save(root / "images" / f"{stem}.png")
        Image.fromarray(labels).save(root / "clothes" / f"{stem}.png")
        Image.fromarray((labels > 0).astype(np.uint8)).save(root / "person" / f"{stem}.png")
    return root


@pytest.mark.parametrize(
    ("instances", "expected"), [("class", CLASS_MODE), ("components", COMPONENTS_MODE)]
)
def test_dataset_items_pinned(pinned_dataset: Path, instances: str, expected: dict) -> None:
    ds = FashionDataset(pinned_dataset, "clothing", instances=instances)
    assert [s.stem for s in ds.samples] == ["a", "b"]
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 6, 8)
    photo = torch.arange(6 * 8 * 3, dtype=torch.float32).reshape(6, 8, 3).permute(2, 0, 1)
    assert torch.equal(image, photo / 255)
    assert_target(target, expected)
    assert target["semantic"].dtype == torch.int64
    assert torch.equal(target["semantic"], torch.from_numpy(LABELS_A).long())
    assert target["image_id"].dtype == torch.int64 and target["image_id"].ndim == 0
    assert target["stem"] == "a"
    _, empty = ds[1]
    assert empty["masks"].shape == (0, 6, 8)
    assert empty["boxes"].shape == (0, 4)
    assert empty["labels"].shape == (0,)
    assert int(empty["image_id"]) == 1 and empty["stem"] == "b"


def test_dataset_items_without_instances(pinned_dataset: Path) -> None:
    """Evaluation items (``with_instances=False``): the same photo and label map, no masks."""
    image, target = FashionDataset(pinned_dataset, "clothing", with_instances=False)[0]
    full_image, full = FashionDataset(pinned_dataset, "clothing")[0]
    assert set(target) == {"semantic", "image_id", "stem"}
    assert torch.equal(image, full_image) and torch.equal(target["semantic"], full["semantic"])
    assert int(target["image_id"]) == 0 and target["stem"] == "a"


def test_person_task_and_stable_image_id(pinned_dataset: Path) -> None:
    ds = FashionDataset(pinned_dataset, "person", stems=["b", "a"])
    _, target = ds[1]
    assert target["stem"] == "a" and int(target["image_id"]) == 0
    assert target["labels"].tolist() == [1]
    assert target["boxes"].tolist() == [[0.0, 0.0, 8.0, 6.0]]
    assert torch.equal(target["masks"][0], torch.from_numpy(LABELS_A > 0).to(torch.uint8))


def test_maskrcnn_trains_on_empty_target() -> None:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64
    )
    model.train()
    target = mask_to_target(np.zeros((48, 32), np.uint8), 3)
    losses = model([torch.rand(3, 48, 32)], [target])
    assert set(losses) >= {"loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_boxes_of_equals_torchvision_masks_to_boxes_plus_one() -> None:
    from torchvision.ops import masks_to_boxes

    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(50, 31, 17, generator=generator) > 0.97).to(torch.uint8)
    masks[:, 5, 3] = 1  # none empty
    masks[0] = 0
    masks[0, 30, 16] = 1  # a single corner pixel
    expected = masks_to_boxes(masks).float() + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.equal(boxes_of(masks), expected)
    assert boxes_of(masks[:0]).shape == (0, 4)
    with pytest.raises(ValueError, match="at least one pixel"):
        boxes_of(torch.zeros(1, 4, 4, dtype=torch.uint8))
