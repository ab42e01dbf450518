"""Mask and box AP: ground-truth instances from label maps, known answers, the test stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader

from fashionseg.data.datamodule import EvalSampler, collate
from fashionseg.files import write_json
from fashionseg.instance_ap import (
    ap_summary,
    gt_instances,
    instance_ap_metric,
    predicted_instances,
)
from fashionseg.metrics import metrics_dict
from fashionseg.model.module import MaskRCNNModule
from fashionseg.reporting.results_table import table
from fashionseg.tasks import get_task

NAMES = {"mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50", "box_ap75"}


def _label_map() -> torch.Tensor:
    """20x30: class 1 in two separate blocks, class 2 in one, an ignored strip."""
    semantic = torch.zeros(20, 30, dtype=torch.int64)
    semantic[2:8, 3:10] = 1
    semantic[12:18, 3:10] = 1
    semantic[5:15, 18:26] = 2
    semantic[0, :] = 255
    return semantic


def _detections(truth: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> dict:
    """Mask R-CNN-style outputs equal to ``truth`` (mask probabilities 0.9 inside)."""
    n = len(truth["labels"])
    return {
        "boxes": truth["boxes"].clone(),
        "labels": truth["labels"].clone() if labels is None else labels,
        "scores": torch.linspace(0.9, 0.6, n),
        "masks": truth["masks"].float()[:, None] * 0.9,
    }


def _ap(preds: list[dict], truths: list[dict]) -> dict[str, float | None]:
    metric = instance_ap_metric()
    assert metric is not None, "a COCO backend (faster-coco-eval) must be installed"
    metric.update([predicted_instances(p) for p in preds], truths)
    return ap_summary(metric.compute())


def test_ground_truth_instances_follow_the_instances_mode() -> None:
    semantic = _label_map()
    by_class = gt_instances(semantic, 3, "class")
    # then the ignored strip as a crowd region of each class (issue 27, item 3)
    assert by_class["labels"].tolist() == [1, 2, 1, 2]
    assert by_class["iscrowd"].tolist() == [0, 0, 1, 1]
    assert torch.equal(by_class["masks"][2], semantic == 255)
    assert by_class["boxes"][2].tolist() == [0.0, 0.0, 30.0, 1.0]
    components = gt_instances(semantic, 3, "components")
    assert components["labels"].tolist() == [1, 1, 2, 1, 2]
    assert components["masks"].dtype == torch.bool
    assert components["boxes"][0].tolist() == [3.0, 2.0, 10.0, 8.0]
    assert not components["masks"][:3, 0].any()  # ignored pixels are in no instance
    assert len(gt_instances(semantic, 3, "components", min_area=50)["labels"]) == 1 + 2
    assert gt_instances(semantic.clamp(max=2), 3)["iscrowd"].tolist() == [0, 0]  # none


def test_a_detection_on_ignored_pixels_is_neither_true_nor_false() -> None:
    # issue 27, item 3: the ignored strip is a crowd region, as in COCO
    semantic = _label_map()
    semantic[0:2, :] = 255  # a 2-row ignored strip
    truth = gt_instances(semantic, 3, "components")
    real = truth["iscrowd"] == 0
    plain = {k: v[real] for k, v in truth.items() if k != "iscrowd"}
    detections = _detections(plain)
    baseline = _ap([detections], [truth])
    assert baseline == dict.fromkeys(NAMES, 1.0)
    # plus a confident class-1 detection of the ignored strip
    strip = (semantic == 255).float()[None, None] * 0.9
    extra = {
        "boxes": torch.cat([torch.tensor([[0.0, 0.0, 30.0, 2.0]]), detections["boxes"]]),
        "labels": torch.cat([torch.tensor([1]), detections["labels"]]),
        "scores": torch.cat([torch.tensor([0.95]), detections["scores"]]),
        "masks": torch.cat([strip, detections["masks"]]),
    }
    assert _ap([extra], [truth]) == baseline  # ignored, not a false positive
    # without the crowd region it would cost precision
    assert _ap([extra], [plain])["mask_ap"] < 1.0


def test_perfect_predictions_score_ap_one() -> None:
    truth = gt_instances(_label_map(), 3, "components")
    assert _ap([_detections(truth)], [truth]) == dict.fromkeys(NAMES, 1.0)


def test_predictions_of_the_wrong_class_score_ap_zero() -> None:
    truth = gt_instances(_label_map(), 3, "class")
    swapped = truth["labels"].flip(0)  # class 1's mask called 2 and the other way round
    assert _ap([_detections(truth, swapped)], [truth]) == dict.fromkeys(NAMES, 0.0)


def test_a_half_overlapping_mask_passes_ap50_but_not_ap75() -> None:
    semantic = torch.zeros(20, 20, dtype=torch.int64)
    semantic[:, :10] = 1
    truth = gt_instances(semantic, 2, "class")
    shifted = torch.zeros(1, 20, 20)
    shifted[0, :, 3:13] = 0.9  # IoU 7/13 ~ 0.54 with the truth, mask and box alike
    pred = {
        "boxes": torch.tensor([[3.0, 0.0, 13.0, 20.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.8]),
        "masks": shifted[:, None],
    }
    ap = _ap([pred], [truth])
    assert ap["mask_ap50"] == pytest.approx(1.0) and ap["box_ap50"] == pytest.approx(1.0)
    assert ap["mask_ap75"] == 0.0 and ap["box_ap75"] == 0.0
    assert ap["mask_ap"] == pytest.approx(0.1, abs=1e-6)  # passes 0.50 only of 10 IoUs


def test_no_ground_truth_and_no_detections_has_no_ap() -> None:
    empty = gt_instances(torch.zeros(8, 8, dtype=torch.int64), 2)
    none = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
        "masks": torch.zeros(0, 1, 8, 8),
    }
    assert _ap([none], [empty]) == dict.fromkeys(NAMES)


class PerfectNet(nn.Module):
    """Detects the left-half person exactly (score 0.8) plus a right-half false positive
    (score 0.3): AP 1.0 (the true instance ranks first), IoU at threshold 0.5 perfect."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, images: list[torch.Tensor], targets: list | None = None) -> object:
        masks = torch.zeros(2, 1, 8, 8)
        masks[0, 0, :, :4] = 0.9
        masks[1, 0, :, 4:] = 0.7
        out = {
            "labels": torch.tensor([1, 1]),
            "scores": torch.tensor([0.8, 0.3]),
            "masks": masks,
            "boxes": torch.tensor([[0.0, 0.0, 4.0, 8.0], [4.0, 0.0, 8.0, 8.0]]),
        }
        return [out for _ in images]


