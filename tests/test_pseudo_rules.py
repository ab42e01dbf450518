"""The pure rules of pseudo-labelling (fashionseg.pseudo_rules): thresholds, tags, maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fashionseg.errors import UsageError
from fashionseg.pseudo_rules import (
    BINS,
    choose_thresholds,
    class_counts,
    confidence_histograms,
    fixed_thresholds,
    pseudo_label_map,
    read_tags,
)
from fashionseg.tasks import get_task


def histograms(rows: dict[int, list[tuple[float, int, int]]], classes: int = 3):
    """``{class: [(confidence, correct pixels, wrong pixels), ...]}`` -> the histograms."""
    correct = torch.zeros(classes, BINS, dtype=torch.int64)
    total = torch.zeros_like(correct)
    for c, items in rows.items():
        for confidence, right, wrong in items:
            b = min(int(confidence * BINS), BINS - 1)
            correct[c, b] += right
            total[c, b] += right + wrong
    return correct, total


def test_the_threshold_is_the_lowest_that_reaches_the_precision() -> None:
    # class 1: 100 pixels at 0.4 (half right), 100 at 0.8 (all right)
    correct, total = histograms({1: [(0.4, 50, 50), (0.8, 100, 0)]})
    # keeping all: precision 0.75; from 0.401 on: 1.0
    assert choose_thresholds(correct, total, precision=0.9, min_keep=0.0)[1] == 0.401
    assert choose_thresholds(correct, total, precision=0.7, min_keep=0.0)[1] == 0.0


def test_min_keep_caps_the_threshold_so_a_rare_class_keeps_its_share() -> None:
    # class 2 is never precise: precision alone would drop all of it
    correct, total = histograms({2: [(0.3, 10, 30), (0.5, 10, 30), (0.7, 10, 10)]})
    assert choose_thresholds(correct, total, precision=0.9, min_keep=0.0)[2] == 0.999
    # keeping half of its 100 pixels: the top 20 (0.7) are too few, 0.5..: 60 are enough
    assert choose_thresholds(correct, total, precision=0.9, min_keep=0.5)[2] == 0.5
    assert choose_thresholds(correct, total, precision=0.9, min_keep=1.0)[2] == 0.3


def test_a_class_never_predicted_gets_the_pooled_rule() -> None:
    correct, total = histograms({0: [(0.4, 50, 50), (0.8, 100, 0)]})
    found = choose_thresholds(correct, total, precision=0.9, min_keep=0.0)
    assert found[1] == found[2] == found[0] == 0.401


def test_confidence_histograms_count_predicted_pixels_leaving_ignored_out() -> None:
    probs = torch.tensor([[[0.9, 0.2, 0.3]], [[0.1, 0.8, 0.7]]])  # [2, 1, 3]
    target = torch.tensor([[0, 0, 255]])
    correct, total = confidence_histograms(probs, target, ignore_index=255)
    assert int(total[0].sum()) == 1 and int(correct[0].sum()) == 1
    assert int(total[1].sum()) == 1 and int(correct[1].sum()) == 0  # 0.8 but wrong
    assert int(total[1, int(0.8 * BINS)]) == 1


def test_the_label_map_ignores_low_pixels_and_leaves_out_ruled_out_classes() -> None:
    probs = torch.tensor([[[0.1, 0.5]], [[0.6, 0.3]], [[0.3, 0.2]]])  # [3, 1, 2]
    label, predicted = pseudo_label_map(probs, torch.tensor([0.5, 0.5, 0.5]), 255)
    assert label.tolist() == [[1, 0]] and predicted.tolist() == [[1, 0]]
    # class 1 ruled out: pixel 0 becomes class 2 at 0.3, below its threshold
    label, predicted = pseudo_label_map(probs, torch.tensor([0.5, 0.5, 0.25]), 255, {0, 2})
    assert predicted.tolist() == [[2, 0]] and label.tolist() == [[2, 0]]
    label, _ = pseudo_label_map(probs, torch.tensor([0.5, 0.5, 0.5]), 255, frozenset({0, 2}))
    assert label.tolist() == [[255, 0]]
    kept, ignored = class_counts(label, predicted, 3)
    assert kept.tolist() == [1, 0, 0] and ignored.tolist() == [0, 0, 1]


def test_tags_are_read_for_the_task(tmp_path: Path) -> None:
    clothing = get_task("clothing")
    tags = tmp_path / "tags.csv"
    tags.write_text("stem,ccp_id,classes,ccp_tags\nu1,1,skin hair,a\nu2,2,,b\n")
    found, warning = read_tags(tags, clothing)
    assert warning is None and found is not None
    assert found.allowed == {"u1": frozenset({0, 1, 2}), "u2": frozenset({0})}
    none, warning = read_tags(tags, get_task("person"))
    assert none is None and "no class of task 'person'" in warning


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stem,classes\nu1,skin jacket\n", "another label set"),
        ("stem,tags\nu1,skin\n", "missing: classes"),
        ("stem,classes\nu1,skin\nu1,hair\n", "listed twice"),
        ("stem,classes\n", "missing: rows"),
    ],
)
def test_bad_tags_files_are_one_line(tmp_path: Path, text: str, problem: str) -> None:
    tags = tmp_path / "tags.csv"
    tags.write_text(text)
    with pytest.raises(UsageError, match=problem):
        read_tags(tags, get_task("clothing"))
    with pytest.raises(UsageError, match="cannot read"):
        read_tags(tmp_path / "none.csv", get_task("clothing"))


def test_fixed_thresholds() -> None:
    person = get_task("person")
    assert fixed_thresholds(0.7, person) == [0.7, 0.7]
    assert fixed_thresholds([0.5, 0.8], person) == [0.5, 0.8]
    with pytest.raises(UsageError, match="one per class"):
        fixed_thresholds([0.5, 0.6, 0.7], person)
