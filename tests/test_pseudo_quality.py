"""Scoring pseudo labels against ground truth: kept shares and the kept pixels' IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionseg.files import save_label_png, write_json
from fashionseg.pseudo_quality import confusion, main, score, truth_counts
from fashionseg.tasks import IGNORE_INDEX, get_task

PERSON = get_task("person")


def test_confusion_counts_only_pixels_both_keep() -> None:
    truth = np.array([[0, 0, 1, 1], [1, 1, IGNORE_INDEX, 0]], dtype=np.uint8)
    pseudo = np.array([[0, 1, 1, IGNORE_INDEX], [1, 0, 1, IGNORE_INDEX]], dtype=np.uint8)
    cm = confusion(pseudo, truth, 2)
    assert cm.tolist() == [[1, 1], [1, 2]]  # rows truth, columns pseudo
    assert truth_counts(truth, 2).tolist() == [3, 4]
    with pytest.raises(ValueError, match="differ in size"):
        confusion(pseudo[:, :3], truth, 2)


def _roots(tmp_path: Path) -> tuple[Path, Path]:
    pseudo, truth = tmp_path / "pseudo", tmp_path / "truth"
    t = np.zeros((4, 4), dtype=np.uint8)
    t[:, 2:] = 1
    p = t.copy()
    p[0, :] = IGNORE_INDEX  # one row below threshold: 2 person + 2 background pixels
    p[3, 1] = 1  # one wrong pixel kept
    save_label_png(truth / "person" / "a.png", t, PERSON)
    save_label_png(pseudo / "person" / "a.png", p, PERSON, ignore_index=IGNORE_INDEX)
    save_label_png(pseudo / "person" / "b.png", p, PERSON, ignore_index=IGNORE_INDEX)  # no truth
    write_json(pseudo / "pseudo_label.json", {"task": PERSON.to_config()})
    return pseudo, truth


def test_score_gives_kept_shares_and_kept_pixel_iou(tmp_path: Path) -> None:
    pseudo, truth = _roots(tmp_path)
    result = score(pseudo, truth, PERSON)
    assert result["photos"] == 1 and result["without_truth"] == ["b"]
    assert result["kept"] == pytest.approx(12 / 16)
    assert result["kept_per_class"] == {"background": 0.75, "person": 0.75}
    # kept: background 6 (5 right, 1 called person), person 6 right
    assert result["confusion_matrix"] == [[5, 1], [0, 6]]
    assert result["kept_pixels"]["iou"]["person"] == pytest.approx(6 / 7)
    assert result["kept_pixels"]["pixel_accuracy"] == pytest.approx(11 / 12)


def test_command_line_writes_json_and_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pseudo, truth = _roots(tmp_path)
    assert main([str(pseudo), str(truth), "--out", str(tmp_path / "q.json")]) == 0
    assert "| person | 75.0 | 85.7 |" in capsys.readouterr().out
    assert (tmp_path / "q.json").is_file()
    assert main([str(truth), str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pseudo_label.json: not found" in err
    assert len(err.splitlines()) == 1
