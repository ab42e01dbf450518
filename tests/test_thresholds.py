"""Threshold choice on validation: per-class search, absent classes, the global fallback."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader

from fashionseg.data.datamodule import collate
from fashionseg.fusion import fuse, fuse_sweep
from fashionseg.metrics import ThresholdSweep, miou_from_confmat
from fashionseg.model.module import SegmentationModule

TINY_NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
}
GRID = [0.2, 0.5, 0.7]


@pytest.mark.parametrize("method", ["seed", "score_order", "argmax"])
def test_class_sweep_equals_fusing_at_each_combination(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    thresholds = torch.tensor([0.05, 0.3, 0.5, 0.65, 0.9])
    class_thresholds = torch.tensor([0.5, 0.3, 0.5, 0.7])
    for _ in range(60):
        n = int(torch.randint(0, 8, (1,), generator=g))
        labels = torch.randint(1, 4, (n,), generator=g)
        scores = torch.round(torch.rand(n, generator=g) * 10) / 10  # ties included
        masks = torch.rand(n, 1, 5, 6, generator=g)
        for cls in (1, 2, 3):
            maps = fuse_sweep(
                labels,
                scores,
                masks,
                thresholds,
                method=method,
                class_thresholds=class_thresholds,
                cls=cls,
            )
            for i, t in enumerate(thresholds):
                combo = class_thresholds.clone()
                combo[cls] = t
                expected = fuse(labels, scores, masks, method=method, class_thresholds=combo)
                assert torch.equal(maps[i], expected)


@pytest.mark.parametrize("given", ["class_thresholds", "cls"])
def test_class_sweep_needs_both_the_thresholds_and_the_class(given: str) -> None:
    labels, scores = torch.tensor([1]), torch.tensor([0.9])
    masks = torch.ones(1, 1, 3, 3)
    half = {"class_thresholds": torch.tensor([0.5, 0.5]), "cls": 1}
    with pytest.raises(ValueError, match="class_thresholds and cls go together"):
        fuse_sweep(labels, scores, masks, torch.tensor([0.5]), **{given: half[given]})


class FakeNet(nn.Module):
    """Returns the same hand-made detections for every photo."""

    def __init__(self, detections: list[tuple[int, float, slice]], shape: tuple[int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.detections, self.shape = detections, shape

    def forward(self, images: list[torch.Tensor], targets: list | None = None) -> object:
        masks = torch.zeros(len(self.detections), 1, *self.shape)
        for i, (_, _, cols) in enumerate(self.detections):
            masks[i, 0, :, cols] = 0.9
        out = {
            "labels": torch.tensor([d[0] for d in self.detections]),
            "scores": torch.tensor([d[1] for d in self.detections]),
            "masks": masks,
            "boxes": torch.zeros(len(self.detections), 4),
        }
        return [out for _ in images]


def _loader(target: torch.Tensor, n: int = 2) -> DataLoader:
    items = [(torch.zeros(3, *target.shape), {"semantic": target}) for _ in range(n)]
    return DataLoader(items, batch_size=1, collate_fn=collate)


def _module(detections: list, shape: tuple[int, int], method: str) -> SegmentationModule:
    fusion = {"method": method, "per_class_thresholds": True}
    module = SegmentationModule(task="clothing", net=TINY_NET, fusion=fusion, thresholds=GRID)
    module.net = FakeNet(detections, shape)
    return module


def _target(shape: tuple[int, int], columns: dict[int, slice]) -> torch.Tensor:
    target = torch.zeros(shape, dtype=torch.int64)
    for cls, cols in columns.items():
        target[:, cols] = cls
    return target


def test_per_class_thresholds_win_absent_class_takes_the_global_one() -> None:
    # skin | hair | background; a true hair (0.8), a false hair over the skin (0.6), a
    # true skin (0.3) and a shoe (class 4, absent from validation) on the background
    shape = (4, 6)
    target = _target(shape, {1: slice(0, 2), 2: slice(2, 4)})
    detections = [(2, 0.8, slice(2, 4)), (2, 0.6, slice(0, 2)), (1, 0.3, slice(0, 2))]
    detections.append((4, 0.3, slice(4, 6)))
    module = _module(detections, shape, "score_order")
    metrics = quiet_trainer().validate(module, dataloaders=_loader(target), verbose=False)[0]
    # one global threshold: 0.5 and 0.7 tie at mIoU 0.5 (skin is lost either way)
    assert float(module.best_threshold) == pytest.approx(0.5)
    assert float(module.val_miou_global) == pytest.approx(0.5)
    # skin at 0.2 with hair at 0.7: perfect on the three present classes
    assert bool(module.use_class_thresholds)
    assert module.class_thresholds[1:3].tolist() == pytest.approx([0.2, 0.7])
    assert float(module.class_thresholds[4]) == pytest.approx(0.5)  # absent: the global one
    assert metrics["val/miou"] == pytest.approx(1.0)
    assert metrics["val/miou_per_class"] == pytest.approx(1.0)
    assert metrics["val/miou_global"] == pytest.approx(0.5)
    assert metrics["val/per_class_used"] == 1.0

    quiet_trainer().test(module, dataloaders=_loader(target), verbose=False)
    results = module.test_results
    assert results["miou"] == pytest.approx(1.0)
    assert results["class_thresholds"]["skin"] == pytest.approx(0.2)
    choice = results["threshold_choice"]
    assert choice["per_class_used"] is True
    assert choice["val_miou_global"] == pytest.approx(0.5)
    assert choice["val_miou_per_class"] == pytest.approx(1.0)
    state = module.state_dict()
    assert bool(state["use_class_thresholds"]) and float(state["val_miou"]) == pytest.approx(1.0)


def test_per_class_choice_that_does_not_beat_the_global_one_is_not_used() -> None:
    # skin | hair; a true skin (0.6) and a false hair over everything (0.4), seed fusion
    # (the later, less confident instance is painted last)
    shape = (4, 4)
    target = _target(shape, {1: slice(0, 2), 2: slice(2, 4)})
    detections = [(1, 0.6, slice(0, 2)), (2, 0.4, slice(0, 4))]
    module = _module(detections, shape, "seed")
    metrics = quiet_trainer().validate(module, dataloaders=_loader(target), verbose=False)[0]
    assert float(module.best_threshold) == pytest.approx(0.5)
    # at 0.5: skin 1, hair 0 and background (absent but predicted on the hair) 0: 1/3
    # (the present-classes mean of before gave 0.5; issue 27, item 1)
    assert metrics["val/miou_global"] == pytest.approx(1 / 3)
    assert metrics["val/miou_per_class"] == pytest.approx(1 / 3)
    assert not bool(module.use_class_thresholds)
    assert metrics["val/miou"] == pytest.approx(1 / 3)
    # each class's own best threshold (the old rule: skin 0.5, hair 0.2) is worse together
    sweep = ThresholdSweep(7, [0.5])
    old = torch.tensor([0.5, 0.5, 0.2, 0.5, 0.5, 0.5, 0.5])
    out = module.net([torch.zeros(3, *shape)])[0]
    sweep.update(
        fuse(out["labels"], out["scores"], out["masks"], class_thresholds=old)[None], target
    )
    assert float(miou_from_confmat(sweep.compute()["confmat"])) == pytest.approx(0.25)

    quiet_trainer().test(module, dataloaders=_loader(target), verbose=False)
    assert module.test_results["class_thresholds"] is None  # the global threshold is used
    assert module.test_results["threshold"] == pytest.approx(0.5)
    assert module.test_results["threshold_choice"]["per_class_used"] is False


class _Splits:
    """The two loaders evaluate's threshold re-choice uses, as a DataModule gives them."""

    def __init__(self, **loaders: DataLoader) -> None:
        self.loaders = loaders

    def dataloader(self, split: str) -> DataLoader:
        return self.loaders[split]

    def dataset(self, split: str) -> object:
        return self.loaders[split].dataset


