"""IoU arithmetic, the threshold sweep, tables, metric dicts and the confusion plot."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from fashionseg.fusion import fuse_sweep
from fashionseg.metrics import (
    ThresholdSweep,
    iou_from_confmat,
    mean_iou,
    metrics_dict,
    miou_from_confmat,
    pixel_accuracy,
    present_classes,
)
from fashionseg.reporting.run_results import format_table, save_confusion_png
from fashionseg.thresholds import best_index, choose

GRID = [round(0.05 * i, 2) for i in range(1, 20)]
NAN = float("nan")

# rows = target, columns = prediction
CM = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def test_iou_miou_pixel_accuracy_by_hand() -> None:
    # row sums 6, 6, 4; column sums 7, 4, 5; IoU = TP / (row + column - TP)
    expected = [5 / (6 + 7 - 5), 3 / (6 + 4 - 3), 4 / (4 + 5 - 4)]  # 5/8, 3/7, 4/5
    iou = iou_from_confmat(CM)
    assert iou.tolist() == pytest.approx(expected)
    assert float(mean_iou(iou)) == pytest.approx((5 / 8 + 3 / 7 + 4 / 5) / 3)
    assert float(pixel_accuracy(CM)) == pytest.approx((5 + 3 + 4) / 16)


def test_absent_class_is_nan_and_ignored_by_the_mean() -> None:
    cm = torch.tensor([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
    iou = iou_from_confmat(cm)
    assert iou[:2].tolist() == pytest.approx([3 / 5, 1 / 3])
    assert math.isnan(iou[2])
    assert float(mean_iou(iou)) == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert math.isnan(pixel_accuracy(torch.zeros(2, 2, dtype=torch.int64)))
    assert math.isnan(mean_iou(iou_from_confmat(torch.zeros(2, 2))))


def test_best_index_ties_to_lower_or_to_the_preferred_and_nan_lowest() -> None:
    assert best_index(torch.tensor([NAN, 0.5, 0.7, 0.7, 0.2])) == 2
    assert best_index(torch.tensor([NAN, 0.5, 0.7, 0.7, 0.2]), prefer=3) == 3
    assert best_index(torch.tensor([NAN, 0.5, 0.7, 0.7, 0.2]), prefer=1) == 2
    assert best_index(torch.tensor([0.0, NAN])) == 0
    assert best_index(torch.tensor([NAN, NAN])) == 0


def test_one_miou_for_validation_test_and_reports_on_the_issue_example() -> None:
    # issue 27, item 1: target [[0,0,1,1]], prediction [[0,0,1,2]], 3 classes; class 2
    # has no ground truth but is predicted once. IoU per class: 1, 0.5, 0.
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 2]])
    sweep = ThresholdSweep(3, [0.5])
    sweep.update(pred[None], target)
    cm = sweep.compute()["confmat"]
    iou = iou_from_confmat(cm[0])
    assert iou.tolist() == pytest.approx([1.0, 0.5, 0.0])
    # the rejected definition (the mean over the classes present in the ground truth,
    # validation's figure before): 0.75
    assert float(iou[present_classes(cm)].mean()) == pytest.approx(0.75)
    # the one in use (mmsegmentation's IoUMetric: NaN-ignoring mean over classes with a
    # non-zero union): 0.50 on validation's sweep, the threshold choice, test's dict
    assert float(miou_from_confmat(cm)[0]) == pytest.approx(0.5)
    assert float(sweep.compute()["miou"].reshape(-1)[0]) == pytest.approx(0.5)
    assert choose(cm, [0.5], 3).val_miou_global == pytest.approx(0.5)
    assert metrics_dict(cm[0], ["bg", "a", "b"])["miou"] == pytest.approx(0.5)
    assert "50.00" in format_table(iou, ["bg", "a", "b"])


def test_a_class_absent_from_ground_truth_counts_where_predicted() -> None:
    # class 2 has no ground truth: predicted at the first threshold, not at the second
    cms = torch.tensor(
        [
            [[4, 0, 0], [0, 2, 2], [0, 0, 0]],
            [[4, 0, 0], [2, 2, 0], [0, 0, 0]],
        ]
    )
    cms[0, 1, 2] = 2  # two person pixels labelled as class 2
    expected = [(1 + 0.5 + 0) / 3, (4 / 6 + 0.5) / 2]
    assert mean_iou(iou_from_confmat(cms)).tolist() == pytest.approx(expected)
    assert miou_from_confmat(cms).tolist() == pytest.approx(expected)
    assert math.isnan(float(miou_from_confmat(torch.zeros(2, 2, dtype=torch.int64))))


def _fake_outputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A 4 x 4 person on the left half; a true instance (0.8) and a false one (0.3)."""
    target = torch.zeros(4, 4, dtype=torch.int64)
    target[:, :2] = 1
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, :, :2] = 0.9
    masks[1, 0, :, 2:] = 0.9
    maps = fuse_sweep(torch.tensor([1, 1]), torch.tensor([0.8, 0.3]), masks, torch.tensor(GRID))
    return maps, target