def _batches(n: int = 2) -> DataLoader:
    semantic = torch.zeros(8, 8, dtype=torch.int64)
    semantic[:, :4] = 1
    items = [(torch.zeros(3, 8, 8), {"semantic": semantic}) for _ in range(n)]
    return DataLoader(items, batch_size=1, collate_fn=collate)


def test_test_stage_logs_ap_and_puts_it_into_the_results() -> None:
    net = {"arch": "maskrcnn_mobilenet_v3_large_fpn", "weights": "none"}
    module = MaskRCNNModule(task="person", net=net, threshold=0.5)
    module.net = PerfectNet()
    logged = quiet_trainer().test(module, dataloaders=_batches(), verbose=False)[0]
    assert module.test_results["ap"] == dict.fromkeys(NAMES, 1.0)
    assert module.test_results["miou"] == 1.0
    assert all(logged[f"test/{name}"] == 1.0 for name in NAMES)
    off = MaskRCNNModule(task="person", net=net, threshold=0.5, ap=False)
    off.net = PerfectNet()
    quiet_trainer().test(off, dataloaders=_batches(), verbose=False)
    assert "ap" not in off.test_results


def test_results_table_shows_ap_columns_and_a_dash_without_ap(tmp_path: Path) -> None:
    names = get_task("person").class_names
    cm = torch.tensor([[8, 2], [0, 10]])
    timing = {"seconds": 60.0, "hardware": "CPU", "command": []}
    for row, ap in (("ccp_panoptic", True), ("ccp_semantic", False)):
        metrics = metrics_dict(cm, names, threshold=0.5 if ap else None)
        if ap:
            metrics["ap"] = {
                "mask_ap": 0.123,
                "mask_ap50": 0.3,
                "mask_ap75": None,
                "box_ap": 0.2,
                "box_ap50": 0.4,
                "box_ap75": 0.1,
            }
        write_json(tmp_path / f"person-{row}" / "metrics.json", metrics)
        write_json(tmp_path / f"person-{row}" / "report_timing.json", timing)
    lines = table(tmp_path, ["ccp_panoptic", "ccp_semantic"], ["person"], None).splitlines()
    assert any("| mask AP (50/75) | box AP (50/75) |" in line for line in lines)
    assert (
        "| ccp_panoptic | 80.0 | 83.3 | **81.7** | 90.0 | 0.50 | 12.3 (30.0/-) | 20.0 (40.0/10.0) | 1.0 min | CPU |"
        in lines
    )
    assert (
        "| ccp_semantic | 80.0 | 83.3 | **81.7** | 90.0 | argmax | - | - | 1.0 min | CPU |" in lines
    )