def test_evaluate_chooses_on_validation_and_reports_test_at_that_threshold(tmp_path) -> None:
    import json

    from fashionseg.evaluate import _rechoose_thresholds

    # a true person on the left (0.8) and a detection on the right (0.3)
    shape = (4, 4)
    detections = [(1, 0.8, slice(0, 2)), (1, 0.3, slice(2, 4))]
    module = SegmentationModule(task="person", net=TINY_NET, thresholds=GRID)
    module.net = FakeNet(detections, shape)
    # validation: the right is background (best 0.5); test: all person (best would be 0.2)
    val = _loader(_target(shape, {1: slice(0, 2)}))
    test = _loader(_target(shape, {1: slice(0, 4)}))
    trainer = quiet_trainer()
    _rechoose_thresholds(module, _Splits(val=val, test=test), trainer, "test", tmp_path)
    trainer.test(module, dataloaders=test, verbose=False)
    assert module.test_results["threshold"] == pytest.approx(0.5)
    assert module.test_results["iou"]["person"] == pytest.approx(0.5)  # not 1.0 (at 0.2)
    sweep = json.loads((tmp_path / "threshold_sweep.json").read_text())
    assert sweep["split"] == "val" and sweep["choice"]["threshold"] == pytest.approx(0.5)
    assert sweep["miou"]["0.50"] == pytest.approx(1.0)


def test_hparams_tab_pairs_test_figures_with_the_tested_checkpoints_validation(tmp_path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shape = (4, 4)
    target = _target(shape, {1: slice(0, 2)})
    module = SegmentationModule(task="person", net=TINY_NET, thresholds=GRID)
    module.net = FakeNet([(1, 0.8, slice(0, 2)), (1, 0.3, slice(2, 4))], shape)
    from fashionseg.callbacks import TensorBoardPictures

    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[TensorBoardPictures()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, dataloaders=_loader(target), verbose=False)  # the last epoch: 1.0
    assert float(module.val_miou) == pytest.approx(1.0)
    module.val_miou.fill_(0.7)  # as the best checkpoint's buffers, loaded for testing, hold
    trainer.test(module, dataloaders=_loader(target), verbose=False)
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"))
    events.Reload()
    assert [e.value for e in events.Scalars("hp/val_miou")] == [pytest.approx(0.7)]
    assert [e.value for e in events.Scalars("hp/test_miou")] == [pytest.approx(1.0)]
