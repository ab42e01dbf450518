"""model.init_from: a student starts from a teacher checkpoint's network weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY, TINY_NET, one_line_error, run

from fashionseg.model.checkpoint import CheckpointError, init_from_checkpoint, load_module
from fashionseg.model.module import MaskRCNNModule


def save(module: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_the_student_starts_with_the_teachers_network_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = MaskRCNNModule(task="clothing", net=TINY_NET)
    teacher.best_threshold.fill_(0.3)  # validation's choice: not the student's
    teacher.val_miou.fill_(0.6)
    path = save(teacher, tmp_path / "teacher.ckpt")
    torch.manual_seed(1)
    student = MaskRCNNModule(task="clothing", net=TINY_NET, init_from=str(path))
    assert student.hparams.init_from == str(path)  # recorded, not loaded by the constructor
    assert not torch.equal(
        student.net.rpn.head.conv[0][0].weight, teacher.net.rpn.head.conv[0][0].weight
    )
    init_from_checkpoint(student, path)
    for (name, mine), theirs in zip(
        student.net.state_dict().items(), teacher.net.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs), name
    assert float(student.best_threshold) == 0.5 and torch.isnan(student.val_miou)
    # a checkpoint of the student carries init_from in its hyper-parameters
    assert load_module(save(student, tmp_path / "s.ckpt")).hparams.init_from == str(path)


def test_another_label_set_or_family_is_refused(tmp_path: Path) -> None:
    person = save(MaskRCNNModule(task="person", net=TINY_NET), tmp_path / "person.ckpt")
    student = MaskRCNNModule(task="clothing", net=TINY_NET)
    with pytest.raises(CheckpointError, match=r"person.ckpt: model.init_from is for task 'person'"):
        init_from_checkpoint(student, person)
    from fashionseg.model.semantic import SemanticModule

    semantic = SemanticModule(
        task="clothing", net={"arch": "lraspp_mobilenet_v3_large", "weights": "none"}
    )
    path = save(semantic, tmp_path / "semantic.ckpt")
    with pytest.raises(
        CheckpointError, match=r"holds a semantic model \(lraspp_mobilenet_v3_large\)"
    ):
        init_from_checkpoint(student, path)
    wider = MaskRCNNModule(task="clothing", net={**TINY_NET, "box_head_size": 32})
    with pytest.raises(
        CheckpointError, match=r"network does not fit this run's maskrcnn_mobilenet"
    ):
        init_from_checkpoint(student, save(wider, tmp_path / "wider.ckpt"))


@pytest.mark.slow
def test_train_initialises_from_the_teacher_and_refuses_another_task(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    data = generate(tmp_path / "data", num_images=6, seed=3, height=48, width=32)
    common = ["task=clothing", f"data.root={data}", *TINY, "trainer.max_epochs=1"]
    teacher = run("fashionseg.train", *common, f"hydra.run.dir={tmp_path / 't'}", cwd=tmp_path)
    assert teacher.returncode == 0
    teacher_ckpt = tmp_path / "t" / "checkpoints" / "last.ckpt"
    # the student trains one step at lr 1e-30: its weights stay the teacher's
    run(
        "fashionseg.train",
        *common,
        f"model.init_from={teacher_ckpt}",
        "optimizer.lr=1e-30",
        "trainer.limit_train_batches=1",
        "test=false",
        f"hydra.run.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    taught = torch.load(teacher_ckpt, weights_only=True)
    student = torch.load(tmp_path / "s" / "checkpoints" / "last.ckpt", weights_only=True)
    assert student["hyper_parameters"]["init_from"] == str(teacher_ckpt)
    assert student["global_step"] == 1 and student["epoch"] == 0  # a fresh run, not a resume
    params = {n for n, p in load_module(teacher_ckpt).named_parameters()}
    for name in params:
        assert torch.allclose(student["state_dict"][name], taught["state_dict"][name]), name
    person = [a.replace("task=clothing", "task=person") for a in common]
    last = one_line_error(
        "fashionseg.train",
        *person,
        f"model.init_from={teacher_ckpt}",
        f"hydra.run.dir={tmp_path / 'p'}",
        cwd=tmp_path,
    )
    assert last.startswith(f"error: {teacher_ckpt}: model.init_from is for task 'clothing'")
    missing = one_line_error("fashionseg.train", *common, "model.init_from=nope.ckpt", cwd=tmp_path)
    assert missing == "error: model.init_from=nope.ckpt: no such checkpoint file"
