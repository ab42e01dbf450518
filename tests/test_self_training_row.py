"""A staged results row (teacher -> pseudo labels -> student): stages run in order, a
finished teacher is reused, each stage is timed and the record sums the stages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from fashionseg.files import write_json, write_text
from fashionseg.metrics import metrics_dict
from fashionseg.reporting import results_table, self_training
from fashionseg.reporting.results_table import main
from fashionseg.reporting.self_training import best_checkpoint
from fashionseg.reporting.tables import stage_text

PERSON = ["background", "person"]


def _arg(cmd: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(f"{key}="))


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """subprocess.run that plays train / pseudo_label by writing their outputs."""
    calls: list[list[str]] = []

    def run(cmd: list[str], check: bool = False) -> subprocess.CompletedProcess:
        calls.append(cmd)
        if cmd[2] == "fashionseg.train":
            run_dir = Path(_arg(cmd, "hydra.run.dir"))
            cm = torch.tensor([[8, 2], [0, 10]]) * (2 if "ccp_self_train" in " ".join(cmd) else 1)
            write_json(run_dir / "metrics.json", metrics_dict(cm, PERSON))
            write_text(run_dir / "checkpoints" / "epoch003-miou0.5000.ckpt", "x")
            write_text(run_dir / "checkpoints" / "epoch007-miou0.6000.ckpt", "x")
            write_text(run_dir / "checkpoints" / "last.ckpt", "x")
        elif cmd[2] == "fashionseg.pseudo_label":
            write_json(Path(_arg(cmd, "out")) / "pseudo_label.json", {"done": True})
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(self_training.subprocess, "run", run)
    return calls


def test_best_checkpoint_is_the_highest_validation_score(tmp_path: Path) -> None:
    for name in ("epoch002-miou0.7000.ckpt", "epoch010-miou0.6500.ckpt", "last.ckpt"):
        write_text(tmp_path / "checkpoints" / name, "x")
    assert best_checkpoint(tmp_path).name == "epoch002-miou0.7000.ckpt"
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        best_checkpoint(tmp_path / "missing")


def test_pipeline_runs_teacher_pseudo_labels_student_and_records_the_stages(
    tmp_path: Path, fake_stages: list[list[str]]
) -> None:
    unlabelled = tmp_path / "unlabelled"
    write_text(unlabelled / "tags.csv", "stem,ccp_id,classes,ccp_tags\n")
    pipeline = self_training.Pipeline("ccp_semantic_plus", "ccp_self_train", str(unlabelled))
    out = tmp_path / "out"
    argv = ["--out", str(out), "--rows", "ccp_self_train", "--tasks", "person"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(results_table.PIPELINES, "ccp_self_train", pipeline)
        assert main(argv) == 0
        modules = [c[2] for c in fake_stages]
        assert modules == ["fashionseg.train", "fashionseg.pseudo_label", "fashionseg.train"]
        teacher, pseudo, student = fake_stages
        assert "experiment=ccp_semantic_plus" in teacher
        best = out / "person-ccp_semantic_plus" / "checkpoints" / "epoch007-miou0.6000.ckpt"
        assert _arg(pseudo, "ckpt") == str(best)
        assert _arg(pseudo, "tags") == str(unlabelled / "tags.csv")
        assert "experiment=ccp_self_train" in student
        assert _arg(student, "model.init_from") == str(best)
        assert _arg(student, "data.extra_roots") == f"[{out / 'person-ccp_self_train-pseudo'}]"
        stages = json.loads((out / "person-ccp_self_train" / "stages.json").read_text())["stages"]
        assert [s["stage"] for s in stages] == ["teacher", "pseudo labels", "student"]
        record = json.loads((out / "records" / "person-ccp_self_train.json").read_text())
        assert record["cpu_s"] == pytest.approx(sum(s["cpu_s"] for s in stages))
        assert record["wall_s"] == pytest.approx(sum(s["wall_s"] for s in stages))
        assert record["command"].startswith("python -m fashionseg.report --rows ccp_self_train")
        assert record["metrics"]["miou"] == pytest.approx((0.8 + 10 / 12) / 2)
        # a second call keeps the finished row and trains nothing
        fake_stages.clear()
        assert main(argv) == 0
        assert fake_stages == []


def test_a_finished_teacher_and_pseudo_labels_are_reused(
    tmp_path: Path, fake_stages: list[list[str]]
) -> None:
    out = tmp_path / "out"
    pipeline = self_training.Pipeline("ccp_semantic_plus", "ccp_self_train", str(tmp_path))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(results_table.PIPELINES, "ccp_self_train", pipeline)
        assert main(["--out", str(out), "--rows", "ccp_semantic_plus", "--tasks", "person"]) == 0
        assert main(["--out", str(out), "--rows", "ccp_self_train", "--tasks", "person"]) == 0
    assert [c[2] for c in fake_stages] == [
        "fashionseg.train",
        "fashionseg.pseudo_label",
        "fashionseg.train",
    ]
    assert not any(a.startswith("tags=") for a in fake_stages[1])  # no tags.csv there


def test_stage_text_sums_cpu_minutes() -> None:
    stages = [
        {"stage": "teacher", "command": "t", "cpu_s": 600.0},
        {"stage": "student", "command": "s", "cpu_s": 300.0},
    ]
    assert stage_text(stages) == "teacher 10.0 (`t`) + student 5.0 (`s`) = 15.0 min"
    assert stage_text([{"stage": "a", "cpu_s": None}]).endswith("= n/a min")


def test_a_student_of_another_family_starts_from_its_own_row_and_shares_the_pseudo_labels(
    tmp_path: Path, fake_stages: list[list[str]]
) -> None:
    """init_row: the student starts from that row's best checkpoint (trained first when
    missing), not the teacher's; pseudo_of: the pseudo labels of another pipeline are
    reused (made there when missing), not made again."""
    out = tmp_path / "out"
    semantic = self_training.Pipeline("ccp_semantic_plus", "ccp_self_train", str(tmp_path))
    panoptic = self_training.Pipeline(
        "ccp_semantic_plus", "ccp_panoptic_self_train", str(tmp_path),
        init_row="ccp_panoptic", pseudo_of="ccp_self_train",
    )  # fmt: skip
    argv = ["--out", str(out), "--tasks", "person", "--rows"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(results_table.PIPELINES, "ccp_self_train", semantic)
        mp.setitem(results_table.PIPELINES, "ccp_panoptic_self_train", panoptic)
        assert main([*argv, "ccp_self_train"]) == 0
        fake_stages.clear()
        assert main([*argv, "ccp_panoptic_self_train"]) == 0
    # the teacher and the pseudo labels are kept; the start row trains, then the student
    init, student = fake_stages
    assert "experiment=ccp_panoptic" in init and "hydra.run.dir" in " ".join(init)
    assert "experiment=ccp_panoptic_self_train" in student
    start = out / "person-ccp_panoptic" / "checkpoints" / "epoch007-miou0.6000.ckpt"
    assert _arg(student, "model.init_from") == str(start)
    assert _arg(student, "data.extra_roots") == f"[{out / 'person-ccp_self_train-pseudo'}]"
    assert not (out / "person-ccp_panoptic_self_train-pseudo").exists()
    run = out / "person-ccp_panoptic_self_train"
    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == [
        "teacher",
        "pseudo labels",
        "student's start (ccp_panoptic)",
        "student",
    ]
    record = json.loads((out / "records" / "person-ccp_panoptic_self_train.json").read_text())
    assert record["cpu_s"] == pytest.approx(sum(s["cpu_s"] for s in stages))
