"""The LightningModule with a fake network: threshold choice, test scores, NaN losses."""

from __future__ import annotations

import pytest
import torch
from helpers import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader

from fashionseg.data.datamodule import collate
from fashionseg.model.module import NonFiniteLossError, SegmentationModule

TINY_NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
}


class FakeNet(nn.Module):
    """Returns fixed detections: a true instance (score 0.8) and a false one (score 0.3)."""

    def __init__(self, losses: dict[str, float] | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.losses = losses or {}

    def forward(self, images: list[torch.Tensor], targets: list | None = None) -> object:
        if self.training:
            return {k: self.weight + v for k, v in self.losses.items()}
        masks = torch.zeros(2, 1, 8, 8)
        masks[0, 0, :, :4] = 0.9  # true person, left half
        masks[1, 0, :, 4:] = 0.7  # false positive, right half
        out = {
            "labels": torch.tensor([1, 1]),
            "scores": torch.tensor([0.8, 0.3]),
            "masks": masks,
            "boxes": torch.zeros(2, 4),
        }
        return [out for _ in images]


def _batches(n: int = 2) -> DataLoader:
    semantic = torch.zeros(8, 8, dtype=torch.int64)
    semantic[:, :4] = 1
    items = [(torch.zeros(3, 8, 8), {"semantic": semantic}) for _ in range(n)]
    return DataLoader(items, batch_size=1, collate_fn=collate)


def _module(**kwargs: object) -> SegmentationModule:
    module = SegmentationModule(task="person", net=TINY_NET, **kwargs)
    module.net = FakeNet()
    return module


def test_validation_picks_the_lowest_best_threshold_and_keeps_it_in_the_state() -> None:
    module = _module()
    metrics = quiet_trainer().validate(module, dataloaders=_batches(), verbose=False)[0]
    # thresholds 0.30 .. 0.75 drop the false positive (score 0.3 is not > 0.3): mIoU 1.0
    assert float(module.best_threshold) == pytest.approx(0.30)
    assert metrics["val/miou"] == pytest.approx(1.0)
    # 0.25 keeps both: all pixels person -> IoU background 0, person 32/64
    assert metrics["val_sweep/miou@0.25"] == pytest.approx((0.0 + 0.5) / 2)
    # 0.80 keeps nothing: all background -> IoU background 32/64, person 0
    assert metrics["val_sweep/miou@0.80"] == pytest.approx((0.5 + 0.0) / 2)
    state = module.state_dict()
    assert float(state["best_threshold"]) == pytest.approx(0.30)
    assert state["class_thresholds"].tolist() == pytest.approx([0.30, 0.30])


def test_test_stage_uses_the_chosen_or_overriding_threshold() -> None:
    module = _module()
    module.best_threshold.fill_(0.3)
    quiet_trainer().test(module, dataloaders=_batches(), verbose=False)
    assert module.test_results["miou"] == pytest.approx(1.0)
    assert module.test_results["threshold"] == pytest.approx(0.3)
    override = _module(threshold=0.1)
    override.best_threshold.fill_(0.3)
    quiet_trainer().test(override, dataloaders=_batches(), verbose=False)
    assert override.test_results["iou"]["person"] == pytest.approx(0.5)
    assert override.test_results["confusion_matrix"] == [[0, 64], [0, 64]]


def test_non_finite_loss_stops_with_the_step_and_terms() -> None:
    module = _module()
    module.net = FakeNet(
        {"loss_classifier": 0.5, "loss_mask": float("nan"), "loss_box_reg": float("inf")}
    )
    module.train()
    batch = ([torch.zeros(3, 8, 8)], [{"boxes": None, "labels": None, "masks": None}])
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*loss_mask=nan, loss_box_reg=inf"):
        module.training_step(batch, 0)


def test_unknown_fusion_method_is_refused() -> None:
    from omegaconf import OmegaConf

    from fashionseg.settings import check_settings

    with pytest.raises(ValueError, match="^fusion.method=vote: choose one of seed, ") as built:
        SegmentationModule(task="person", net=TINY_NET, fusion={"method": "vote"})
    with pytest.raises(ValueError) as checked:  # the command line's check: the same rule
        check_settings(
            OmegaConf.create({"data": {"root": "d"}, "fusion": {"method": "vote"}}), "train"
        )
    assert str(checked.value) == str(built.value)
