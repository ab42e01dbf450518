"""Interrupted training: SIGKILL + resume, Ctrl-C checkpoint, non-finite loss stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import TINY

from fashionseg.model.checkpoint import load_module, read_checkpoint
from fashionseg.train import resume_checkpoint

pytestmark = pytest.mark.slow

# Test-only callbacks, imported by the training subprocess from a temporary folder.
HOOKS = '''
import math
import time
from pathlib import Path

import lightning as L


class PauseAt(L.Callback):
    """At global step `step` (mid-epoch), write `marker` and wait to be killed."""

    def __init__(self, step, marker):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.marker.write_text(f"{trainer.current_epoch} {batch_idx}")
            time.sleep(300)


class NanAt(L.Callback):
    """Corrupt the photos of the batch at global step `step` (a NaN input)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch[0][0].fill_(math.nan)
'''
EPOCHS = 3  # 5 training photos, batch 2: 3 steps per epoch, 9 in all
KILL_STEP = 4  # the second batch of the second epoch


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fashionseg.data.synthetic import generate

    work = tmp_path_factory.mktemp("resume")
    generate(work / "data", num_images=10, seed=5, height=64, width=48)
    (work / "hooks").mkdir()
    (work / "hooks" / "resume_hooks.py").write_text(HOOKS)
    return work


def command(work: Path, log_dir: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fashionseg.train",
        "task=clothing",
        f"data.root={work / 'data'}",
        f"paths.log_dir={work / log_dir}",
        "test=false",
        *TINY,
        f"trainer.max_epochs={EPOCHS}",
        "trainer.deterministic=true",
        "scheduler=cosine",
        "scheduler.warmup_steps=2",
        "data.hflip=0.5",
        *extra,
    ]


def start(work: Path, cmd: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(work / "hooks")}
    return subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], expect: int = 0) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expect, out[-3000:] + err[-3000:]
    return out, err


def wait_for(marker: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never reached the pause step"
        time.sleep(0.2)


def only_run(work: Path, log_dir: str) -> Path:
    (run,) = [p for p in (work / log_dir / "clothing" / "runs").iterdir() if p.is_dir()]
    return run


def val_miou(run: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("val/miou")]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(work: Path) -> None:
    finish(start(work, command(work, "straight")))
    straight = only_run(work, "straight")

    marker = work / "paused"
    pause = [
        "+callbacks.pause._target_=resume_hooks.PauseAt",
        f"+callbacks.pause.step={KILL_STEP}",
        f"+callbacks.pause.marker={marker}",
    ]
    proc = start(work, command(work, "killed", *pause))
    wait_for(marker, proc)
    assert marker.read_text() == "1 1"  # epoch 1, batch 1: partway through an epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = only_run(work, "killed")
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    time.sleep(1.1)  # the resumed run gets its own (time-stamped) run directory
    out, _ = finish(start(work, command(work, "killed", "resume=true")))
    assert f"resuming from {killed / 'checkpoints' / 'last.ckpt'}" in out
    runs = sorted(p for p in (work / "killed" / "clothing" / "runs").iterdir() if p.is_dir())
    resumed = runs[-1]
    assert resumed != killed

    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (EPOCHS - 1, 9)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, atol=1e-5, rtol=0, msg=key)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]

    straight_miou = val_miou(straight)
    resumed_miou = val_miou(resumed)
    assert len(straight_miou) == EPOCHS and len(resumed_miou) == EPOCHS - 1
    for (s1, v1), (s2, v2) in zip(straight_miou[1:], resumed_miou, strict=True):
        assert s1 == s2 and abs(v1 - v2) <= 1e-5


def test_ctrl_c_saves_a_checkpoint_that_resumes(work: Path) -> None:
    marker = work / "paused-int"
    proc = start(
        work,
        command(
            work,
            "interrupted",
            "+callbacks.pause._target_=resume_hooks.PauseAt",
            f"+callbacks.pause.step={KILL_STEP}",
            f"+callbacks.pause.marker={marker}",
        ),
    )
    wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    run = only_run(work, "interrupted")
    saved = run / "checkpoints" / "interrupted.ckpt"
    assert saved.is_file()
    assert read_checkpoint(saved)["global_step"] == KILL_STEP
    assert load_module(saved).task.name == "clothing"
    assert resume_checkpoint(True, run.parent) == saved  # newer than last.ckpt


def test_non_finite_loss_stops_with_step_and_last_checkpoint_loads(work: Path) -> None:
    proc = start(
        work,
        command(work, "nan", "+callbacks.nan._target_=resume_hooks.NanAt", "+callbacks.nan.step=5"),
    )
    _, err = finish(proc, expect=2)
    assert "error: non-finite training loss at step 5 (epoch 1, batch 2): loss_" in err
    assert "nan" in err.splitlines()[-1]
    run = only_run(work, "nan")
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()
    module = load_module(run / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_resume_names_what_is_missing(tmp_path: Path) -> None:
    from fashionseg.cli import UsageError

    assert resume_checkpoint(False, tmp_path) is None
    with pytest.raises(UsageError, match="no run with checkpoints/last.ckpt under"):
        resume_checkpoint(True, tmp_path)
    with pytest.raises(UsageError, match="no such run directory"):
        resume_checkpoint(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UsageError, match="no checkpoints/last.ckpt in this run"):
        resume_checkpoint(str(tmp_path / "run"), tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    assert resume_checkpoint(True, tmp_path) == last
    assert resume_checkpoint(str(tmp_path / "run"), tmp_path) == last
    with pytest.raises(UsageError):  # a run never resumes from itself
        resume_checkpoint(True, tmp_path, current=tmp_path / "run")


def test_a_reused_run_directory_starts_afresh_unless_asked_to_resume(work: Path) -> None:
    """Only ``resume=`` resumes: a finished run's checkpoints in ``hydra.run.dir`` do not."""
    run = work / "reused"
    once = [*command(work, "reused-logs", "trainer.max_epochs=1"), f"hydra.run.dir={run}"]
    finish(start(work, once))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    out, err = finish(start(work, once))
    assert "Restoring states from the checkpoint" not in out + err
    assert "resuming from" not in out
    assert "ckpt_path=None)` was called without a model" not in err
    assert "there is no last checkpoint available" not in err
    out, err = finish(start(work, [*once, f"resume={run}"]))  # asked: it does resume
    assert "resuming from" in out and "Restoring states from the checkpoint" in out + err
