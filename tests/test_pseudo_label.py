"""Pseudo-labelling (fashionseg.pseudo_label): tags, thresholds, record, resume, inspect.

The teacher (conftest's fixture) is a tiny LRASPP trained for a few steps on a tiny
dataset, saved in a run directory (``split.json`` beside ``checkpoints/``) as training
leaves it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from helpers import one_line_error, one_line_error_in_process, tree_digest
from PIL import Image

from fashionseg.data.inspect import inspect_dataset
from fashionseg.data.io import MaskRules, read_image
from fashionseg.errors import UsageError
from fashionseg.model.checkpoint import load_module
from fashionseg.pseudo_label import Request, pseudo_label
from fashionseg.pseudo_output import PROGRESS, RECORD

CLOTHING = ("background", "skin", "hair", "tshirt", "shoes", "pants", "dress")


@pytest.fixture
def photos(tmp_path: Path, teacher: Path) -> Path:
    """Five "unlabelled" photos u0..u4 of odd sizes: crops of the teacher's photos (on
    noise, a few steps of training teach it something only about the photos it saw)."""
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    data = teacher.parents[2] / "data" / "images"
    for i, (h, w) in enumerate([(32, 40), (29, 37), (31, 24), (27, 33), (30, 39)]):
        rgb = np.array(Image.open(data / f"00{i % 3}.png"))
        Image.fromarray(rgb[:h, :w]).save(folder / f"u{i}.png")
    return folder


def probs_of(ckpt: Path, photo: Path) -> torch.Tensor:
    module = load_module(ckpt)
    with torch.no_grad():
        return module([read_image(photo).float() / 255])[0]


def test_below_threshold_pixels_are_255_and_the_rest_is_the_argmax(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    record = pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=0.6))
    assert record["thresholds"]["values"] == [0.6] * 7
    ignored = 0
    for photo in sorted(photos.iterdir()):
        probs = probs_of(teacher, photo)
        label = np.array(Image.open(out / "clothes" / f"{photo.stem}.png"))
        confidence, argmax = probs.max(0)
        low = (confidence < 0.6).numpy()
        assert (label[low] == 255).all()
        np.testing.assert_array_equal(label[~low], argmax.numpy()[~low])
        ignored += int(low.sum())
    assert ignored > 0  # the test can fail: some pixels are below the threshold


def test_a_class_ruled_out_by_the_tags_never_appears(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    plain = pseudo_label(Request(str(teacher), str(photos), str(tmp_path / "plain"), thresholds=0))
    shown = {c for c in range(7) if plain["progress"]["u0"]["kept"][c] > 0}
    ruled_out = shown - {0}
    assert ruled_out, shown  # the test can fail: without tags u0 shows clothing classes
    allowed = [c for c in range(1, 7) if c not in ruled_out][:1]
    tags = tmp_path / "tags.csv"
    names = " ".join(CLOTHING[c] for c in allowed)
    tags.write_text(f"stem,ccp_id,classes,ccp_tags\nu0,1,{names},x\nu1,2,skin hair,y\n")
    out = tmp_path / "tagged"
    record = pseudo_label(
        Request(str(teacher), str(photos), str(out), tags=str(tags), thresholds=0)
    )
    label = np.array(Image.open(out / "clothes" / "u0.png"))
    assert not set(np.unique(label).tolist()) & ruled_out
    label1 = np.array(Image.open(out / "clothes" / "u1.png"))
    assert set(np.unique(label1).tolist()) <= {0, 1, 2}
    assert record["photos"]["without_tags"] == 3  # u2..u4 are not in tags.csv
    assert record["progress"]["u4"]["tags"] is False
    assert record["tags"]["sha256"]


def test_the_record_holds_thresholds_chosen_on_validation_and_shares(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    record = pseudo_label(Request(str(teacher), str(photos), str(out), precision=0.8))
    on_disk = json.loads((out / RECORD).read_text())
    assert on_disk["thresholds"] == record["thresholds"]
    chosen = on_disk["thresholds"]
    assert chosen["chosen"] == "validation" and chosen["validation_photos"] == 2
    assert chosen["precision"] == 0.8 and chosen["min_keep"] == 0.5
    assert set(chosen["by_class"]) == set(CLOTHING)
    assert on_disk["teacher"]["sha256"] and on_disk["task"]["classes"] == list(CLOTHING)
    assert on_disk["tta"] == {"hflip": False, "scales": [1.0]}
    assert on_disk["photos"]["done"] == 5 and on_disk["photos"]["total"] == 5
    pixels = on_disk["pixels"]
    assert set(pixels) == {*CLOTHING, "all"}
    assert abs(pixels["all"]["kept"] + pixels["all"]["ignored"] - 100) < 0.01
    total = sum(sum(p["kept"]) + sum(p["ignored"]) for p in on_disk["progress"].values())
    assert total == 32 * 40 + 29 * 37 + 31 * 24 + 27 * 33 + 30 * 39


def test_resume_after_a_failure_gives_the_files_of_one_run(
    teacher: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    pseudo_label(Request(str(teacher), str(photos), str(whole), tags=None, precision=0.8))
    import fashionseg.pseudo_output as output

    real = output.place_photo
    calls = []

    def failing(photo: Path, dest: Path) -> str:
        calls.append(photo)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the middle of the third photo
        return real(photo, dest)

    monkeypatch.setattr(output, "place_photo", failing)
    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        pseudo_label(Request(str(teacher), str(photos), str(parts), precision=0.8))
    monkeypatch.setattr(output, "place_photo", real)
    assert len(list((parts / "clothes").glob("*.png"))) == 2
    pseudo_label(Request(str(teacher), str(photos), str(parts), precision=0.8))

    def files(root: Path) -> dict[str, str]:
        digest = tree_digest(root)
        return {k: v for k, v in digest.items() if not k.endswith((RECORD, PROGRESS, ".jsonl"))}

    assert files(parts) == files(whole)
    done = json.loads((parts / RECORD).read_text())
    first = json.loads((whole / RECORD).read_text())
    assert done["pixels"] == first["pixels"]
    assert done["thresholds"]["by_class"] == first["thresholds"]["by_class"]


def test_the_result_is_a_dataset_inspect_reads_and_photos_are_linked(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=0.6))
    # maps holding only background and ignored pixels look like 0/255 binary masks:
    # pseudo-labelled roots are read with data.binary_255=false (docs/training.md)
    report = inspect_dataset(out, ["clothing"], rules=MaskRules(255, False))
    assert report.problems == [] and report.images == 5
    assert report.tasks["clothing"].masks == 5 and report.tasks["clothing"].ignored > 0
    assert os.path.samefile(out / "images" / "u1.png", photos / "u1.png")


def test_another_teacher_setting_into_the_same_root_is_refused(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=0.5))
    before = tree_digest(out)
    with pytest.raises(UsageError, match="another teacher or settings .*thresholds"):
        pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=0.6))
    assert tree_digest(out) == before
    again = pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=0.5))
    assert again["photos"]["done"] == 5
    assert {k: v for k, v in tree_digest(out).items() if RECORD not in k} == {
        k: v for k, v in before.items() if RECORD not in k
    }


def test_unreadable_photos_are_skipped_and_counted(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    record = pseudo_label(Request(str(teacher), str(photos), str(tmp_path / "p"), thresholds=0.6))
    assert record["photos"]["done"] == 5 and len(record["photos"]["unreadable"]) == 1


def test_a_photo_whose_every_pixel_is_ignored_gets_no_files(
    teacher: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p"
    record = pseudo_label(Request(str(teacher), str(photos), str(out), thresholds=1.0))
    assert record["photos"]["all_ignored"] == 5 and record["pixels"]["all"]["kept"] == 0
    assert list((out / "clothes").glob("*.png")) == [] and not (out / "images").exists()


def test_bad_input_is_one_line(teacher: Path, photos: Path, tmp_path: Path) -> None:
    cmd = "fashionseg.pseudo_label"
    # python -m fashionseg.pseudo_label itself (refused before torch loads); the others in
    # this process: the same main, without a new Python importing torch
    assert "ckpt: not given" in one_line_error(cmd, f"input={photos}", "out=x", cwd=REPO_ROOT)
    missing = one_line_error_in_process(
        cmd,
        f"ckpt={tmp_path / 'no.ckpt'}",
        f"input={photos}",
        f"out={tmp_path / 'o'}",
        cwd=REPO_ROOT,
    )
    assert "checkpoint not found" in missing
    tags = tmp_path / "tags.csv"
    tags.write_text("stem,classes\nu0,skin jacket\n")
    line = one_line_error_in_process(
        cmd,
        f"ckpt={teacher}",
        f"input={photos}",
        f"out={tmp_path / 'o'}",
        f"tags={tags}",
        cwd=REPO_ROOT,
    )
    assert "jacket" in line and "another label set" in line
    assert not (tmp_path / "o").exists()
