"""Interrupted training: SIGKILL + resume, Ctrl-C checkpoint, non-finite loss stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fashionseg.model.checkpoint import load_module, read_checkpoint
from fashionseg.resume import resume_checkpoint

pytestmark = pytest.mark.slow

# Test-only callbacks, imported by the training subprocess from a temporary folder.
HOOKS = '''
import math
import time
from pathlib import Path

import lightning as L
import torch


class PauseAt(L.Callback):
    """At global step `step` (mid-epoch), write `marker` and wait to be killed."""

    def __init__(self, step, marker):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.marker.write_text(f"{trainer.current_epoch} {batch_idx}")
            time.sleep(300)


class EpochZeroBest(L.Callback):
    """Make epoch 0 the best validation score (runs before the checkpoint callbacks)."""

    def on_validation_end(self, trainer, pl_module):
        trainer.callback_metrics["val/miou"] = torch.tensor(0.9 - 0.1 * trainer.current_epoch)


class FailAtStart(L.Callback):
    """Fail before the first training step, as a setting that cannot work would."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        raise RuntimeError("fails at start-up")


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


def command(work: Path, log_dir: str, *extra: str, test: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fashionseg.train",
        "task=clothing",
        f"data.root={work / 'data'}",
        f"paths.log_dir={work / log_dir}",
        f"test={str(test).lower()}",
        *TINY,
        f"trainer.max_epochs={EPOCHS}",
        "trainer.deterministic=true",
        "scheduler=cosine",
        "scheduler.warmup_steps=2",
        "data.hflip=0.5",
        *extra,
    ]


def _sigint_as_in_a_terminal() -> None:
    # a shell without job control starts background commands with SIGINT ignored, and a
    # Python started so ignores Ctrl-C too: the training gets SIGINT as a terminal gives it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(work: Path, cmd: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(work / "hooks")}
    return subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_as_in_a_terminal,
    )  # fmt: skip


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


BEST_AT_ZERO = ["+callbacks.best._target_=resume_hooks.EpochZeroBest"]


def checkpoint_line(out: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith("checkpoint:")]
    return Path(line.split(":", 1)[1].strip()).name


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(work: Path) -> None:
    """Same weights, and the same best checkpoint tested with the same figures."""
    straight_out, _ = finish(start(work, command(work, "straight", *BEST_AT_ZERO, test=True)))
    straight = only_run(work, "straight")

    marker = work / "paused"
    pause = [
        "+callbacks.pause._target_=resume_hooks.PauseAt",
        f"+callbacks.pause.step={KILL_STEP}",
        f"+callbacks.pause.marker={marker}",
    ]
    proc = start(work, command(work, "killed", *pause, *BEST_AT_ZERO, test=True))
    wait_for(marker, proc)
    assert marker.read_text() == "1 1"  # epoch 1, batch 1: partway through an epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = only_run(work, "killed")
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    time.sleep(1.1)  # the resumed run gets its own (time-stamped) run directory
    out, _ = finish(start(work, command(work, "killed", "resume=true", *BEST_AT_ZERO, test=True)))
    assert f"resuming from {killed / 'checkpoints' / 'last.ckpt'}" in out
    runs = sorted(p for p in (work / "killed" / "clothing" / "runs").iterdir() if p.is_dir())
    resumed = runs[-1]
    assert resumed != killed

    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (EPOCHS - 1, 9)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(
            b["state_dict"][key], value, atol=1e-5, rtol=0, equal_nan=True, msg=key
        )
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]

    straight_miou = val_miou(straight)
    resumed_miou = val_miou(resumed)
    assert len(straight_miou) == EPOCHS and len(resumed_miou) == EPOCHS - 1
    for (s1, v1), (s2, v2) in zip(straight_miou[1:], resumed_miou, strict=True):
        assert s1 == s2 and abs(v1 - v2) <= 1e-5

    # the best checkpoint (epoch 0, before the kill) is carried over, tested and reported
    assert checkpoint_line(straight_out) == checkpoint_line(out) == "epoch000-miou0.9000.ckpt"
    assert (resumed / "checkpoints" / "epoch000-miou0.9000.ckpt").is_file()
    m1 = json.loads((straight / "metrics.json").read_text())
    m2 = json.loads((resumed / "metrics.json").read_text())
    assert m1["best_val_miou"] == m2["best_val_miou"] == pytest.approx(0.9)
    assert m1["confusion_matrix"] == m2["confusion_matrix"]
    assert m1["iou"] == m2["iou"] and m1["threshold"] == m2["threshold"]


def test_resume_true_passes_over_a_run_that_failed_at_start_up(work: Path) -> None:
    finish(start(work, command(work, "failed", "trainer.max_epochs=1")))
    (trained,) = list((work / "failed" / "clothing" / "runs").iterdir())
    time.sleep(1.1)
    fail = ["+callbacks.fail._target_=resume_hooks.FailAtStart"]
    finish(start(work, command(work, "failed", *fail)), expect=1)
    runs = sorted((work / "failed" / "clothing" / "runs").iterdir())
    assert len(runs) == 2 and runs[0] == trained
    assert not list((runs[1] / "checkpoints").glob("*.ckpt"))  # no interrupted.ckpt at step 0
    out, _ = finish(start(work, command(work, "failed", "resume=true", "trainer.max_epochs=2")))
    assert f"resuming from {trained / 'checkpoints' / 'last.ckpt'}" in out


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
    with pytest.raises(UsageError, match="trained at least one step"):
        resume_checkpoint(True, tmp_path)
    with pytest.raises(UsageError, match="no such run directory"):
        resume_checkpoint(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UsageError, match="no checkpoints/last.ckpt or interrupted.ckpt"):
        resume_checkpoint(str(tmp_path / "run"), tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    torch.save({"epoch": 1, "global_step": 6}, last)
    assert resume_checkpoint(True, tmp_path) == last
    assert resume_checkpoint(str(tmp_path / "run"), tmp_path) == last
    with pytest.raises(UsageError):  # a run never resumes from itself
        resume_checkpoint(True, tmp_path, current=tmp_path / "run")


def test_resume_true_takes_the_most_advanced_checkpoint_of_the_newest_trained_run(
    tmp_path: Path,
) -> None:
    def save(run: str, name: str, epoch: int, step: int, mtime: float) -> Path:
        path = tmp_path / run / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": epoch, "global_step": step}, path)
        os.utime(path, (mtime, mtime))
        return path

    save("a", "last.ckpt", 2, 9, 1000)
    ahead = save("a", "interrupted.ckpt", 3, 11, 900)  # older file, further on
    save("b", "interrupted.ckpt", 0, 0, 2000)  # a newer run that never trained a step
    (tmp_path / "b" / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    assert resume_checkpoint(True, tmp_path) == ahead
    assert resume_checkpoint(str(tmp_path / "a"), tmp_path) == ahead
    later = save("c", "last.ckpt", 0, 3, 3000)  # the newest run that trained wins
    assert resume_checkpoint(True, tmp_path) == later


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