def test_sweep_picks_the_first_threshold_that_drops_the_false_positive() -> None:
    maps, target = _fake_outputs()
    sweep = ThresholdSweep(2, GRID)
    sweep.update(maps, target)
    result = sweep.compute()
    # t < 0.3: everything is person -> IoU (0, 0.5); 0.3 <= t < 0.8: perfect; t >= 0.8: (0.5, 0)
    expected = [0.25 if t < 0.3 or t >= 0.8 else 1.0 for t in GRID]
    assert result["miou"].tolist() == pytest.approx(expected)
    assert choose(result["confmat"], GRID, 2).threshold == pytest.approx(0.3)
    assert result["confmat"].shape == (19, 2, 2)
    assert result["confmat"][5].tolist() == [[8, 0], [0, 8]]
    assert result["pixel_accuracy"].tolist() == pytest.approx(
        [0.5 if t < 0.3 or t >= 0.8 else 1.0 for t in GRID]
    )


def test_sweep_ties_go_to_the_lower_threshold() -> None:
    sweep = ThresholdSweep(2, [0.2, 0.4, 0.6])
    target = torch.tensor([[0, 1]])
    sweep.update(torch.tensor([[[1, 1]], [[0, 1]], [[0, 1]]]), target)
    assert choose(sweep.compute()["confmat"], [0.2, 0.4, 0.6], 2).threshold == pytest.approx(0.4)


def test_sweep_batched_update_and_single_threshold() -> None:
    maps, target = _fake_outputs()
    one = ThresholdSweep(2, GRID)
    one.update(maps, target)
    one.update(maps.flip(-1), target.flip(-1))
    batched = ThresholdSweep(2, GRID)
    batched.update(torch.stack([maps, maps.flip(-1)]), torch.stack([target, target.flip(-1)]))
    assert torch.equal(one.confmat, batched.confmat)

    test_stage = ThresholdSweep(2, [0.5])
    test_stage.update(maps[GRID.index(0.5)][None], target)
    assert torch.equal(test_stage.compute()["confmat"][0], one.confmat[GRID.index(0.5)] // 2)


def test_sweep_state_merge_equals_one_pass() -> None:
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 3, (6, 4, 5, 7), generator=gen)
    target = torch.randint(0, 3, (6, 5, 7), generator=gen)
    thresholds = [0.2, 0.4, 0.6, 0.8]
    whole, first, second = (ThresholdSweep(3, thresholds) for _ in range(3))
    whole.update(preds, target)
    first.update(preds[:3], target[:3])
    second.update(preds[3:], target[3:])
    first.merge_state(second)
    assert torch.equal(first.confmat, whole.confmat)
    assert int(whole.confmat.sum()) == 4 * 6 * 5 * 7
    torch.testing.assert_close(first.compute()["miou"], whole.compute()["miou"])
    whole.reset()
    assert not whole.confmat.any()


def test_sweep_ignore_index_and_bad_input() -> None:
    sweep = ThresholdSweep(2, [0.5], ignore_index=255)
    sweep.update(torch.tensor([[[1, 0, 1]]]), torch.tensor([[1, 255, 0]]))
    assert sweep.confmat[0].tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="class id 2"):
        sweep.update(torch.tensor([[[2, 0, 1]]]), torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match="must be"):
        sweep.update(torch.zeros(2, 1, 3, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="ascending"):
        ThresholdSweep(2, [0.5, 0.2])


def test_format_table_prints_each_class_own_iou() -> None:
    # Regression: the seed report printed the mean IoU on every class row.
    table = format_table(
        torch.tensor([0.9, 0.5, NAN]), ["background", "skin", "hair"], 0.875, title="Test"
    )
    lines = table.splitlines()
    assert lines[0] == "## Test"
    assert "| background | 90.00 |" in lines
    assert "| skin | 50.00 |" in lines
    assert "| hair | n/a |" in lines
    assert "| **mean IoU** | 70.00 |" in lines
    assert lines[-1] == "| pixel accuracy | 87.50 |"
    assert lines.index("| background | 90.00 |") < lines.index("| **mean IoU** | 70.00 |")


def test_metrics_dict_is_plain_json() -> None:
    cm = torch.tensor([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
    names = ["background", "a", "b"]
    result = metrics_dict(cm, names, threshold=0.3, class_thresholds=torch.tensor([0.3, 0.2, 0.5]))
    assert result["iou"] == {"background": pytest.approx(0.6), "a": pytest.approx(1 / 3), "b": None}
    assert result["miou"] == pytest.approx((0.6 + 1 / 3) / 2)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert result["class_names"] == names
    assert result["threshold"] == 0.3
    assert result["class_thresholds"] == pytest.approx({"background": 0.3, "a": 0.2, "b": 0.5})
    assert json.loads(json.dumps(result, allow_nan=False))["iou"]["b"] is None
    assert metrics_dict(cm, names)["class_thresholds"] is None


def test_save_confusion_png(tmp_path) -> None:
    path = save_confusion_png(CM, ["background", "person", "hair"], tmp_path / "plots" / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["cm.png"]


def test_sweep_update_leaves_int32_predictions_unchanged() -> None:
    preds = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.int32)
    before = preds.clone()
    sweep = ThresholdSweep(2, [0.5])
    sweep.update(preds, torch.tensor([[1, 1], [0, 0]]))
    assert torch.equal(preds, before)
    assert sweep.compute()["confmat"][0].tolist() == [[1, 1], [1, 1]]
