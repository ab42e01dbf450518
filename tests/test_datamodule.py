"""The DataModule: deterministic split, manifest, loaders, augmentation, generation."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from fashionseg.data.datamodule import EvalSampler, FashionDataModule, collate, make_split
from fashionseg.data.io import DataError

STEMS = [f"{i:03d}" for i in range(20)]


@pytest.fixture
def data20(tmp_path: Path, make_tiny_dataset) -> Path:
    return make_tiny_dataset(tmp_path / "data", num_images=20)


def test_make_split_rule() -> None:
    order = sorted(STEMS)
    random.Random(3).shuffle(order)
    assert make_split(STEMS, (0.5, 0.1, 0.4), 3) == {
        "train": order[:10],
        "val": order[10:12],
        "test": order[12:],
    }
    assert make_split(list(reversed(STEMS)), (0.5, 0.1, 0.4), 3) == make_split(
        STEMS, [0.5, 0.1, 0.4], 3
    )
    assert make_split(STEMS, (0.5, 0.1, 0.4), 4) != make_split(STEMS, (0.5, 0.1, 0.4), 3)


@pytest.mark.parametrize("ratios", [(0.5, 0.1, 0.3), (0.6, 0.5, -0.1), (0.5, 0.5)])
def test_bad_ratios(ratios: tuple[float, ...]) -> None:
    from omegaconf import OmegaConf

    from fashionseg.cli import UsageError
    from fashionseg.settings import check_settings

    shown = "[" + ",".join(f"{r:g}" for r in ratios) + "]"
    with pytest.raises(DataError, match=rf"^data\.split={re.escape(shown)}: ") as info:
        make_split(STEMS, ratios, 0)
    with pytest.raises(DataError) as built:
        FashionDataModule(root="unused", split=ratios)
    # the command line's check before any work says the same: the rule has one home
    cfg = OmegaConf.create({"data": {"root": "d", "split": list(ratios)}})
    with pytest.raises(UsageError) as checked:
        check_settings(cfg, "train")
    assert str(info.value) == str(built.value) == str(checked.value)


def test_ratio_leaving_a_split_empty() -> None:
    with pytest.raises(DataError, match=r"\[0\.98, 0\.01, 0\.01\] leaves the val/test split"):
        make_split(STEMS, (0.98, 0.01, 0.01), 0)


def test_setup_split_and_idempotent(data20: Path) -> None:
    dm = FashionDataModule(root=str(data20), task="clothing", seed=1)
    dm.setup("fit")
    first = {k: list(v) for k, v in dm.split_stems.items()}
    assert {k: len(v) for k, v in first.items()} == {"train": 10, "val": 2, "test": 8, "all": 20}
    assert sorted(first["train"] + first["val"] + first["test"]) == STEMS
    assert first["all"] == STEMS
    dm.setup("test")
    assert dm.split_stems == first
    assert FashionDataModule(root=str(data20), task="person", seed=1).split_stems == {}
    other = FashionDataModule(root=str(data20), task="person", seed=1)
    other.setup()
    assert {k: other.split_stems[k] for k in first} == first  # same seed, same split
    assert dm.root == data20


def test_manifest_roundtrip(data20: Path, tmp_path: Path) -> None:
    dm = FashionDataModule(root=str(data20), seed=5, split=(0.6, 0.2, 0.2))
    dm.setup()
    path = dm.write_manifest(tmp_path / "run" / "split.json")
    data = json.loads(path.read_text())
    assert list(data) == ["task", "seed", "split", "train", "val", "test"]
    assert data["task"] == "person" and data["seed"] == 5 and data["split"] == [0.6, 0.2, 0.2]
    again = FashionDataModule(root=str(data20), seed=99, manifest=str(path))
    again.setup()
    for name in ("train", "val", "test"):
        assert again.split_stems[name] == dm.split_stems[name]


def test_manifest_with_unknown_stem(data20: Path, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["000", "nope"], "val": ["001"], "test": ["002"]}))
    with pytest.raises(DataError, match="'nope'") as info:
        FashionDataModule(root=str(data20), manifest=str(path)).setup()
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="not found"):
        FashionDataModule(root=str(data20), manifest=str(tmp_path / "x.json")).setup()


def test_loaders(data20: Path) -> None:
    dm = FashionDataModule(
        root=str(data20), task="clothing", batch_size=4, eval_batch_size=3, hflip=0.5
    )
    dm.setup("fit")
    train = dm.train_dataloader()
    images, targets = next(iter(train))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == 4
    assert images[0].dtype == torch.float32 and images[0].shape == (3, 6, 8)
    assert set(targets[0]) == {"masks", "boxes", "labels", "semantic", "image_id", "stem"}
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(train.dataset.transforms, v2.Compose)
    for split, size in (("val", 2), ("test", 8), ("all", 20)):
        loader = dm.dataloader(split)
        # every photo once, in order, on one process (EvalSampler: no repeats on several)
        assert isinstance(loader.sampler, EvalSampler) and list(loader.sampler) == list(range(size))
        assert loader.batch_size == 3 and loader.dataset.transforms is None
        targets = [t for _, batch in loader for t in batch]
        assert [t["stem"] for t in targets] == dm.split_stems[split] and len(targets) == size
    assert dm.predict_dataloader().dataset.samples == dm.test_dataloader().dataset.samples
    with pytest.raises(ValueError, match="'holdout'"):
        dm.dataloader("holdout")


@pytest.mark.parametrize("augment", [True, False])
def test_only_training_items_carry_instances(data20: Path, augment: bool) -> None:
    """Mask R-CNN instances are derived for the training split alone (after augmentation);
    validation, test and all are scored on their label maps."""
    dm = FashionDataModule(root=str(data20), task="clothing", augment=augment, hflip=0.5)
    image, target = dm.dataset("train")[0]
    assert set(target) == {"masks", "boxes", "labels", "semantic", "image_id", "stem"}
    assert target["masks"].shape[1:] == target["semantic"].shape == image.shape[1:]
    for split in ("val", "test", "all"):
        dataset = dm.dataset(split)
        assert not dataset.with_instances
        image, target = dataset[0]
        assert set(target) == {"semantic", "image_id", "stem"}
        assert image.dtype == torch.float32 and target["semantic"].shape == image.shape[1:]


def test_eval_batch_size_defaults_to_batch_size(data20: Path) -> None:
    dm = FashionDataModule(root=str(data20), batch_size=5)
    dm.setup()
    assert dm.val_dataloader().batch_size == 5


def test_hyperparameters_are_plain(data20: Path) -> None:
    dm = FashionDataModule(root=str(data20), split=[0.5, 0.1, 0.4], scale_jitter=(0.8, 1.2))
    hp = dict(dm.hparams)
    assert hp["split"] == [0.5, 0.1, 0.4] and hp["scale_jitter"] == [0.8, 1.2]
    assert hp["root"] == str(data20) and hp["task"]["name"] == "person" and hp["generate"] is None
    FashionDataModule(**hp)  # the checkpoint's settings rebuild the module


def test_augment_false_leaves_the_training_photos_as_they_are(data20: Path) -> None:
    settings = {"hflip": 1.0, "crop": [0.5, 0.5], "color_jitter": 0.3}
    augmented = FashionDataModule(root=str(data20), **settings).dataset("train")
    plain = FashionDataModule(root=str(data20), augment=False, **settings).dataset("train")
    assert plain.transforms is None and augmented.transforms.transforms
    image, target = plain[0]
    again, _ = FashionDataModule(root=str(data20)).dataset("train")[0]
    assert torch.equal(image, again) and augmented[0][0].shape != image.shape  # crop halves


def test_collate() -> None:
    batch = [(torch.zeros(1), {"a": 1}), (torch.ones(1), {"a": 2})]
    images, targets = collate(batch)
    assert len(images) == 2 and targets == [{"a": 1}, {"a": 2}]


def test_generate_fills_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    settings = {"num_images": 10, "seed": 0, "height": 48, "width": 32}
    dm = FashionDataModule(root=str(root), task="clothing", generate=settings)
    dm.setup("fit")
    assert len(dm.split_stems["all"]) == 10
    assert {k: len(dm.split_stems[k]) for k in ("train", "val", "test")} == {
        "train": 5,
        "val": 1,
        "test": 4,
    }
    image, target = dm.dataloader("train").dataset[0]
    assert image.shape == (3, 48, 32) and target["semantic"].shape == (48, 32)


# --- the real data (ccp-fashion600) -------------------------------------------------------


@pytest.fixture(scope="module")
def ccp_module(ccp600: Path) -> FashionDataModule:
    dm = FashionDataModule(root=str(ccp600), task="clothing")
    dm.setup("fit")
    return dm


@pytest.mark.shared
def test_ccp600_split(ccp_module: FashionDataModule, ccp600: Path, tmp_path: Path) -> None:
    sizes = {k: len(v) for k, v in ccp_module.split_stems.items()}
    assert sizes == {"train": 300, "val": 60, "test": 240, "all": 600}
    manifest = ccp_module.write_manifest(tmp_path / "split.json")
    again = FashionDataModule(root=str(ccp600), task="person", seed=7, manifest=str(manifest))
    again.setup()
    for name in ("train", "val", "test"):
        assert again.split_stems[name] == ccp_module.split_stems[name]
    stems = sorted(ccp_module.split_stems["all"])
    assert make_split(stems, (0.5, 0.1, 0.4), 0) == {
        k: ccp_module.split_stems[k] for k in ("train", "val", "test")
    }


@pytest.mark.shared
def test_ccp600_batch(ccp_module: FashionDataModule) -> None:
    images, targets = next(iter(ccp_module.dataloader("val")))
    assert len(images) == 10 and images[0].shape == (3, 600, 400)
    assert targets[0]["stem"] == ccp_module.split_stems["val"][0]


def test_unknown_instances_mode_names_the_setting(data20: Path) -> None:
    """One check (targets.check_instances) for the dataset and the DataModule; the
    DataModule's message names the Hydra setting."""
    from fashionseg.data.dataset import FashionDataset

    with pytest.raises(ValueError, match=r"unknown data\.instances 'blobs': choose one of class"):
        FashionDataModule(root=data20, task="clothing", instances="blobs")
    with pytest.raises(ValueError, match=r"unknown instances mode 'blobs'"):
        FashionDataset(data20, "clothing", instances="blobs")