class RankedNet(nn.Module):
    """The true left-half person and a false right-half one, with scores read off the
    image's brightness so that true and false detections interleave across images."""

    SCORES = {1: (0.9, 0.95), 2: (0.5, 0.2), 3: (0.3, 0.6), 4: (0.7, 0.4)}

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, images: list[torch.Tensor], targets: list | None = None) -> object:
        outputs = []
        for image in images:
            true_score, false_score = self.SCORES[round(float(image.mean()) * 10)]
            masks = torch.zeros(2, 1, 8, 8)
            masks[0, 0, :, :4] = 0.9
            masks[1, 0, :, 4:] = 0.7
            outputs.append(
                {
                    "labels": torch.tensor([1, 1]),
                    "scores": torch.tensor([true_score, false_score]),
                    "masks": masks,
                    "boxes": torch.tensor([[0.0, 0.0, 4.0, 8.0], [4.0, 0.0, 8.0, 8.0]]),
                }
            )
        return outputs


@pytest.mark.slow
def test_two_processes_score_the_same_ap_as_one(tmp_path: Path) -> None:
    """Test-stage AP gathers every DDP rank's images (2 gloo processes == 1 process)."""
    import lightning as L

    semantic = torch.zeros(8, 8, dtype=torch.int64)
    semantic[:, :4] = 1
    # 3 photos on 2 ranks (issue 27, item 9): a padding sampler scores one of them twice
    items = [(torch.full((3, 8, 8), i / 10), {"semantic": semantic}) for i in (1, 2, 4)]
    loader = DataLoader(items, batch_size=1, collate_fn=collate, sampler=EvalSampler(items))
    net = {"arch": "maskrcnn_mobilenet_v3_large_fpn", "weights": "none"}
    module = MaskRCNNModule(task="person", net=net, threshold=0.5)
    module.net = RankedNet()
    results = []
    for devices in (1, 2):
        trainer = L.Trainer(
            accelerator="cpu",
            devices=devices,
            strategy="ddp_spawn" if devices > 1 else "auto",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=tmp_path / str(devices),
        )
        module.test_results = None
        results.append(trainer.test(module, dataloaders=loader, verbose=False)[0])
    single, double = results
    assert 0.0 < single["test/mask_ap"] < 1.0  # the interleaved ranking costs precision
    assert module.test_results is None  # the 2-process test ran in spawned processes...
    # ...but the results reach it (what train and evaluate read after a spawned test)
    module.take_over(trainer)
    assert module.test_results["ap"]["mask_ap"] == pytest.approx(double["test/mask_ap"])
    assert sum(map(sum, module.test_results["confusion_matrix"])) == 3 * 8 * 8  # each once
    for key, value in single.items():
        assert double[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
